"""DSGAN case studies (S Sec. 2.2, Fig. 2-6) measured, with controls.

Runs :func:`atebm.dsgan.train_case` (``atebm dsgan train --case NAME``) for every named case (the 2D ones with
three seeds: GAN training of a 2D generator can drop the boundary or the centre, and one seed would hide it) and,
for the MNIST difference set, two controls: ``alpha = 0`` (an ordinary GAN of p_dbar = digits {1, 7}: about half
its samples should be 7s) and the sampling trick switched off (S Eq. 2 instead of Eq. 10). Writes
``benchmarks/results/dsgan/cases.json`` (the numbers, the command, the seconds) and copies each run's figures
(``<run>_points.png`` or ``<run>_samples.png`` and ``<run>_nearest.png``) beside it; the run folders (checkpoints,
reports) go to ``--runs``.

    nice python benchmarks/dsgan_cases.py                        # all runs, ~1.5 h on a busy 2-core machine
    nice python benchmarks/dsgan_cases.py --only mnist-difference
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atebm.dsgan import train_case
from atebm.training import write_json

RESULTS = Path(__file__).parent / "results" / "dsgan"
#: (run name, case, DSGANConfig overrides)
RUNS: list[tuple[str, str, dict[str, Any]]] = [
    ("swissroll-boundary", "swissroll-boundary", {}),
    ("swissroll-boundary-seed1", "swissroll-boundary", {"seed": 1}),
    ("swissroll-boundary-seed2", "swissroll-boundary", {"seed": 2}),
    ("disc-low-centre", "disc-low-centre", {}),
    ("disc-low-centre-seed1", "disc-low-centre", {"seed": 1}),
    ("disc-low-centre-seed2", "disc-low-centre", {"seed": 2}),
    ("mnist-difference", "mnist-difference", {}),
    ("mnist-difference-alpha0", "mnist-difference", {"alpha": 0.0}),
    ("mnist-difference-no-trick", "mnist-difference", {"sampling_trick": False}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/dsgan", help="folder for the run folders (default: runs/dsgan)")
    parser.add_argument("--only", nargs="+", help="run names to (re)run; the others keep their stored results")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-iters", type=int, default=None, help="override every run's budget")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "cases.json"
    command = "python benchmarks/dsgan_cases.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for name, case, overrides in RUNS:
        if args.only and name not in args.only:
            continue
        overrides = dict(overrides, progress=False, device="cpu")
        if args.max_iters:
            overrides["max_iters"] = args.max_iters
        out = Path(args.runs) / name
        if out.exists():
            shutil.rmtree(out)
        start = time.perf_counter()
        summary = train_case(case, out, overrides=overrides, n_eval=2000)
        summary["wall_seconds"] = time.perf_counter() - start
        summary["overrides"] = overrides
        summary["command"] = command
        summary["equivalent_command"] = (f"atebm dsgan train --case {case} --out {out} --threads {args.threads} "
                                         + " ".join(f"{k}={v}" for k, v in overrides.items()))
        results = json.loads(path.read_text()) if path.exists() else {}  # other runs may have finished meanwhile
        results["runs"] = {**results.get("runs", {}), name: summary}
        results["note"] = "each run records the command that produced it"
        for figure in ("report_files/dsgan_points.png", "samples.png", "nearest.png"):
            if (out / figure).exists():
                shutil.copy(out / figure, RESULTS / f"{name}_{Path(figure).name.replace('dsgan_', '')}")
        write_json(path, results)
        _print(name, summary)
    return 0


def _print(name: str, summary: dict) -> None:
    ev = summary["evaluation"]
    if "generated" in ev:
        g = ev["generated"]
        print(f"{name}: in target support {g['in_target_support']:.3f} (p_d {ev['p_d']['in_target_support']:.3f}), "
              f"p_dbar mass & p_d little {g['pbar_has_mass_and_pd_little']:.3f} (target "
              f"{ev['target']['pbar_has_mass_and_pd_little']:.3f}), ED to target {g['energy_distance_to_target']:.4f}")
    else:
        print(f"{name}: judged {ev['target_classes']}: {ev['fraction_target']:.3f}, judged p_d classes "
              f"{ev['fraction_pd_classes']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
