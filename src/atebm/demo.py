"""``atebm demo``: the main job on the embedded default, on 2 CPU cores in about ten minutes.

1. Train the ``mnist`` preset (binary AT, progressive K, an exponential moving average of the weights) with the
   failure-mode monitor, selecting by validation FD among the averaged weights, periodic and final
   (:func:`fd_selection`; the raw weights' validation FD is traced beside it), and the same trainer at K = 0
   (Outlier Exposure, the baseline) for comparison.
2. Generate digits from held-out natural-photo seeds and from blurred seeds (E Sec. 5.1), with a trajectory
   strip (seed -> sample at several steps).
3. Measure the samples in the feature space of a digit classifier trained on MNIST 5,000: Fréchet distance to
   the training digits next to references computed the same way (held-out real digits, blurred held-out
   digits, the unmodified seeds), mean pixel distance to the nearest training digit, classes covered; and the same
   for out-of-family seeds (:func:`out_of_family_seeds`), whose FD over the held-out seeds' is the reported gap.
4. Clean and worst-case OOD AUROC of both models over eps in {0, 1, 2, 3, 5, 8} (L2).
5. Write ``metrics.json``, ``ood.json`` and a self-contained ``report.html``.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .presets import PRESETS
from .sampling import pgd_trajectory
from .training import MODEL_FILE, SelectBest, write_json
from .training.run import run_training

__all__ = ["run_demo", "time_budget_warning", "DEMO_SETTINGS", "ValidationFD", "fd_selection", "selection_summary",
           "out_of_family_seeds", "OUT_OF_FAMILY"]

DEMO_SETTINGS: dict[str, Any] = {
    "select_every": 100,       # validation FD every N iterations once K >= select_min_k and at the end; best used
    "select_min_k": 8,
    "select_seeds": 200,       # validation seeds: patches of the *training* photos (test photos stay unseen)
    "time_budget_s": 420,      # safety cap on AT training so that the demo stays near ten minutes on slow machines
    "oe_iters": 300,           # the K = 0 Outlier Exposure baseline (same trainer, k_max = 0)
    "n_eval": 500,             # generated samples and each reference set
    "reference_blur": 1.0,     # sigma (px) of the blurred held-out digits reference
    "seed_blur": 1.0,          # sigma (px) of the blurred generation seeds
    "class_min_fraction": 0.01,  # a class "appears" when at least 1% of the samples are predicted as it
    "smoke_ood_n": 8,          # smoke runs only; the full demo uses `atebm eval-ood`'s defaults, so that
    "smoke_ood_eps": (0, 1),   # `atebm eval-ood --checkpoint DIR --checkpoint-oe DIR/outlier-exposure` reproduces it
}

#: The out-of-family seeds of :func:`out_of_family_seeds` (issue 14: "seeds the model never saw the like of").
OUT_OF_FAMILY: dict[str, Any] = {
    "faces_area": (0.25, 1.0),          # LFW faces: random resized crops keeping 25-100% of the face image's area
    "zoom_area": (1 / 16, 1 / 4),       # held-out photo patches magnified 2-4x (a crop of 1/16-1/4 of the area)
    "seed_offset": 101,                 # their photo patches are not the demo's held-out seeds
}


def out_of_family_seeds(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` seeds (1 x 28 x 28, [0, 1]) from photographs outside the p_0 set at scales p_0 does not use.

    Half are the LFW faces bundled with scikit-image (photographs of a kind p_0's natural photos never show), as
    random resized crops keeping a fraction in :data:`OUT_OF_FAMILY` ``faces_area`` of the image (close-ups:
    other scales), mirrored at random; the other half are patches of the held-out test photographs magnified 2-4x
    by bilinear resampling of a crop of ``zoom_area`` of the patch: smoother, lower-detail seeds than any p_0
    patch (p_0 never crops below ``atebm.data.MIN_CROP`` px of a photograph). The order is shuffled;
    deterministic in ``seed``. The demo measures how much farther their samples are from real digits than the
    samples of its in-family held-out seeds (``metrics.json``: ``generation.out_of_family``)."""
    from .data import load_dataset
    from .training import augment

    generator = torch.Generator().manual_seed(seed)
    n_faces = n // 2
    faces = torch.cat([load_dataset("lfw", split=split).x for split in ("train", "test")])
    faces = faces[torch.randint(len(faces), (n_faces,), generator=generator)]
    faces = augment(faces, OUT_OF_FAMILY["faces_area"], True, generator)
    photos = load_dataset("photos", split="test", n=n - n_faces, seed=seed + OUT_OF_FAMILY["seed_offset"]).x
    photos = augment(photos, OUT_OF_FAMILY["zoom_area"], True, generator)
    both = torch.cat([faces, photos]).clamp_(0.0, 1.0)
    return both[torch.randperm(n, generator=generator)]

