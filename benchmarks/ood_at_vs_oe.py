"""AT vs Outlier Exposure on the embedded default: clean and worst-case OOD AUROC over eps in {0,1,2,3,5,8} (L2).

Trains the ``mnist`` preset (binary AT, progressive K) and the same trainer at K = 0 (Outlier Exposure) unless
checkpoints are given, then runs the ``atebm eval-ood`` pipeline (:func:`atebm.ood.run_eval_ood`) with its
defaults (:class:`atebm.ood.OODEvalConfig`) and prints one JSON object: timings, mean AUROC per eps, the eps where
each model falls below 0.9 per set, and whether AT beats OE on every set at eps >= 3 (G Tab. 2, E Tab. 4).

    python benchmarks/ood_at_vs_oe.py --work /tmp/ood_bench [--checkpoint A --checkpoint-oe B] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for checkpoints, ood.json and the report")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="AT run folder or model file (default: train the preset)")
    parser.add_argument("--checkpoint-oe", type=Path, default=None,
                        help="OE run folder or model file (default: train it)")
    parser.add_argument("--oe-iters", type=int, default=300, help="iterations of the K=0 baseline (default 300)")
    parser.add_argument("--max-iters", type=int, default=None, help="override the preset's AT budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=None, help="OOD samples per set (default: eval-ood's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from atebm import load_model
    from atebm.ood import compare_models, run_eval_ood

    timings = {}
    at_path, oe_path = args.checkpoint, args.checkpoint_oe
    if at_path is None or oe_path is None:
        from atebm.presets import PRESETS
        from atebm.training.run import run_training

        preset = PRESETS["mnist"]
        if at_path is None:
            t = time.perf_counter()
            overrides = {"progress": False, **({"max_iters": args.max_iters} if args.max_iters else {})}
            trainer = run_training(preset, args.work / "at", overrides, log=False)
            timings["train_at_s"] = time.perf_counter() - t
            timings["at_iterations"], timings["at_final_k"] = trainer.step, trainer.k
            at_path = args.work / "at"
        if oe_path is None:
            t = time.perf_counter()
            run_training(preset, args.work / "oe", {"progress": False, "k_max": 0, "max_iters": args.oe_iters},
                         log=False)
            timings["train_oe_s"] = time.perf_counter() - t
            oe_path = args.work / "oe"
    models = {"AT": load_model(at_path), "OE (K=0)": load_model(oe_path)}
    t = time.perf_counter()
    result = run_eval_ood(models, args.work / "eval", verbose=False, **({"n": args.n} if args.n else {}),
                          checkpoints={"AT": str(at_path), "OE (K=0)": str(oe_path)})
    timings["eval_ood_s"] = time.perf_counter() - t
    out = {
        "threads": args.threads, "timings_s": timings,
        "eval_seconds_per_model": {m: v["seconds"] for m, v in result["models"].items()},
        "mean_auroc_by_eps": {m: v["mean_auroc_by_eps"] for m, v in result["models"].items()},
        "eps_below_0.9": {m: v["eps_below_threshold"] for m, v in result["models"].items()},
        "at_beats_oe_at_eps_ge_3": compare_models(result, "AT", "OE (K=0)", min_eps=3.0),
        "protocol": {k: result["protocol"][k] for k in ("n_in", "n_ood", "eps", "attack")},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
