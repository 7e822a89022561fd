"""``atebm demo``: the main job on the embedded default, on 2 CPU cores in about ten minutes.

1. Train the ``mnist`` preset (binary AT, progressive K) with the failure-mode monitor, and the same trainer at
   K = 0 (Outlier Exposure, the baseline) for comparison.
2. Generate digits from held-out natural-photo seeds and from blurred seeds (E Sec. 5.1), with a trajectory
   strip (seed -> sample at several steps).
3. Measure the samples in the feature space of a digit classifier trained on MNIST 5,000: Fréchet distance to
   the training digits next to references computed the same way (held-out real digits, blurred held-out
   digits, the unmodified seeds), mean pixel distance to the nearest training digit, classes covered.
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
from .training import MODEL_FILE, write_json
from .training.run import run_training

__all__ = ["run_demo", "DEMO_SETTINGS"]

DEMO_SETTINGS: dict[str, Any] = {
    "select_every": 100,       # validation FD every N iterations once K >= select_min_k; the best weights are used
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

class BestByFrechet:
    """Trainer callback: model selection by validation Fréchet distance, as the published code does with FID
    (E supp. Sec. 3: "the best-performing model is used").

    Every ``every`` iterations (once K >= ``min_k``) it generates from ``seeds`` with the preset's generation
    settings and measures the Fréchet distance to ``reference`` in ``feature_net``'s feature space; the weights
    with the lowest distance become the run's model (:meth:`atebm.Trainer.select_weights`, written to
    ``model.pt``) and the value is added to the log record."""

    def __init__(self, seeds: torch.Tensor, reference_features: np.ndarray, feature_net: Any, steps: int,
                 step_size: float, every: int, min_k: int) -> None:
        self.seeds, self.reference_features, self.feature_net = seeds, reference_features, feature_net
        self.steps, self.step_size, self.every, self.min_k = steps, step_size, every, min_k
        self.best_fd, self.best_step = float("inf"), None
        self.trace: list[dict[str, float]] = []

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        if trainer.step % self.every or trainer.k < self.min_k:
            return
        from .apps.generate import generate
        from .metrics import frechet_distance

        samples = generate(trainer.model, self.seeds.to(trainer.device), self.steps, self.step_size).cpu()
        fd = frechet_distance(self.feature_net.features(samples).numpy(), self.reference_features)
        record["val_fd"] = fd
        self.trace.append({"step": trainer.step, "k": trainer.k, "val_fd": fd})
        if fd < self.best_fd:
            self.best_fd, self.best_step = fd, trainer.step
            trainer.select_weights(by="val_fd", value=fd)


SMOKE_OVERRIDES = {"max_iters": 6, "k_max": 2, "epochs_per_k": 0.02, "auc_window": 2, "log_every": 2,
                   "ckpt_every": 3, "progress": False}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    gen = dict(preset.generate, steps=4) if smoke else dict(preset.generate)
    net = digit_features(device="cpu")
    train = load_dataset("mnist", split="train").x

    # 1. training ------------------------------------------------------------------------------------------
    _say(f"[1/5] training the AT model (preset mnist) -> {out}")
    monitor = FailureMonitor()
    selector = BestByFrechet(load_dataset("photos", split="train", n=settings["select_seeds"], seed=7).x,
                             net.features(train).numpy(), net, gen["steps"], gen["step_size"],
                             settings["select_every"], settings["select_min_k"])
    t = time.perf_counter()
    at = run_training(preset, out, {"device": device, "time_budget_s": settings["time_budget_s"],
                                    **smoke_overrides}, callbacks=[monitor, selector])
    timings["train_at_s"] = time.perf_counter() - t
    _say(f"      {at.step} iterations, final K={at.k} ({at.stop_reason}) in {timings['train_at_s']:.0f} s")
    weights, selection = at.model_weights()
    at.model.load_state_dict(weights)
    if selection["by"] == "val_fd":
        _say(f"      using the weights of step {selector.best_step} (validation FD {selector.best_fd:.1f}): "
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
    samples, blurred_samples, trajectory = samples.cpu(), blurred_samples.cpu(), trajectory.cpu()
    save_images(out, "samples", samples, nrow=16)
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
    }
    rows = {name: generation_metrics(x, train, net, train=train, seed=0) for name, x in references.items()}
    blurred_key = next(k for k in rows if k.startswith("blurred held-out"))
    verdicts = {}
    for key in ("samples (photo seeds)", next(k for k in rows if k.startswith("samples (seeds blurred"))):
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

    metrics = {
        "preset": preset.name, "smoke": smoke, "settings": settings, "timings_s": timings,
        "training": {"at": {"iterations": at.step, "final_k": at.k, "stop": at.stop_reason,
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
        "model_selection": {"rule": "lowest validation FD (samples from training-photo seeds vs training digits)",
                            "best_step": selector.best_step, "best_val_fd": selector.best_fd,
                            "trace": selector.trace, "model": MODEL_FILE},
    }
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
    report.add_table("selection", "Model selection by validation Fréchet distance", ["step", "K", "validation FD"],
                     [[r["step"], r["k"], r["val_fd"]] for r in selection["trace"]],
                     protocol={"rule": selection["rule"], "chosen step": selection["best_step"],
                               "used for": f"every sample, metric and OOD number below ({MODEL_FILE})"})
    report.add_curves("curves-oe", "Training curves: Outlier Exposure (K = 0)", oe.history)
    report.add_image("samples", "Samples from held-out photo seeds", "samples.png", "PGD ascent from photo patches")
    report.add_image("samples-blurred", "Samples from blurred seeds", "samples_blurred_seeds.png",
                     f"seeds blurred with sigma {metrics['settings']['seed_blur']} px first")
    report.add_image("seeds", "The seeds", "seeds.png", "held-out natural-photo patches (never seen in training)")
    report.add_image("trajectory", "Trajectories", "trajectory.png", "each row: seed -> sample at several steps")
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
    print("\nSampling efficiency (same steps x step size, photo seeds; FD in the same feature space):")
    for r in metrics["sampling_efficiency"]["rows"]:
        print(f"  {r['steps']:3d} steps x {r['step_size']:.3g} = {r['product']:.3g}: FD {r['fd']:.1f}")
    print(f"\nFailure-mode monitor: {metrics['monitor'].get('status_text', metrics['monitor'])}")
    print("Timings (s): " + ", ".join(f"{k}={v:.0f}" for k, v in metrics["timings_s"].items()))
    print(f"\nRun folder: {out}  (report: {out / 'report.html'})")