class ValidationFD:
    """The demo's validation metric: samples generated from ``seeds`` with the preset's generation settings
    (``steps`` x ``step_size`` PGD ascent), their Fréchet distance to ``reference_features`` in ``feature_net``'s
    feature space; lower is better."""

    def __init__(self, seeds: torch.Tensor, reference_features: np.ndarray, feature_net: Any, steps: int,
                 step_size: float) -> None:
        self.seeds, self.reference_features, self.feature_net = seeds, reference_features, feature_net
        self.steps, self.step_size = steps, step_size

    def __call__(self, model: torch.nn.Module) -> float:
        from .apps.generate import generate
        from .metrics import frechet_distance

        device = next(model.parameters()).device
        samples = generate(model, self.seeds.to(device), self.steps, self.step_size).cpu()
        return frechet_distance(self.feature_net.features(samples).numpy(), self.reference_features)


def fd_selection(validation: ValidationFD, every: int, min_k: int) -> SelectBest:
    """Model selection by validation Fréchet distance, as the published code does with FID (E supp. Sec. 3: "the
    best-performing model is used"): every ``every`` iterations once K >= ``min_k``, and on the final weights, the
    weights the run exports (the weight average when the run keeps one, :meth:`atebm.Trainer.ema_model`) are judged
    by ``validation``; the lowest distance (ties to the earlier weights) becomes the run's model
    (:meth:`atebm.Trainer.select_weights`, written to ``model.pt``). The raw weights are measured beside the average:
    each log record and history entry holds ``val_fd`` (the candidate's), ``val_fd_raw`` and, with an average,
    ``val_fd_ema``."""
    return SelectBest(validation, by="val_fd", goal="min", every=every, min_k=min_k, ties="earlier",
                      trace_both=True)


def selection_summary(selector: SelectBest) -> dict[str, Any]:
    """The validation trace of :func:`fd_selection` and how the weights at the end of training compare with the
    best of the run (the goal of issue 14: the last weights within 1.25x of the best validation FD)."""
    best = selector.best
    trace = selector.history
    out: dict[str, Any] = {"best_step": best.step if best else None,
                           "best_val_fd": best.values["val_fd"] if best else float("inf"), "trace": trace}
    if trace:
        last = trace[-1]
        out["last_step"], out["last_val_fd"] = last["step"], last["val_fd"]
        out["last_over_best"] = last["val_fd"] / out["best_val_fd"]
        for kind in ("raw", "ema"):
            values = [r[f"val_fd_{kind}"] for r in trace if f"val_fd_{kind}" in r]
            if values:
                out[kind] = {"best": min(values), "last": values[-1], "last_over_best": values[-1] / min(values),
                             "median": float(np.median(values))}
    return out


SMOKE_OVERRIDES = {"max_iters": 6, "k_max": 2, "epochs_per_k": 0.02, "auc_window": 2, "log_every": 2,
                   "ckpt_every": 3, "progress": False}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def time_budget_warning(trainer: Any, budget_s: float) -> str | None:
    """What to tell the user when the demo's time cap stopped ``trainer`` before its ``max_iters`` (a busy or slow
    machine: newcomer-check measured FD 200 after 807 of 2,000 iterations, against 92-146 for full runs); None when
    training ran to its end."""
    planned = trainer.config.max_iters
    if trainer.stop_reason != "time budget reached" or planned is None or trainer.step >= planned:
        return None
    return (f"the {budget_s:g} s time budget stopped training after {trainer.step} of {planned} iterations (is the "
            "machine busy?); the samples come from a shorter run and are worse. Run it on an idle machine, or train "
            "without the cap: `atebm train --preset mnist`")


