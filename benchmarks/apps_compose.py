"""Compositional generation on MNIST (E supp. Fig. 17, concept conjunction): ascend the sum of two models'
scores and check with a digit classifier that the samples land where both models agree.

Protocol (printed into the JSON and the run report):

* Models: ``--checkpoint-a`` and ``--checkpoint-b``, two class-conditional models trained by
  benchmarks/apps_train_reference.py on different digit subsets (default A = 0-5, B = 4-9; the overlap
  {4, 5} is what a conjunction should produce). ``--checkpoint`` (optional) adds the all-class reference
  model alone as a third row.
* Seeds: ``--n`` natural-photo patches of the held-out test photos (Gaussian-blurred with ``--blur`` pixels,
  E supp. Sec. 4.3); the same seeds for every row.
* Sampler: PGD L2 ascent, unconstrained, ``--steps`` x ``--step-size`` (default: model A's training K and
  step size), on A alone, B alone, A + B (sum of scores) and log D_A + log D_B (sum of log-probabilities).
* Classifier: atebm.metrics.digit_features. Reported: class histogram, mean confidence, the fraction of
  samples classified into A's classes, B's classes and both (the overlap), and each model's mean score.

    python benchmarks/apps_train_reference.py --out runs/apps_digits_0to5 --classes 0,1,2,3,4,5 \
        --results benchmarks/results/apps_train_digits_0to5.json
    python benchmarks/apps_train_reference.py --out runs/apps_digits_4to9 --classes 4,5,6,7,8,9 \
        --results benchmarks/results/apps_train_digits_4to9.json
    python benchmarks/apps_compose.py --checkpoint-a runs/apps_digits_0to5 --checkpoint-b runs/apps_digits_4to9

Results: benchmarks/results/apps_compose.json; sample grids and the table in model A's run folder.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import atebm
from atebm.apps import WeightedSum, generate
from atebm.data import load_dataset
from atebm.io import save_grid
from atebm.metrics import digit_features
from atebm.report import Report
from atebm.training import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def _classes(text: str) -> list[int]:
    return sorted({int(c) for c in text.split(",")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint-a", default="runs/apps_digits_0to5")
    parser.add_argument("--checkpoint-b", default="runs/apps_digits_4to9")
    parser.add_argument("--classes-a", default="0,1,2,3,4,5")
    parser.add_argument("--classes-b", default="4,5,6,7,8,9")
    parser.add_argument("--checkpoint", default=None, help="optional all-class model shown alone for reference")
    parser.add_argument("--report-dir", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--step-size", type=float, default=None)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--blur", type=float, default=0.0, help="Gaussian blur of the seeds in pixels (E supp. 4.3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(RESULTS / "apps_compose.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    a, b = atebm.load(args.checkpoint_a), atebm.load(args.checkpoint_b)
    cfg = a.meta["config"]
    steps = args.steps if args.steps is not None else int(cfg.get("k_max", 16))
    step_size = args.step_size if args.step_size is not None else float(cfg.get("step_size", 1.0))
    ca, cb = _classes(args.classes_a), _classes(args.classes_b)
    both = sorted(set(ca) & set(cb))
    ckpt = Path(args.checkpoint_a)
    run_dir = Path(args.report_dir) if args.report_dir else (ckpt if ckpt.is_dir() else ckpt.parent)
    seeds = load_dataset("photos", split="test", n=args.n, seed=1).x
    classifier = digit_features()
    scores = {"A": a, "B": b}
    rows_spec = [("A alone", a), ("B alone", b), ("A + B (sum of scores)", WeightedSum([a, b], [1.0, 1.0])),
                 ("log D_A + log D_B", WeightedSum([a, b], [1.0, 1.0], mode="log_prob"))]
    if args.checkpoint:
        rows_spec.append(("all-class reference alone", atebm.load(args.checkpoint)))
    protocol = {"model_a": f"{args.checkpoint_a} (classes {ca})", "model_b": f"{args.checkpoint_b} (classes {cb})",
                "seeds": f"{args.n} photo patches, test photos, seed 1",
                "sampler": f"PGD L2 ascent, {steps} steps x {step_size}, no eps-ball, seeds blurred sigma {args.blur}",
                "classifier": classifier.info.get("network", "digit_features"),
                "classifier_mnist_test_accuracy": classifier.info.get("test_accuracy")}
    results: dict = {"command": "python benchmarks/apps_compose.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "results" and v is not None),
        "protocol": protocol, "rows": {}}
    table, grids = [], [seeds[:16]]
    for label, score in rows_spec:
        x = generate(score, seeds, steps, step_size, args.blur)
        proba = classifier.predict_proba(x)
        pred = proba.argmax(1)
        with torch.no_grad():
            model_scores = {k: float(m(x).mean()) for k, m in scores.items()}
        entry = {"class_histogram": torch.bincount(pred, minlength=10).tolist(),
                 "confidence_mean": float(proba.max(1).values.mean()),
                 "fraction_in_A": float(torch.isin(pred, torch.tensor(ca)).float().mean()),
                 "fraction_in_B": float(torch.isin(pred, torch.tensor(cb)).float().mean()),
                 "fraction_in_both": float(torch.isin(pred, torch.tensor(both)).float().mean()),
                 "mean_score": model_scores}
        results["rows"][label] = entry
        table.append([label, round(entry["fraction_in_A"], 3), round(entry["fraction_in_B"], 3),
                      round(entry["fraction_in_both"], 3), round(entry["confidence_mean"], 3),
                      round(model_scores["A"], 2), round(model_scores["B"], 2),
                      " ".join(map(str, entry["class_histogram"]))])
        grids.append(x[:16])
        print(json.dumps({label: {k: entry[k] for k in ("fraction_in_both", "confidence_mean", "class_histogram")}}),
              flush=True)
    grid = save_grid(run_dir / "apps_compose" / "compose.png", torch.cat(grids), nrow=16, scale=2)
    report = Report.open(run_dir)
    report.add_table("apps/bench/compose", "Composition of two class-conditional MNIST models",
                     ["sampler on", f"in A {ca}", f"in B {cb}", f"in both {both}", "mean confidence",
                      "mean score A", "mean score B", "class histogram 0..9"], table, protocol=protocol)
    report.add_image("apps/bench/compose_grid", "Composition samples", grid.resolve(),
                     caption="rows: seeds, then " + ", ".join(label for label, _ in rows_spec) + "; same seeds")
    report.save()
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(args.results, results)
    print(f"wrote {args.results} and {report.path}")


if __name__ == "__main__":
    main()
