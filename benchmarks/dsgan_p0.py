"""DSGAN samples as p_0 for binary AT (issue 13 item 7, beyond S): what to use when no diverse OOD set exists.

1. A DSGAN of the data's boundary on MNIST 5,000 (the embedded ``mnist`` train split, 3,500 digits): p_d = the
   digits, p_dbar = p_d convolved with Gaussian pixel noise (``--pbar gaussian:0.3``, clamped to [0, 1]; S Sec. 2.2
   Fig. 2-4 build the boundary with Gaussian noise; pixel space because p_0 must be images the AT model reads),
   alpha 0.8, k 1, GAN loss, the Eq. 10 sampling trick. Its generator learns (p_dbar - alpha p_d) / (1 - alpha):
   noisy, off-manifold digits. ``--n-p0`` samples go to ``samples.npz`` (``atebm dsgan sample``).
2. Binary AT with the ``mnist`` preset three times, identical except p_0: the DSGAN samples (``npz:...``), natural
   photo patches (``photos?split=train&n=20000``, the preset default) and uniform noise (``uniform``). Same seed,
   same ``max_iters`` (reduced from the preset's 2,000 for the CPU budget), final weights (no model selection: the
   demo's selection by validation FD uses photo seeds and would favour one arm).
3. Each model: :func:`atebm.ood.run_eval_ood` with its defaults (every embedded suite, eps 0-8 L2, both
   attackers: atebm.pgd and ART's APGD), and generation quality as the demo measures it (preset generation
   settings, 500 samples, Fréchet distance to the 3,500 training digits in the digit classifier's 64-d features),
   from two seed sets: the demo's held-out photo patches (the same for every arm) and held-out draws of the
   arm's own p_0.

Writes ``benchmarks/results/dsgan/p0.json`` (numbers, budgets, the command), ``p0_dsgan_samples.png`` (the DSGAN
p_0) and ``p0_<arm>_generated.png`` (samples of each AT model from photo seeds); run folders go to ``--runs``.

    nice -n 10 python benchmarks/dsgan_p0.py                    # ~25 CPU-minutes, one thread
    nice -n 10 python benchmarks/dsgan_p0.py --reuse            # skip the trainings whose run folders exist
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atebm.apps.generate import generate
from atebm.data import load_dataset
from atebm.dsgan import sample_generator, train_on_data
from atebm.io import save_grid
from atebm.metrics import digit_features, generation_metrics, nearest_neighbours
from atebm.monitor import FailureMonitor
from atebm.presets import PRESETS
from atebm.training import MODEL_FILE, load_model, write_json
from atebm.training.run import run_training

RESULTS = Path(__file__).parent / "results" / "dsgan"
ARMS = ("dsgan", "photos", "uniform")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/dsgan_p0", help="folder for the run folders")
    parser.add_argument("--pbar", default="gaussian:0.3", help="p_dbar of the DSGAN (atebm dsgan train --pbar)")
    parser.add_argument("--dsgan-iters", type=int, default=1500, help="DSGAN discriminator steps")
    parser.add_argument("--at-iters", type=int, default=800, help="max_iters of every AT arm (preset: 2000)")
    parser.add_argument("--n-p0", type=int, default=20000, help="DSGAN samples written as p_0")
    parser.add_argument("--n-eval", type=int, default=500, help="generated samples per FD")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="reuse finished run folders in --runs")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long check of the pipeline (tiny OOD evaluation; results go to --runs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    results = runs / "results" if args.smoke else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/dsgan_p0.py " + " ".join(sys.argv[1:] if argv is None else argv)
    preset = PRESETS["mnist"]
    timings: dict[str, float] = {}

    # 1. the DSGAN of the boundary and its samples -----------------------------------------------------------
    dsgan_dir, p0_dir = runs / "dsgan", runs / "dsgan" / "p0"
    t = time.perf_counter()
    if not (args.reuse and (dsgan_dir / "run.json").exists()):
        if dsgan_dir.exists():
            shutil.rmtree(dsgan_dir)
        train_on_data(dsgan_dir, "mnist?split=train", args.pbar,
                      overrides={"max_iters": args.dsgan_iters, "seed": args.seed, "progress": False,
                                 "device": "cpu", "log_every": 100, "ckpt_every": 500}, n_eval=64, device="cpu",
                      log=None)
    timings["dsgan_train_s"] = time.perf_counter() - t
    dsgan_run = json.loads((dsgan_dir / "run.json").read_text())
    t = time.perf_counter()
    sample_generator(dsgan_dir, p0_dir, n=args.n_p0, seed=args.seed)
    sample_generator(dsgan_dir, runs / "dsgan" / "held_out", n=args.n_eval, seed=args.seed + 1)
    timings["dsgan_sample_s"] = time.perf_counter() - t
    p0_specs = {"dsgan": f"npz:{p0_dir / 'samples.npz'}", "photos": preset.p0, "uniform": "uniform"}

    net = digit_features(device="cpu")
    train_set = load_dataset("mnist", split="train")
    train = train_set.x
    dsgan_x = torch.from_numpy(np.load(p0_dir / "samples.npz")["x"])
    save_grid(results / "p0_dsgan_samples.png", dsgan_x[:128], nrow=16, scale=2)
    p0_quality = {"dsgan": _p0_quality(dsgan_x[:args.n_eval], train_set, net),
                  "photos": _p0_quality(load_dataset("photos", split="train", n=args.n_eval, seed=0).x, train_set,
                                        net),
                  "uniform": _p0_quality(load_dataset("uniform", split="train", n=args.n_eval, seed=0).x, train_set,
                                         net),
                  "noisy digits (p_dbar itself)": _p0_quality(_noisy(train[:args.n_eval], args.pbar), train_set,
                                                              net)}

    # 2. three AT arms, identical but for p_0 -----------------------------------------------------------------
    overrides = {"max_iters": args.at_iters, "seed": args.seed, "device": "cpu", "progress": False}
    training: dict[str, Any] = {}
    for arm in ARMS:
        out = runs / f"at_{arm}"
        info_path = out / "arm.json"
        if not (args.reuse and info_path.exists()):
            if out.exists():
                shutil.rmtree(out)
            monitor = FailureMonitor()
            t = time.perf_counter()
            trainer = run_training(preset, out, {**overrides, "p0": p0_specs[arm]}, callbacks=[monitor], log=False)
            info = {"p0": p0_specs[arm], "iterations": trainer.step, "final_k": trainer.k,
                    "stop": trainer.stop_reason, "train_seconds": time.perf_counter() - t,
                    "last_log": trainer.history[-1] if trainer.history else None, "monitor": monitor.status_text(),
                    "equivalent_command": f"atebm train --preset mnist --out {out} --threads {args.threads} "
                                          + " ".join(f"{k}={v}" for k, v in {**overrides, "p0": p0_specs[arm]}
                                                     .items())}
            write_json(info_path, info)
            print(f"AT p0={arm}: {trainer.step} iterations, K={trainer.k}, {info['train_seconds']:.0f} s",
                  file=sys.stderr)
        training[arm] = json.loads(info_path.read_text())
    models = {arm: load_model(runs / f"at_{arm}" / MODEL_FILE) for arm in ARMS}

    # 3. worst-case OOD AUROC on every suite, both attackers ------------------------------------------------------
    from atebm.ood import run_eval_ood

    t = time.perf_counter()
    smoke = {"n": 8, "n_in": 8, "eps": (0, 1)} if args.smoke else {}
    ood = run_eval_ood({f"p0={arm}": models[arm] for arm in ARMS}, runs / "ood", report=False, verbose=False,
                       checkpoints={f"p0={arm}": str(runs / f"at_{arm}" / MODEL_FILE) for arm in ARMS}, **smoke)
    timings["ood_s"] = time.perf_counter() - t

    # 4. generation quality: FD in the digit classifier's features (the demo's measure) -------------------------
    t = time.perf_counter()
    gen = preset.generate.to_dict()
    photo_seeds = load_dataset("photos", split="test", n=args.n_eval, seed=1).x
    own_seeds = {"dsgan": torch.from_numpy(np.load(runs / "dsgan" / "held_out" / "samples.npz")["x"]),
                 "photos": photo_seeds, "uniform": load_dataset("uniform", split="test", n=args.n_eval, seed=1).x}
    generation: dict[str, Any] = {}
    for arm in ARMS:
        rows = {}
        for seeds_name, seeds in (("photo seeds", photo_seeds), ("own p0 seeds", own_seeds[arm])):
            samples = generate(models[arm], seeds, gen["steps"], gen["step_size"]).cpu()
            rows[seeds_name] = _brief(generation_metrics(samples, train, net, train=train, seed=0))
            if seeds_name == "photo seeds":
                save_grid(results / f"p0_{arm}_generated.png", samples[:128], nrow=16, scale=2)
        generation[arm] = rows
    test = load_dataset("mnist", split="test", n=args.n_eval, seed=0).x
    reference = _brief(generation_metrics(test, train, net, train=train, seed=0))
    timings["generation_s"] = time.perf_counter() - t

    suites = list(next(iter(ood["models"].values()))["sets"])
    eps = list(ood["protocol"]["eps"])
    table = {arm: _ood_table(ood["models"][f"p0={arm}"], suites) for arm in ARMS}
    summary = {
        "benchmark": "binary AT (preset mnist) with p_0 = DSGAN boundary samples vs natural photos vs uniform noise",
        "command": command,
        "equivalent_commands": [
            f"atebm dsgan train --data 'mnist?split=train' --pbar {args.pbar} --out {dsgan_dir} --threads "
            f"{args.threads} max_iters={args.dsgan_iters} seed={args.seed}",
            f"atebm dsgan sample --checkpoint {dsgan_dir} --n {args.n_p0} --out {p0_dir}",
            *(training[arm]["equivalent_command"] for arm in ARMS),
            "atebm eval-ood --checkpoint ... (run_eval_ood with its defaults on the three model.pt files)"],
        "budget": {"cpu": f"{args.threads} torch thread(s), nice -n 10, 2-core machine shared with other jobs",
                   "at_max_iters": args.at_iters, "preset_max_iters": preset.train["max_iters"],
                   "dsgan_iters": args.dsgan_iters, "reduction": f"every AT arm trains {args.at_iters} iterations "
                   f"instead of the preset's {preset.train['max_iters']} (equal for all arms); final weights, no "
                   "selection", "seed": args.seed},
        "dsgan": {"pbar": args.pbar, "data": "mnist?split=train (3,500 digits)", "run": dsgan_run,
                  "n_p0": args.n_p0, "p0_quality": p0_quality},
        "training": training,
        "ood": {"protocol": {k: ood["protocol"][k] for k in ("eps", "norm", "n_in", "n_ood", "threshold")},
                "attackers": ood["protocol"]["attack"]["attackers"], "suites": suites, "eps": eps,
                "worst_case_auroc": table,
                "mean_auroc_by_eps": {arm: ood["models"][f"p0={arm}"]["mean_auroc_by_eps"] for arm in ARMS},
                "eps_below_threshold": {arm: ood["models"][f"p0={arm}"]["eps_below_threshold"] for arm in ARMS}},
        "generation": {"settings": dict(gen), "n": args.n_eval,
                       "feature_network": net.info["network"], "fd_reference": "MNIST 5,000 train split (3,500)",
                       "held_out_test_digits": reference, "arms": generation},
        "timings_s": timings,
        "files": ["dsgan/p0_dsgan_samples.png", *(f"dsgan/p0_{arm}_generated.png" for arm in ARMS)],
    }
    write_json(results / "p0.json", summary)
    _print(summary)
    return 0


def _noisy(x: torch.Tensor, pbar: str) -> torch.Tensor:
    from atebm.dsgan import NoisySource

    kind, _, scale = pbar.partition(":")
    source = NoisySource(x, kind, float(scale), clamp=(0.0, 1.0))
    return source.get_batch(torch.arange(len(x)))


def _p0_quality(x: torch.Tensor, train: Any, net: Any) -> dict[str, Any]:
    """FD, KID, classes read by the digit classifier and, per sample, the class of the nearest training digit in
    pixels: the classifier reads most noisy off-manifold images as 2, 3 or 8 (even p_dbar's own noisy digits), the
    nearest digit still says around which classes the samples lie."""
    row = _brief(generation_metrics(x, train.x, net, train=train.x, seed=0))
    _, nearest = nearest_neighbours(x, train.x, k=1)
    hist = torch.bincount(train.y[nearest[:, 0]], minlength=10)
    return {**row, "nearest_train_class_histogram": hist.tolist(),
            "nearest_train_classes_covered": int((hist >= 0.01 * hist.sum()).sum())}


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    hist = np.asarray(row.get("class_histogram", []))
    return {"fd": row["fd"], "kid": row["kid"], "nn_l2": row.get("nn_l2"),
            "classes_covered": int((hist >= 0.01 * hist.sum()).sum()) if hist.size else None,
            "class_histogram": row.get("class_histogram")}


def _ood_table(model: dict[str, Any], suites: list[str]) -> dict[str, Any]:
    """Per suite: clean AUROC and the worst-case AUROC at every eps (best of both attackers), and per attacker."""
    table: dict[str, Any] = {}
    for suite in suites:
        entry = model["sets"][suite]
        table[suite] = {"clean": entry["clean"]["auroc"],
                        "worst_case": {e: r["auroc"] for e, r in entry["worst_case"].items()},
                        "by_attacker": {e: r.get("by_attacker") for e, r in entry["worst_case"].items()}}
    return table


def _print(summary: dict[str, Any]) -> None:
    ood = summary["ood"]
    print(f"worst-case AUROC (both attackers), eps = {ood['eps']}")
    for suite in ood["suites"]:
        for arm in ARMS:
            row = ood["worst_case_auroc"][arm][suite]
            values = [row["clean"], *row["worst_case"].values()]
            print(f"  {suite:9s} p0={arm:8s} " + " ".join(f"{v:.3f}" for v in values))
    for arm in ARMS:
        print(f"  mean      p0={arm:8s} " + " ".join(f"{v:.3f}" for v in ood["mean_auroc_by_eps"][arm].values()))
    for arm in ARMS:
        g = summary["generation"]["arms"][arm]
        print(f"FD p0={arm}: photo seeds {g['photo seeds']['fd']:.1f}, own p0 seeds {g['own p0 seeds']['fd']:.1f}")


if __name__ == "__main__":
    sys.exit(main())