def run_demo(out: str | Path = "runs/demo", device: str = "auto", smoke: bool = False,
             overwrite: bool = False) -> dict[str, Any]:
    """The whole ``atebm demo`` (steps 1-5 of the module docstring); returns the content of ``metrics.json``.

    ``out`` becomes a run folder whose ``model.pt`` is the AT model selected by validation FD; the Outlier
    Exposure baseline is a run folder of its own in ``out/outlier-exposure``. ``smoke=True`` is a seconds-long
    run with tiny budgets for tests: its numbers mean nothing."""
    from .apps.generate import generate
    from .data import blur, load_dataset
    from .io import save_grid, save_images
    from .metrics import (
        digit_features,
        efficiency_pairs,
        generation_metrics,
        nearest_neighbour_grid,
        sampling_efficiency,
    )
    from .monitor import FailureMonitor
    from .report import Report

    start = time.perf_counter()
    out = Path(out)
    if (out / "checkpoint.pt").exists() or (out / "model.pt").exists():
        if not overwrite:
            raise ValueError(f"{out} already holds a run; pass --overwrite to replace it or choose another --out")
        shutil.rmtree(out)
    preset = PRESETS["mnist"]
    settings = dict(DEMO_SETTINGS)
    smoke_overrides = dict(SMOKE_OVERRIDES) if smoke else {}
    if smoke:
        settings.update(oe_iters=4, n_eval=80, select_every=2, select_min_k=0, select_seeds=16)
    timings: dict[str, float] = {}
    gen = preset.generate.to_dict() | ({"steps": 4} if smoke else {})
    net = digit_features(device="cpu")
    train = load_dataset("mnist", split="train").x
    train_features = net.features(train).numpy()  # the FD reference of every row below, computed once

    # 1. training ------------------------------------------------------------------------------------------
    _say(f"[1/5] training the AT model (preset mnist) -> {out}")
    monitor = FailureMonitor()
    validation = ValidationFD(load_dataset("photos", split="train", n=settings["select_seeds"], seed=7).x,
                              train_features, net, gen["steps"], gen["step_size"])
    selector = fd_selection(validation, settings["select_every"], settings["select_min_k"])
    t = time.perf_counter()
    at = run_training(preset, out, {"device": device, "time_budget_s": settings["time_budget_s"],
                                    **smoke_overrides}, callbacks=[monitor, selector])
    timings["train_at_s"] = time.perf_counter() - t
    _say(f"      {at.step} iterations, final K={at.k} ({at.stop_reason}) in {timings['train_at_s']:.0f} s")
    cut_short = time_budget_warning(at, settings["time_budget_s"])
    if cut_short:
        _say(f"      WARNING: {cut_short}")
    weights, selection = at.model_weights()
    at.model.load_state_dict(weights)
    if selection["by"] == "val_fd":
        _say(f"      using the weights of step {selection['step']} (validation FD {selection['value']:.1f}): "
             f"{out / MODEL_FILE}")
    _say("[2/5] training the Outlier Exposure baseline (same trainer, K = 0)")
    t = time.perf_counter()
    oe_overrides = {**smoke_overrides, "device": device, "k_max": 0, "max_iters": settings["oe_iters"]}
    oe = run_training(preset, out / "outlier-exposure", oe_overrides, log=False)
    timings["train_oe_s"] = time.perf_counter() - t
    model, oe_model = at.model.eval(), oe.model.eval()
    dev = next(model.parameters()).device

    # 2. generation -----------------------------------------------------------------------------------------
    _say("[3/5] generating from held-out photo seeds and blurred seeds")
    t = time.perf_counter()
    n = settings["n_eval"]
    seeds = load_dataset("photos", split="test", n=n, seed=1).x
    test = load_dataset("mnist", split="test", n=n, seed=0).x
    record = sorted({0, gen["steps"] // 4, gen["steps"] // 2, 3 * gen["steps"] // 4, gen["steps"]})
    samples, trajectory = pgd_trajectory(model, seeds.to(dev), record=record, steps=gen["steps"],
                                         step_size=gen["step_size"])
    blurred_samples = generate(model, seeds.to(dev), gen["steps"], gen["step_size"], settings["seed_blur"])
    oof_seeds = out_of_family_seeds(n, seed=1)
    oof_samples = generate(model, oof_seeds.to(dev), gen["steps"], gen["step_size"]).cpu()
    samples, blurred_samples, trajectory = samples.cpu(), blurred_samples.cpu(), trajectory.cpu()
    save_images(out, "samples", samples, nrow=16)
    save_images(out, "samples_out_of_family", oof_samples, nrow=16)
    save_grid(out / "seeds_out_of_family.png", oof_seeds[:256], nrow=16, scale=2)
    save_images(out, "samples_blurred_seeds", blurred_samples, nrow=16)
    save_grid(out / "seeds.png", seeds[:256], nrow=16, scale=2)
    strip = trajectory[:, :12].transpose(0, 1).reshape(-1, *samples.shape[1:])
    save_grid(out / "trajectory.png", strip, nrow=len(record), scale=3)
    timings["generate_s"] = time.perf_counter() - t

    # 3. generation metrics ---------------------------------------------------------------------------------
    _say("[4/5] measuring the samples in a digit classifier's feature space")
    t = time.perf_counter()
    references = {
        "held-out real digits": test,
        f"blurred held-out digits (sigma {settings['reference_blur']})": blur(test, settings["reference_blur"]),
        "unmodified seeds (photo patches)": seeds,
        "samples (photo seeds)": samples,
        f"samples (seeds blurred, sigma {settings['seed_blur']})": blurred_samples,
        "unmodified out-of-family seeds": oof_seeds,
        "samples (out-of-family seeds)": oof_samples,
    }
    rows = {name: generation_metrics(x, train, net, train=train, seed=0, reference_features=train_features)
            for name, x in references.items()}
    blurred_key = next(k for k in rows if k.startswith("blurred held-out"))
    verdicts = {}
    for key in ("samples (photo seeds)", next(k for k in rows if k.startswith("samples (seeds blurred")),
                "samples (out-of-family seeds)"):
        hist = np.asarray(rows[key]["class_histogram"])
        classes = int((hist >= settings["class_min_fraction"] * hist.sum()).sum())
        rows[key]["classes_covered"] = classes
        verdicts[key] = bool(rows[key]["fd"] <= rows[blurred_key]["fd"] and classes == 10)
    for row in rows.values():
        row.setdefault("classes_covered", int((np.asarray(row["class_histogram"]) >=
                                               settings["class_min_fraction"] * n).sum()))
    nearest_neighbour_grid(out / "nearest_neighbours.png", samples[:16], train, net)
    efficiency = sampling_efficiency(model, seeds, train, net, train=train,
                                     pairs=efficiency_pairs(gen["steps"], gen["step_size"], (2.0, 1.0, 0.5, 0.25)))
    timings["metrics_s"] = time.perf_counter() - t

    metrics: dict[str, Any] = {
        "preset": preset.name, "smoke": smoke, "settings": settings, "timings_s": timings,
        "training": {"at": {"iterations": at.step, "final_k": at.k, "stop": at.stop_reason,
                            "config_ema_decay": at.config.ema_decay,
                            "last_log": at.history[-1] if at.history else None},
                     "oe": {"iterations": oe.step, "final_k": oe.k}},
        "generation": {"steps": gen["steps"], "step_size": gen["step_size"], "seeds": "photos?split=test",
                       "feature_network": net.info["network"], "classifier_test_accuracy": net.info["test_accuracy"],
                       "fd_reference": "MNIST 5,000 train split (3,500 digits)", "rows": rows,
                       "samples_are_digits": verdicts,
                       "rule": "samples count as digits when their FD is at or below the blurred-digit reference "
                               "and all 10 classes appear (each >= 1% of the samples)"},
        "sampling_efficiency": efficiency,
        "monitor": monitor.summary(),
        "model_selection": {"rule": "lowest validation FD (samples from training-photo seeds vs training digits)"
                                    + (f" among the weight averages (ema_decay {at.config.ema_decay:g})"
                                       if at.ema is not None else ""),
                            "weights": selection.get("weights", "raw"), **selection_summary(selector),
                            "model": MODEL_FILE},
    }
    fd_in, fd_oof = rows["samples (photo seeds)"]["fd"], rows["samples (out-of-family seeds)"]["fd"]
    metrics["generation"]["out_of_family"] = {
        "seeds": "half LFW-face crops (25-100% of the area), half held-out photo patches magnified 2-4x "
                 "(atebm.demo.out_of_family_seeds)", "fd": fd_oof, "fd_held_out_photo_seeds": fd_in,
        "gap": fd_oof / fd_in, "rule": "gap = FD(samples from out-of-family seeds) / FD(samples from held-out "
                                       "photo seeds), same sampler, same reference, same number of seeds"}
    report = Report.open(out, title="atebm demo: MNIST 5,000 vs natural-photo patches")
    _add_report_sections(report, out, at, oe, metrics)
    monitor.add_to_report(report, key="monitor", heading="Failure-mode monitor")
    report.save()

    # 4. OOD: AT vs Outlier Exposure (sections appended after the generation ones) --------------------------
    _say("[5/5] clean and worst-case OOD detection: AT vs Outlier Exposure")
    t = time.perf_counter()
    from .ood.pipeline import run_eval_ood

    ood_options = {} if not smoke else {"n": settings["smoke_ood_n"], "n_in": settings["smoke_ood_n"],
                                         "eps": settings["smoke_ood_eps"]}
    ood = run_eval_ood({"AT": model, "OE (K=0)": oe_model}, out, report=True, verbose=True,
                       checkpoints={"AT": str(out / MODEL_FILE),
                                    "OE (K=0)": str(out / "outlier-exposure" / MODEL_FILE)}, **ood_options)
    timings["ood_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    write_json(out / "metrics.json", metrics)
    report = Report.open(out)
    _add_intro(report, metrics)  # replaces the intro in place, now with every timing
    report.save()
    _print_summary(metrics, ood, out)
    return metrics


def _add_report_sections(report: Any, out: Path, at: Any, oe: Any, metrics: dict[str, Any]) -> None:
    gen = metrics["generation"]
    _add_intro(report, metrics)
    report.add_curves("curves-at", "Training curves: AT model", at.history)
    selection = metrics["model_selection"]
    report.add_table("selection", "Model selection by validation Fréchet distance",
                     ["step", "K", "validation FD (raw weights)", "validation FD (weight average)"],
                     [[r["step"], r["k"], r["val_fd_raw"], r.get("val_fd_ema")] for r in selection["trace"]],
                     protocol={"rule": selection["rule"], "chosen step": selection["best_step"],
                               "last / best validation FD": selection.get("last_over_best"),
                               "used for": f"every sample, metric and OOD number below ({MODEL_FILE})"})
    report.add_curves("curves-oe", "Training curves: Outlier Exposure (K = 0)", oe.history)
    report.add_image("samples", "Samples from held-out photo seeds", "samples.png", "PGD ascent from photo patches")
    report.add_image("samples-blurred", "Samples from blurred seeds", "samples_blurred_seeds.png",
                     f"seeds blurred with sigma {metrics['settings']['seed_blur']} px first")
    report.add_image("seeds", "The seeds", "seeds.png", "held-out natural-photo patches (never seen in training)")
    report.add_image("trajectory", "Trajectories", "trajectory.png", "each row: seed -> sample at several steps")
    oof = gen["out_of_family"]
    report.add_image("samples-oof", "Samples from out-of-family seeds", "samples_out_of_family.png",
                     f"{oof['seeds']}; FD {oof['fd']:.1f} vs {oof['fd_held_out_photo_seeds']:.1f} from the held-out "
                     f"photo seeds: gap {oof['gap']:.2f}x")
    report.add_image("seeds-oof", "The out-of-family seeds", "seeds_out_of_family.png", oof["seeds"])
    report.add_image("nearest", "Nearest training digits", "nearest_neighbours.png",
                     "sample | nearest training digit in pixel space | in feature space")
    columns = ["set", "FD", "KID", "nearest-digit L2", "classes", "histogram"]
    rows = [[name, r["fd"], r["kid"], r.get("nn_l2"), r.get("classes_covered"),
             " ".join(map(str, r["class_histogram"]))] for name, r in gen["rows"].items()]
    report.add_table("generation", "Generation quality (digit-classifier feature space)", columns, rows,
                     protocol={"feature network": gen["feature_network"],
                               "classifier test accuracy": gen["classifier_test_accuracy"],
                               "FD reference": gen["fd_reference"], "samples per row": metrics["settings"]["n_eval"],
                               "rule": gen["rule"], "verdict": gen["samples_are_digits"]})
    eff = metrics["sampling_efficiency"]
    report.add_table("efficiency", "Sampling efficiency (E supp. Tab. 7): same steps x step size",
                     ["steps", "step size", "product", "FD", "KID", "nearest-digit L2", "seconds"],
                     [[r["steps"], r["step_size"], r["product"], r["fd"], r["kid"], r["nn_l2"], r["sampling_s"]]
                      for r in eff["rows"]], protocol=eff["protocol"])


def _add_intro(report: Any, metrics: dict[str, Any]) -> None:
    gen = metrics["generation"]
    report.add_text("demo-intro", "What this run is",
                    "Binary adversarial training (E Alg. 1-2) of a small ConvNet on MNIST 5,000 (3,500 training "
                    "digits) against natural-photo patches, then generation by PGD ascent from held-out photo "
                    f"patches ({gen['steps']} steps x {gen['step_size']}); below, the same trainer at K = 0 "
                    "(Outlier Exposure) for the OOD comparison. Timings (s): " +
                    ", ".join(f"{k} {v:.0f}" for k, v in metrics["timings_s"].items()))


def _print_summary(metrics: dict[str, Any], ood: dict[str, Any], out: Path) -> None:
    gen = metrics["generation"]
    print("\nGeneration quality (feature network: digit classifier trained on MNIST 5,000; "
          f"reference: {gen['fd_reference']}):")
    print(f"  {'set':48s} {'FD':>8s} {'KID':>8s} {'NN-L2':>7s} classes")
    for name, r in gen["rows"].items():
        print(f"  {name:48s} {r['fd']:8.1f} {r['kid']:8.3f} {r.get('nn_l2', float('nan')):7.2f} "
              f"{r.get('classes_covered')}")
    for key, ok in gen["samples_are_digits"].items():
        print(f"  {key}: {'digits' if ok else 'NOT digits'} by the rule: {gen['rule']}")
    oof = gen["out_of_family"]
    print(f"  out-of-family seeds ({oof['seeds']}): FD {oof['fd']:.1f}, {oof['gap']:.2f}x that of the held-out "
          "photo seeds")
    selection = metrics["model_selection"]
    if "last_over_best" in selection:
        print(f"Model selection: weights {selection['weights']}, best validation FD {selection['best_val_fd']:.1f} "
              f"(step {selection['best_step']}); at the end of training {selection['last_val_fd']:.1f} "
              f"({selection['last_over_best']:.2f}x the best)")
    print("\nSampling efficiency (same steps x step size, photo seeds; FD in the same feature space):")
    for r in metrics["sampling_efficiency"]["rows"]:
        print(f"  {r['steps']:3d} steps x {r['step_size']:.3g} = {r['product']:.3g}: FD {r['fd']:.1f}")
    print(f"\nFailure-mode monitor: {metrics['monitor'].get('status_text', metrics['monitor'])}")
    print("Timings (s): " + ", ".join(f"{k}={v:.0f}" for k, v in metrics["timings_s"].items()))
    print(f"\nRun folder: {out}  (report: {out / 'report.html'})")
