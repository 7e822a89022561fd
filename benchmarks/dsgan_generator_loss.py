"""Which generator loss the DSGAN case studies use (issue 26 item 1): S Alg. 1 line 9 descends
``log(1 - D(G(z)))`` (``generator_loss=minimax``); GAN practice uses the non-saturating ``-log D(G(z))``.

Trains every named case (:func:`atebm.dsgan.train_case`, ``atebm dsgan train --case NAME``) with both generator
losses on the same seeds, everything else at the case's settings except the budget (``--max-iters``, cut for a
shared CPU), and records the case's own measurement: for the 2D cases the energy distance of the generated points
to an exact sample of the target ``(p_dbar - alpha p_d)+`` (beside p_d's and p_dbar's) and the fraction in the
target's support; for ``mnist-difference`` the fraction judged 7 and the Fréchet ratio to held-out sevens
(:func:`atebm.metrics.diversity_metrics`). Writes ``benchmarks/results/dsgan/generator_loss.json`` (per run and
per case and loss: mean and spread over the seeds, the command, the seconds); run folders go to ``--runs``.

    nice -n 19 python benchmarks/dsgan_generator_loss.py                  # 2D: 1,500 steps; MNIST: 500 steps
    nice -n 19 python benchmarks/dsgan_generator_loss.py --cases mnist-difference --seeds 0
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atebm.dsgan import CASES, train_case
from atebm.training import write_json

RESULTS = Path(__file__).parent / "results" / "dsgan"
LOSSES = ("minimax", "non-saturating")
#: Default budgets (discriminator steps) per case kind: a 2D case trains 3,000 steps at its own settings, an
#: image case 3,000 (10-15 minutes each on the shared CPU); these keep one run near 1-2 minutes.
BUDGETS = {"points": 1500, "images": 500}


def measure(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers a run is judged by (module doc)."""
    ev = summary["evaluation"]
    if "generated" in ev:
        return {"energy_distance_to_target": ev["generated"]["energy_distance_to_target"],
                "in_target_support": ev["generated"]["in_target_support"],
                "p_d_energy_distance_to_target": ev["p_d"]["energy_distance_to_target"],
                "p_dbar_energy_distance_to_target": ev["p_dbar"]["energy_distance_to_target"]}
    return {"fraction_target": ev["fraction_target"], "fd_ratio": ev["diversity"]["fd_ratio"],
            "classes_covered": ev["diversity"]["classes_covered"]}


def summarise(runs: dict[str, Any]) -> dict[str, Any]:
    """Per case and loss: each measured number's mean, min and max over the seeds."""
    groups: dict[str, dict[str, list[dict[str, float]]]] = {}
    for run in runs.values():
        groups.setdefault(run["case"], {}).setdefault(run["generator_loss"], []).append(run["measured"])
    table: dict[str, Any] = {}
    for case, by_loss in groups.items():
        for loss, measured in by_loss.items():
            table.setdefault(case, {})[loss] = {
                key: {"mean": statistics.fmean(m[key] for m in measured), "min": min(m[key] for m in measured),
                      "max": max(m[key] for m in measured)} for key in measured[0]} | {"seeds": len(measured)}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--points-iters", type=int, default=BUDGETS["points"], help="budget of a 2D case")
    parser.add_argument("--image-iters", type=int, default=BUDGETS["images"], help="budget of an image case")
    parser.add_argument("--runs", default="runs/dsgan_generator_loss", help="folder for the run folders")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/dsgan_generator_loss.py " + " ".join(sys.argv[1:] if argv is None else argv)
    path = RESULTS / "generator_loss.json"
    for case in args.cases:
        budget = args.points_iters if CASES[case].kind == "points" else args.image_iters
        for seed in args.seeds:
            for loss in LOSSES:
                name = f"{case}-{loss}-seed{seed}"
                out = Path(args.runs) / name
                if out.exists():
                    shutil.rmtree(out)
                overrides = {"generator_loss": loss, "max_iters": budget, "progress": False, "device": "cpu"}
                start = time.perf_counter()
                summary = train_case(case, out, overrides=overrides, seed=seed, log=None)
                run = {"case": case, "generator_loss": loss, "seed": seed, "max_iters": budget,
                       "measured": measure(summary), "wall_seconds": time.perf_counter() - start,
                       "equivalent_command": f"atebm dsgan train --case {case} --out {out} --seed {seed} --device cpu "
                                             f"--threads {args.threads} generator_loss={loss} max_iters={budget}"}
                results = json.loads(path.read_text()) if path.exists() else {}
                runs = {**results.get("runs", {}), name: run}
                write_json(path, {"command": command, "note": "shared 2-core CPU, one thread, nice 19",
                                  "summary": summarise(runs), "runs": runs})
                print(name, json.dumps(run["measured"]), f"{run['wall_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
