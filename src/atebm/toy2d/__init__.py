"""The 2D theory lab: maximin (binary AT, E Alg. 1) vs minimax (G Alg. 2, E supp. Alg. 3) on toy data.

* :mod:`~atebm.toy2d.datasets` – Gaussian (the papers' case), ring, moons, spirals, checkerboard, swiss roll;
  p_0 uniform / corner / mixture; the concrete support definition (3 sigma around the skeleton).
* :mod:`~atebm.toy2d.solvers` – maximin = :class:`atebm.Trainer` on ``mlp2d`` with unconstrained PGD; minimax =
  the alternating loop with one :func:`atebm.pgd` step per round.
* :mod:`~atebm.toy2d.metrics` – the Proposition-1 numbers (D on/off the support, basins of ascent, off-support
  local maxima, energy distance).
* :mod:`~atebm.toy2d.plots` – contours of D, unit gradient field, particles, strips and GIFs (matplotlib's
  object-oriented API; the pyplot backend is left alone).
* :mod:`~atebm.toy2d.experiment` – one panel / all four panels with JSON, PNGs and checkpoints;
  :func:`run_toy2d` is ``atebm toy2d`` (``atebm toy2d --all --out DIR``).
"""
from .datasets import DATASETS, P0_KINDS, Toy2D, get_dataset, parse_mixture, sample_p0
from .experiment import PANELS, Panel, add_to_report, run_all, run_panel, run_toy2d, toy2d_panels, write_panel
from .metrics import AscentProtocol, energy_distance, find_maxima, prop1_metrics
from .solvers import MaximinSettings, MinimaxSettings, SolverResult, mlp2d_spec, solve_maximin, solve_minimax

__all__ = [
    "DATASETS", "P0_KINDS", "Toy2D", "get_dataset", "parse_mixture", "sample_p0",
    "PANELS", "Panel", "run_all", "run_panel", "write_panel", "run_toy2d", "toy2d_panels", "add_to_report",
    "AscentProtocol", "energy_distance", "find_maxima", "prop1_metrics",
    "MaximinSettings", "MinimaxSettings", "SolverResult", "mlp2d_spec", "solve_maximin", "solve_minimax",
]
