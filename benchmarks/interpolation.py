"""Interpolation measured (E supp. Fig. 11-13; issue 14, item 4): the sampler on linear interpolations of two seeds.

For ``--pairs`` pairs of held-out natural-photo patches (``photos?split=test``, never seen in training) the seeds
``(1 - t) a + t b`` at ``--num`` evenly spaced t are sampled with the model's own generation settings
(``atebm.apps.interpolate``). Measured with the digit classifier of the demo (MNIST 5,000): the class at each t
along every path, the FD (feature space of the same classifier, reference: the 3,500 training digits) of the
samples at each t -- the midpoints next to the endpoints, same sample count -- and the same for the unmodified
interpolated seeds. Writes the JSON, a grid (rows: seeds, then their samples) and a report.html.

    nice -n 10 python benchmarks/interpolation.py --model runs/demo --threads 1
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

import atebm
from atebm.apps.interpolate import interpolate, interpolation_seeds, measure_interpolation
from atebm.data import load_dataset
from atebm.io import save_grid
from atebm.metrics import digit_features
from atebm.report import Report
from atebm.training import write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/demo", help="run folder or model file (default: the demo's)")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--num", type=int, default=9, help="points per path, ends included (odd: a midpoint)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/interpolation")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.num % 2 == 0:
        parser.error("--num must be odd so that the path has a midpoint")
    torch.set_num_threads(args.threads)
    command = "python benchmarks/interpolation.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    start, cpu0 = time.perf_counter(), time.process_time()

    model = atebm.load_model(args.model)
    gen = dict(model.meta.get("generate") or {})
    steps, step_size, blur = int(gen.get("steps", 32)), float(gen.get("step_size", 1.0)), float(gen.get("blur", 0.0))
    size, channels = int(model.meta["size"]), int(model.meta["channels"])
    photos = load_dataset("photos", split="test", n=2 * args.pairs, seed=args.seed, size=size, channels=channels).x
    a, b = photos[: args.pairs], photos[args.pairs:]
    net = digit_features(device="cpu")
    reference = net.features(load_dataset("mnist", split="train").x).numpy()

    samples = interpolate(model, a, b, args.num, steps, step_size, blur)
    seeds = interpolation_seeds(a, b, args.num)
    result = measure_interpolation(samples, net, reference)
    seed_result = measure_interpolation(seeds, net, reference)
    sampling_s = time.perf_counter() - start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = 8
    grid = torch.stack([torch.stack([seeds[m], samples[m]]) for m in range(rows)]).reshape(-1, *samples.shape[2:])
    save_grid(out / "interpolation_grid.png", grid, nrow=args.num, scale=3)
    _plot(result, seed_result, out / "fd_along_path.png")
    summary = {k: v for k, v in result.items() if k != "classes"}
    record: dict[str, Any] = {
        "command": f"nice -n 10 {command}",
        "protocol": {"model": str(args.model), "selection": model.meta.get("selection"),
                     "seeds": f"{args.pairs} pairs of held-out photo patches (photos?split=test, seed {args.seed})",
                     "sampler": f"{steps} PGD steps x {step_size} (blur {blur}), atebm.apps.interpolate",
                     "classifier": net.info["network"], "classifier_test_accuracy": net.info["test_accuracy"],
                     "fd_reference": "MNIST 5,000 train split (3,500 digits)",
                     "fd_note": f"each FD from {args.pairs} samples (biased upwards vs the demo's 500-sample rows; "
                                "compare positions with each other)",
                     "paper": "E supp. Fig. 11-13 show interpolations qualitatively (no number)",
                     "budget": "one model, one set of pairs (CPU budget of the session)"},
        "samples": summary,
        "classes_first_20_paths": result["classes"][:20],
        "seeds": {k: seed_result[k] for k in ("fd", "fd_midpoint", "fd_endpoints", "midpoint_over_endpoints",
                                             "confidence")},
        "timing": {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu0,
                   "sampling_wall_s": sampling_s},
    }
    write_json(out / "interpolation.json", record)
    report = Report.open(out, title="atebm: interpolation between two seeds (E supp. Fig. 11-13)")
    report.add_image("grid", "Seeds and samples along linear interpolations", "interpolation_grid.png",
                     f"pairs of rows: interpolated seeds (t = 0 ... 1, {args.num} points), then their samples")
    report.add_image("fd", "FD and classifier confidence along the path", "fd_along_path.png",
                     "samples vs unmodified interpolated seeds")
    report.add_table("positions", "Along the path (digit-classifier features)",
                     ["t", "FD samples", "FD seeds", "confidence", "class histogram"],
                     [[t, f, s, c, " ".join(map(str, h))] for t, f, s, c, h in
                      zip(result["t"], result["fd"], seed_result["fd"], result["confidence"],
                          result["class_histogram"])],
                     protocol=record["protocol"])
    report.add_table("summary", "Midpoints vs endpoints", ["quantity", "value"],
                     [[k, summary[k]] for k in ("fd_midpoint", "fd_endpoints", "midpoint_over_endpoints",
                                                "class_changes_mean", "ends_differ", "midpoint_class_is_an_end_class")])
    report.save()
    print({k: summary[k] for k in ("fd_midpoint", "fd_endpoints", "midpoint_over_endpoints", "class_changes_mean",
                                   "ends_differ", "midpoint_class_is_an_end_class")})
    return 0


def _plot(result: dict[str, Any], seed_result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(result["t"], result["fd"], marker="o", label="samples")
    ax1.plot(seed_result["t"], seed_result["fd"], marker="s", label="interpolated seeds")
    ax1.set_yscale("log")
    ax1.set_xlabel("t")
    ax1.set_ylabel("FD to training digits")
    ax1.legend()
    ax2.plot(result["t"], result["confidence"], marker="o", label="samples")
    ax2.plot(seed_result["t"], seed_result["confidence"], marker="s", label="interpolated seeds")
    ax2.set_xlabel("t")
    ax2.set_ylabel("classifier's mean top probability")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
