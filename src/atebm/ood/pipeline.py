"""The ``atebm eval-ood`` pipeline as a library function: in-distribution set, OOD suites, clean and worst-case
scores, ``ood.json`` and the report sections (the demo calls it with the same defaults)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEFAULTS", "run_eval_ood"]

#: Defaults shared by the command and :func:`run_eval_ood` (the demo calls it with the same values, so that
#: ``atebm eval-ood`` on the demo checkpoints reproduces the demo's numbers).
DEFAULTS: dict[str, Any] = {
    "eps": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0), "n": 128, "n_in": 500, "norm": "l2", "attackers": ("pgd", "apgd"),
    "pgd_steps": (10,), "pgd_step_sizes": None, "pgd_step_factor": 2.5, "pgd_restarts": 0, "apgd_steps": 10,
    "apgd_restarts": 1, "apgd_loss": "dlr", "threshold": 0.9, "seed": 0, "batch_size": 256, "size": 28,
}


def run_eval_ood(models: dict[str, Any], out: str | Path, *, eps=DEFAULTS["eps"], norm: str = DEFAULTS["norm"],
                 n: int = DEFAULTS["n"], n_in: int = DEFAULTS["n_in"], in_dist: str = "mnist",
                 suites=None, suite_files: dict[str, str] | None = None, size: int = DEFAULTS["size"],
                 channels: int = 1, attackers=DEFAULTS["attackers"], pgd_steps=DEFAULTS["pgd_steps"],
                 pgd_step_sizes=DEFAULTS["pgd_step_sizes"], pgd_restarts: int = DEFAULTS["pgd_restarts"],
                 apgd_steps: int = DEFAULTS["apgd_steps"], apgd_restarts: int = DEFAULTS["apgd_restarts"],
                 apgd_loss: str = DEFAULTS["apgd_loss"], early_stop: bool = True,
                 threshold: float = DEFAULTS["threshold"], seed: int = DEFAULTS["seed"],
                 batch_size: int = DEFAULTS["batch_size"], report: bool = True, device: str | None = None,
                 checkpoints: dict[str, str] | None = None, verbose: bool = True) -> dict[str, Any]:
    """The whole ``eval-ood`` pipeline for already loaded models (the demo calls this): builds the in-distribution
    set and the OOD suites, runs :func:`atebm.ood.evaluate` with the command's defaults and writes
    ``out/ood.json``, ``out/ood_scores.npz`` and (``report=True``) the report sections."""
    from .attacks import AttackConfig
    from .evaluate import evaluate
    from .suites import (EMBEDDED_SUITES, describe_fonts, embedded_suite, file_suite, in_distribution,
                         suite_descriptions)

    suites = list(EMBEDDED_SUITES if suites is None else suites)
    suite_files = dict(suite_files or {})
    if not suites and not suite_files:
        raise ValueError("no OOD sets: give --suites and/or --suite-file NAME=PATH")
    clash = sorted(set(suites) & set(suite_files))
    if clash:
        raise ValueError(f"--suite-file names {clash} clash with embedded suites; rename them")
    if Path(in_dist).exists() or ":" in in_dist or "?" in in_dist:
        x_in = file_suite(in_dist, n=n_in, size=size, channels=channels, seed=seed)
        in_desc = f"{in_dist} ({len(x_in)} images)"
    else:
        x_in = in_distribution(in_dist, split="test", size=size, channels=channels, seed=seed)[:n_in]
        in_desc = f"{in_dist}/test ({len(x_in)} images)"
    sets = {name: embedded_suite(name, n, size=size, channels=channels, seed=seed) for name in suites}
    for name, path in suite_files.items():
        sets[name] = file_suite(path, n=n, size=size, channels=channels, seed=seed)
    descriptions = {k: v for k, v in suite_descriptions().items() if k in sets}
    descriptions.update({name: f"file {path}" for name, path in suite_files.items()})
    config = AttackConfig(attackers=tuple(attackers), pgd_steps=tuple(pgd_steps),
                          pgd_step_sizes=tuple(pgd_step_sizes) if pgd_step_sizes else (None,),
                          pgd_step_factor=DEFAULTS["pgd_step_factor"], pgd_random_restarts=pgd_restarts,
                          apgd_steps=apgd_steps, apgd_restarts=apgd_restarts, apgd_loss=apgd_loss,
                          early_stop=early_stop, batch_size=batch_size)
    extra = {"in_distribution": in_desc, "suites": descriptions, "image_size": size, "channels": channels}
    if "letters" in sets:
        extra["fonts"] = describe_fonts()
    if checkpoints:
        extra["checkpoints"] = {k: str(v) for k, v in checkpoints.items()}
    return evaluate(models, x_in, sets, eps, norm=norm, config=config, threshold=threshold, seed=seed,
                    out_dir=out, report=out if report else None, verbose=verbose, protocol_extra=extra,
                    device=device)
