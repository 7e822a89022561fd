"""The ``atebm eval-ood`` pipeline as a library function: in-distribution set, OOD suites, clean and worst-case
scores, ``ood.json`` and the report sections. The command and the demo call it with the defaults of
:class:`~atebm.ood.OODEvalConfig`, so ``atebm eval-ood`` on the demo's run folders reproduces the demo's numbers.

Image size and channels come from the models (``model.meta``, filled by :func:`atebm.load_model` from the
checkpoint). Only where a model does not record them: channels from its spec's ``in_channels``, then the size
(and channels) at which the in-distribution reader delivers the data by default; the protocol says which.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from ..sampling import ScoreFn, declared_input_shape
from .evaluate import OODEvalConfig, evaluate, resolve_config

__all__ = ["run_eval_ood", "input_geometry"]


def _one_value(found: Mapping[str, tuple[Any, str]], what: str) -> tuple[Any, str] | None:
    values = {value for value, _ in found.values()}
    if len(values) > 1:
        listing = ", ".join(f"{name}: {value}" for name, (value, _) in found.items())
        raise ValueError(f"the models take different {what} ({listing}); evaluate them separately")
    if not values:
        return None
    return next(iter(found.values()))


def input_geometry(models: Mapping[str, ScoreFn]) -> dict[str, Any]:
    """``{"size", "channels", "size_from", "channels_from"}`` the models declare (``None`` where none does):
    ``model.meta`` first, then (channels only) the spec's ``in_channels``. Models that disagree are an error."""
    sizes: dict[str, tuple[Any, str]] = {}
    channels: dict[str, tuple[Any, str]] = {}
    for name, model in models.items():
        meta = getattr(model, "meta", None) or {}
        declared_channels, declared_size = declared_input_shape(model)
        if declared_size is not None:
            if declared_size[0] != declared_size[1]:
                raise ValueError(f"model {name!r} takes {declared_size[0]}x{declared_size[1]} images; the OOD "
                                 "suites are square")
            sizes[name] = (declared_size[0], "checkpoint meta")
        if declared_channels is not None:
            source = "checkpoint meta" if meta.get("channels") is not None else "model spec in_channels"
            channels[name] = (declared_channels, source)
    size = _one_value(sizes, "image sizes")
    channel = _one_value(channels, "channel counts")
    return {"size": size[0] if size else None, "size_from": size[1] if size else None,
            "channels": channel[0] if channel else None, "channels_from": channel[1] if channel else None}


def _in_distribution(spec: str, n: int, seed: int, geometry: Mapping[str, Any]) -> tuple[Tensor, str]:
    from .suites import file_suite, in_distribution

    shape = {k: geometry[k] for k in ("size", "channels") if geometry[k] is not None}
    if Path(spec).exists() or ":" in spec or "?" in spec:
        x = file_suite(spec, n=n, seed=seed, **shape)
        return x, f"{spec} ({len(x)} images)"
    x = in_distribution(spec, split="test", seed=seed, **shape)[:n]
    return x, f"{spec}/test ({len(x)} images)"


def run_eval_ood(models: Mapping[str, ScoreFn], out: str | Path, config: OODEvalConfig | None = None, *,
                 suite_files: Mapping[str, str] | None = None, report: bool = True,
                 device: str | None = None, checkpoints: Mapping[str, str] | None = None, verbose: bool = True,
                 **overrides: Any) -> dict[str, Any]:
    """The whole ``eval-ood`` pipeline for already loaded models (the demo calls this).

    Draws ``config.n_in`` in-distribution test images and ``config.n`` images of each OOD set
    (``config.suites``, default all embedded ones, plus ``suite_files``: name -> path or data-source string) at
    the models' image size and channels, runs :func:`atebm.ood.evaluate` and writes ``out/ood.json``,
    ``out/ood_scores.npz`` and (``report=True``) the report sections. ``config`` defaults to
    :class:`~atebm.ood.OODEvalConfig`; ``overrides`` change single settings (``n=32``, ``eps=(0, 1)``,
    ``attackers=("pgd",)``, ...). Returns the result that ``ood.json`` holds.
    """
    from .suites import EMBEDDED_SUITES, describe_fonts, embedded_suite, file_suite, suite_descriptions

    if not models:
        raise ValueError("models is empty: pass {'name': score_model, ...}")
    config = resolve_config(config, overrides)
    suites = list(EMBEDDED_SUITES if config.suites is None else config.suites)
    suite_files = dict(suite_files or {})
    if not suites and not suite_files:
        raise ValueError("no OOD sets: give suites and/or suite files NAME=PATH")
    clash = sorted(set(suites) & set(suite_files))
    if clash:
        raise ValueError(f"suite-file names {clash} clash with embedded suites; rename them")

    geometry = input_geometry(models)
    x_in, in_desc = _in_distribution(config.in_dist, config.n_in, config.seed, geometry)
    reader_default = f"the in-distribution data ({config.in_dist}) as its reader delivers it by default"
    if geometry["size"] is None:
        geometry["size"], geometry["size_from"] = int(x_in.shape[-1]), reader_default
    if geometry["channels"] is None:
        geometry["channels"], geometry["channels_from"] = int(x_in.shape[1]), reader_default
    size, channels = geometry["size"], geometry["channels"]
    sets = {name: embedded_suite(name, config.n, size=size, channels=channels, seed=config.seed) for name in suites}
    for name, path in suite_files.items():
        sets[name] = file_suite(path, n=config.n, size=size, channels=channels, seed=config.seed)
    descriptions = {k: v for k, v in suite_descriptions().items() if k in sets}
    descriptions.update({name: f"file {path}" for name, path in suite_files.items()})
    extra: dict[str, Any] = {"in_distribution": in_desc, "suites": descriptions, "image_size": size,
                             "channels": channels, "input_geometry": geometry}
    if "letters" in sets:
        extra["fonts"] = describe_fonts()
    if checkpoints:
        extra["checkpoints"] = {k: str(v) for k, v in checkpoints.items()}
    return evaluate(models, x_in, sets, config, out_dir=out, report=out if report else None, verbose=verbose,
                    protocol_extra=extra, device=device)
