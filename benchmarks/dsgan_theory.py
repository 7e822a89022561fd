"""S Sec. 3 checked numerically on exact 2D densities, and how close trained generators get (issue 26 item 4).

For each 2D case study (``swissroll-boundary``, ``disc-low-centre``: p_dbar = p_d * N(0, 0.3^2 I), alpha 0.8) and
for a 2D difference set (p_d = one Gaussian blob, p_dbar = that blob and another, half each: the 2D analogue of
S Fig. 5-6) at alpha 0.5 (S Thm. 1's assumption ``alpha p_d <= p_dbar`` holds) and 0.8 (it fails),
:func:`atebm.dsgan.theory.check_theory` measures on a grid: Prop. 1's optimal discriminator against perturbed
ones, Eq. 3's identity ``C(G) = -log 4 + 2 JSD``, Thm. 1's minimum, the exact minimiser of ``C(G)``
``(k p_dbar - alpha p_d)+ / (1 - alpha)`` beside S Eq. 1's target ``(p_dbar - alpha p_d)+ / Z``, and Alg. 1 in
function space (Prop. 3) converging to the minimiser. Then it trains each 2D case (``atebm dsgan train --case``,
its own settings, ``--seeds``) and gives the energy distances of the generated points, of p_d and of p_dbar to
exact samples of both targets (:func:`atebm.dsgan.theory.energy_distances`).

Writes ``benchmarks/results/dsgan/theory.json``; run folders go to ``--runs``.

    nice -n 19 python benchmarks/dsgan_theory.py                          # 2 trainings of 3,000 steps
    nice -n 19 python benchmarks/dsgan_theory.py --seeds 0 1 2 --max-iters 1500
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atebm.dsgan import CASES, case_config, load_generator, train_case
from atebm.dsgan.theory import GridDensities, check_theory, energy_distances
from atebm.dsgan.toy import TOY_MIXTURES, BlurredMixture
from atebm.training import write_json

RESULTS = Path(__file__).parent / "results" / "dsgan"
POINT_CASES = [name for name, case in CASES.items() if case.kind == "points"]


def difference_set_2d() -> tuple[BlurredMixture, BlurredMixture]:
    """p_d = N((-1.5, 0), 0.4^2 I); p_dbar = p_d / 2 + N((1.5, 0), 0.4^2 I) / 2."""
    atoms = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])
    return (BlurredMixture(atoms[:1], torch.ones(1), 0.4, "blob"),
            BlurredMixture(atoms, torch.tensor([0.5, 0.5]), 0.4, "two blobs"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=161, help="grid cells per axis over [-4, 4] (default: 161)")
    parser.add_argument("--steps", type=int, default=3000, help="steps of Alg. 1 in function space")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds of the 2D cases")
    parser.add_argument("--max-iters", type=int, default=None, help="training budget (default: the case's)")
    parser.add_argument("--n-reference", type=int, default=2000, help="points per energy distance")
    parser.add_argument("--runs", default="runs/dsgan_theory", help="folder for the run folders")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/dsgan_theory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {"command": command, "note": "shared 2-core CPU, one thread, nice 19", "theory": {},
                              "trained": {}}
    path = RESULTS / "theory.json"

    p_d, p_dbar = difference_set_2d()
    for alpha in (0.5, 0.8):
        start = time.perf_counter()
        grid = GridDensities.of(p_d, p_dbar, cells=args.cells, name="difference-set-2d")
        result["theory"][f"difference-set-2d-alpha{alpha}"] = {
            **check_theory(grid, alpha, steps=args.steps), "seconds": time.perf_counter() - start}
        write_json(path, result)

    for name in POINT_CASES:
        case, config = CASES[name], case_config(name)
        assert case.mixture is not None
        mixture = TOY_MIXTURES[case.mixture]()
        start = time.perf_counter()
        grid = GridDensities.of(mixture, tau=case.tau, cells=args.cells, name=name)
        theory = check_theory(grid, config.alpha, steps=args.steps)
        result["theory"][name] = {**theory, "seconds": time.perf_counter() - start}
        print(name, "k", f"{theory['k']:.3f}", theory["holds"], flush=True)
        write_json(path, result)
        for seed in args.seeds:
            out = Path(args.runs) / f"{name}-seed{seed}"
            if out.exists():
                shutil.rmtree(out)
            overrides: dict[str, Any] = {"progress": False, "device": "cpu"}
            if args.max_iters:
                overrides["max_iters"] = args.max_iters
            start = time.perf_counter()
            summary = train_case(name, out, overrides=overrides, seed=seed, log=None)
            objective, _ = load_generator(out)
            distances = energy_distances(objective.generate(args.n_reference), mixture, case.tau, config.alpha,
                                         theory["k"], n_reference=args.n_reference, seed=seed)
            result["trained"][f"{name}-seed{seed}"] = {
                "case": name, "seed": seed, "iterations": summary["iterations"], "k": theory["k"],
                "energy_distances": distances, "wall_seconds": time.perf_counter() - start,
                "equivalent_command": f"atebm dsgan train --case {name} --out {out} --seed {seed} --device cpu "
                                      f"--threads {args.threads}" + (f" max_iters={args.max_iters}"
                                                                     if args.max_iters else "")}
            print(name, seed, {k: round(v, 4) for k, v in distances.items()}, flush=True)
            write_json(path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
