"""The ``atebm sample`` pipeline as a library function: generation by PGD ascent from p_0 seeds with the run's
model and its stored generation settings (E Sec. 5.1; METHOD Sec. 3)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .apps.generate import generate_trajectory
from .io import save_grid, save_images
from .training import load_model, resolve_device, write_json
from .training.run import open_images

__all__ = ["run_sample", "SAMPLE_DEFAULTS"]

#: Used when neither the caller nor the checkpoint (``model.meta["generate"]``) gives a value.
SAMPLE_DEFAULTS: dict[str, Any] = {"steps": 16, "step_size": 1.0, "blur": 0.0, "n": 64, "seed": 0}


def run_sample(checkpoint: str | os.PathLike, out: str | os.PathLike, *, steps: int | None = None,
               step_size: float | None = None, n: int = SAMPLE_DEFAULTS["n"], seeds: str | None = None,
               seed: int = SAMPLE_DEFAULTS["seed"], blur: float | None = None, device: str = "auto"
               ) -> dict[str, Any]:
    """Generates ``n`` samples from the model of ``checkpoint`` (a run folder means its ``model.pt``) and writes
    ``out/samples.npz`` (key ``x``, float32 in [0, 1], NCHW), ``samples.png``, ``trajectory.png`` (seed ->
    sample at 0, 1/4, 1/2, 3/4 and all of the steps) and ``sample.json`` (the protocol, returned).

    ``steps``, ``step_size`` and ``blur`` (Gaussian sigma in pixels applied to the seeds first) default to the
    run's stored generation settings; ``seeds`` (a data-source string) to the run's held-out seed source. The
    seeds are read at the model's input size and channels."""
    model = load_model(checkpoint, device=resolve_device(device))
    stored = model.meta.get("generate") or {}
    steps = int(steps if steps is not None else stored.get("steps", SAMPLE_DEFAULTS["steps"]))
    step_size = float(step_size if step_size is not None else stored.get("step_size", SAMPLE_DEFAULTS["step_size"]))
    blur = float(blur if blur is not None else stored.get("blur", SAMPLE_DEFAULTS["blur"]))
    seeds_spec = seeds or model.meta.get("seeds")
    if not seeds_spec:
        raise ValueError(f"{checkpoint} names no seed source: pass seeds= (e.g. photos?split=test)")
    size, channels = model.meta.get("size"), model.meta.get("channels")
    if size is None or channels is None:
        raise ValueError(f"{checkpoint} does not record its input size and channels; it was not written by atebm "
                         "train (use atebm.pgd directly)")
    source = open_images(seeds_spec, int(size), int(channels), "seeds")
    x0 = source.load(n=min(n, len(source)), seed=seed).x
    record = sorted({0, *[int(round(steps * f)) for f in (0.25, 0.5, 0.75)], steps})
    samples, path = generate_trajectory(model, x0, steps, step_size, blur, record=record)
    out = Path(out)
    save_images(out, "samples", samples.cpu())
    strip = path[:, : min(8, len(x0))].transpose(0, 1).reshape(-1, *samples.shape[1:])
    save_grid(out / "trajectory.png", strip.cpu(), nrow=len(record), scale=2)
    protocol = {"checkpoint": str(checkpoint), "model": model.meta.get("path"), "seeds": seeds_spec, "n": len(x0),
                "steps": steps, "step_size": step_size, "blur": blur, "record": record}
    write_json(out / "sample.json", protocol)
    return protocol
