"""Which seeds the demo's model turns into digits (issue 14, item 3): held-out photo seeds, out-of-family seeds, flat
seeds, for the weights a run ends with (raw, each weight average) and several sampler settings.

For each model of ``--run`` (``model.pt``: the selected weights; from ``checkpoint.pt``: the last raw weights and
the trainer's weight average; ``model_ema_*.pt`` written by ``benchmarks/ema.py``) and each ``--settings``
(steps x step size) it samples from

* the demo's 500 held-out photo seeds (``photos?split=test``, seed 1): the FD the demo reports;
* 500 out-of-family seeds (:func:`atebm.demo.out_of_family_seeds`): their FD and the gap (ratio to the above);
* flat seeds at grey levels 0, 0.1, ..., 1: per level the sample's background (mean of the 4-pixel border),
  roughness (mean absolute difference of neighbouring pixels), the digit classifier's top probability, and the
  L2 distance travelled;

and, for reference, the fraction of the demo's held-out seeds that are nearly flat (pixel std < 0.03).

    nice -n 10 python benchmarks/seeds.py --run runs/ema-trace --threads 1
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atebm.apps.generate import generate
from atebm.data import load_dataset
from atebm.demo import DEMO_SETTINGS, out_of_family_seeds
from atebm.metrics import digit_features, frechet_distance
from atebm.models import build_score_model
from atebm.training import load_checkpoint, load_model, write_json


def _models(run: Path) -> dict[str, torch.nn.Module]:
    models: dict[str, torch.nn.Module] = {"selected (model.pt)": load_model(run)}
    payload = load_checkpoint(run / "checkpoint.pt")
    decay = payload["config"].get("ema_decay")
    for name, weights in (("raw, last", payload["model"]),
                          (f"ema {decay:g}, last" if decay else "", (payload["trainer"] or {}).get("ema"))):
        if name and weights is not None:
            model = build_score_model(payload["model_spec"])
            model.load_state_dict(weights)
            models[name] = model.eval()
    for path in sorted(run.glob("model_ema_*.pt")):
        models[f"ema {path.stem.removeprefix('model_ema_')}, last"] = load_model(path)
    return models


def _roughness(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
                  + (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1))


def _border(x: torch.Tensor) -> torch.Tensor:
    mask = torch.ones_like(x[0, 0], dtype=torch.bool)
    mask[4:-4, 4:-4] = False
    return x[:, 0][:, mask].mean(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/ema-trace")
    parser.add_argument("--settings", nargs="+", default=["32x1.0", "64x1.0", "32x2.0"],
                        help="sampler settings STEPSxSTEP_SIZE; the first is measured for every model")
    parser.add_argument("--all-settings-for", nargs="*", default=None,
                        help="models measured with every setting (default: the first two)")
    parser.add_argument("--out", default="benchmarks/results/ema/seeds.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/seeds.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    start, cpu0 = time.perf_counter(), time.process_time()

    n = DEMO_SETTINGS["n_eval"]
    net = digit_features(device="cpu")
    reference = net.features(load_dataset("mnist", split="train").x).numpy()
    held_out = load_dataset("photos", split="test", n=n, seed=1).x
    family = out_of_family_seeds(n, seed=1)
    levels = [round(0.1 * i, 1) for i in range(11)]
    flat = torch.tensor(levels).repeat_interleave(8).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()
    held_std = held_out.flatten(1).std(1)
    models = _models(Path(args.run))
    full = args.all_settings_for if args.all_settings_for is not None else list(models)[:2]
    settings = [(int(s.split("x")[0]), float(s.split("x")[1])) for s in args.settings]

    def fd(x: torch.Tensor) -> float:
        return frechet_distance(net.features(x).numpy(), reference)

    rows: list[dict[str, Any]] = []
    for name, model in models.items():
        for steps, step in settings if name in full else settings[:1]:
            s_held = generate(model, held_out, steps, step)
            s_family = generate(model, family, steps, step)
            s_flat = generate(model, flat, steps, step)
            fd_held, fd_family = fd(s_held), fd(s_family)
            proba = net.predict_proba(s_flat).max(1).values
            per_level = []
            for i, level in enumerate(levels):
                part = slice(8 * i, 8 * i + 8)
                per_level.append({"level": level, "background": float(_border(s_flat[part]).mean()),
                                  "roughness": float(_roughness(s_flat[part]).mean()),
                                  "confidence": float(proba[part].mean()),
                                  "travelled_l2": float((s_flat[part] - flat[part]).flatten(1).norm(dim=1).mean())})
            flat_held = held_std < 0.03
            rows.append({"model": name, "steps": steps, "step_size": step, "fd_held_out": fd_held,
                         "fd_out_of_family": fd_family, "gap": fd_family / fd_held,
                         "flat_held_out_seeds": {"fraction": float(flat_held.float().mean()),
                                                 "sample_background": float(_border(s_held[flat_held]).mean())
                                                 if flat_held.any() else None,
                                                 "sample_roughness": float(_roughness(s_held[flat_held]).mean())
                                                 if flat_held.any() else None,
                                                 "others_background": float(_border(s_held[~flat_held]).mean())},
                         "flat_seeds": per_level})
            print(f"{name:24s} {steps:3d} x {step:.1f}: FD held-out {fd_held:7.1f}, out-of-family {fd_family:7.1f} "
                  f"(gap {fd_family / fd_held:.2f}); flat seeds background "
                  + " ".join(f"{r['background']:.2f}" for r in per_level), file=sys.stderr, flush=True)
    real = load_dataset("mnist", split="test", n=n, seed=0).x
    write_json(Path(args.out), {
        "command": f"nice -n 10 {command}",
        "protocol": {"run": args.run, "n": n, "fd": "digit-classifier features vs the 3,500 training digits",
                     "flat_seeds": "8 per grey level", "out_of_family": "atebm.demo.out_of_family_seeds(500, seed=1)",
                     "real_digits": {"background": float(_border(real).mean()),
                                     "roughness": float(_roughness(real).mean())}},
        "rows": rows,
        "timing": {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu0},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
