"""Adversarial training with DSGAN low-density samples (S Sec. 5.2, Eq. 9, Fig. 7, 9-10) on MNIST 5,000.

:func:`atebm.dsgan.run_low_density_at` (``atebm dsgan robust``) with its defaults: baseline classifier (conv body,
64-d features, three non-linear head layers), feature-space DSGAN with uniform noise of half-width 0.5 feature
standard deviations (alpha 0.8, k = 5), fine-tuning with cross-entropy + w * entropy on generated features for
w in {1, 3, 10}; against the baseline, a cross-entropy fine-tuning control and noise-augmented baselines
(uniform pixel noise 0.1, 0.2, 0.3); every model's robust accuracy is the per-input worst case of the attack layer
(:meth:`atebm.dsgan.RobustSettings.protocol`: margin PGD with random restarts, ART APGD-CE and APGD-DLR, ART Square)
at every Linf and L2 radius, the protocol written beside the numbers. Writes ``benchmarks/results/dsgan/robust.json``
and ``robust_accuracy.png``; ``key=value`` arguments override :class:`~atebm.dsgan.RobustSettings` fields.

    nice python benchmarks/dsgan_robust.py [n_test=500 ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from atebm.dsgan import RobustSettings, run_low_density_at

RESULTS = Path(__file__).parent / "results" / "dsgan"


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    args = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/dsgan_robust.py " + " ".join(args)
    overrides = dict(arg.split("=", 1) for arg in args)
    settings = RobustSettings(**{key: json.loads(value) for key, value in overrides.items()})
    summary = run_low_density_at(RESULTS, settings, command=command)
    for name, r in summary["results"].items():
        print(name, {k: r[k] for k in ("clean", "linf", "l2")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
