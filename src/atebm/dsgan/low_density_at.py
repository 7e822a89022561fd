"""Adversarial training with DSGAN low-density samples (S Sec. 4.2, 5.2, Eq. 9, Fig. 7, 9-10, App. E) on MNIST 5,000.

Three stages, as in S Sec. 5.2:

1. a baseline classifier (:class:`~atebm.dsgan.networks.FeatureHeadClassifier`: conv body -> 64-d features ->
   three non-linear layers -> 10 logits) trained with cross-entropy on the train split;
2. a DSGAN **in that feature space**: p_d = the features of the training images, p_dbar = p_d convolved with
   uniform noise ``U(-r, r)`` per coordinate, with ``r = feature_noise x`` the standard deviation of the features
   (S: "by assigning p_dbar as the convolution of p_d and uniform distribution, samples from p_g will locate on
   the low-density area of p_d"), k = 5 discriminator steps per generator step (App. E), alpha 0.8;
3. fine-tuning of a copy of the baseline with S Eq. 9, ``CE(C(x), y) + w E_{x_g ~ p_g}[H(softmax(head(x_g)))]``:
   the entropy of the head's prediction on generated features is pushed down, so the decision regions extend
   confidently into the low-density band around the data. By default only the head is fine-tuned and the
   feature body stays frozen (``RobustSettings.finetune_body=False``): the generator was trained in the
   *baseline's* feature space, and once the body moves, its samples no longer lie in the low-density band of the
   current features (review 2026-12-06 Sec. 1.1). S fine-tunes the whole network; ``finetune_body=True`` does.

Baselines: the baseline itself; the baseline fine-tuned for the same epochs with cross-entropy only (a control for
the extra training, fine-tuning the same parameters as Eq. 9: the head alone unless ``finetune_body``); and the
noise-augmented baselines of S Sec. 5.2 (the whole network fine-tuned on inputs plus uniform pixel noise
``U(-e, e)``).

Robust accuracy on the test split is the one worst case of the library,
:func:`atebm.gat.classifier_robustness.robust_accuracy`: per test image, correct when clean and not broken by any of
margin PGD (``attack_steps`` steps of 2.5 eps / steps, ``attack_restarts`` random starts), ART APGD-CE and APGD-DLR
(``apgd_steps``, initial step 2·eps) and Square (``square_queries`` queries, :mod:`atebm.attacks.square`), run as a
cascade through :func:`atebm.attacks.search` (success judged at every iterate by ``max_{i != y} z_i - z_y > 0``), at
every eps of the L-infinity and L2 grids. The entropy term of Eq. 9 saturates logits, which is what makes
CE-gradient attacks (FGSM, PGD-CE) under-report; the margin and DLR losses and the gradient-free Square do not
depend on the logits' scale (review Sec. 2.6). The former harness (ART FGSM, PGD-CE with 20 steps and no restarts,
DeepFool with its failures counted as robust at every eps, so its column was an upper bound) is gone; DeepFool is
not run: a minimal-perturbation search adds nothing the L2 worst case at each eps does not measure.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import Config, above, at_least, checked_by, each, in_range, non_empty, setting
from ..data import load_dataset
from ..training import train_classifier, write_json
from .losses import check_alpha
from .networks import FeatureHeadClassifier
from .sources import NoisySource
from .training import DSGANConfig, DSGANTrainer

if TYPE_CHECKING:
    from ..gat.classifier_robustness import ClassifyEvalConfig

__all__ = ["RobustSettings", "train_low_density_classifier", "entropy", "worst_case_grid", "run_low_density_at"]


#: An attacked radius: finite and > 0 (eps 0, the clean accuracy, is added by :meth:`RobustSettings.protocol`).
_RADIUS = in_range(0, math.inf, lo_open=True, hi_open=True)


@dataclass(frozen=True)
class RobustSettings(Config):
    """Budgets and ranges of the S Sec. 5.2 experiment at CPU scale (S: 50 DSGAN epochs and 50 fine-tuning epochs on
    CIFAR-10; here MNIST 5,000). ``finetune_body``: fine-tune the feature body too in the Eq. 9 fine-tuning and
    its CE control (default: the head only, module docstring). ``eps_linf`` / ``eps_l2``: the attacked radii (eps
    0, the clean accuracy, is added). ``attack_steps`` / ``attack_restarts``: margin PGD; ``apgd_steps``: ART
    APGD-CE and APGD-DLR iterations; ``square_queries``: Square queries (:meth:`protocol`)."""

    epochs: int = setting(15, at_least(1))
    finetune_epochs: int = setting(5, at_least(1))
    finetune_body: bool = False
    batch_size: int = setting(64, at_least(1))
    lr: float = setting(2e-3, above(0))
    finetune_lr: float = setting(5e-4, above(0))
    feature_noise: float = setting(0.5, above(0))
    dsgan_iters: int = setting(3000, at_least(1))
    critic_steps: int = setting(5, at_least(1))
    alpha: float = setting(0.8, checked_by(check_alpha))
    weights: tuple[float, ...] = setting((1.0, 3.0, 10.0), each(at_least(0)))
    pixel_noise: tuple[float, ...] = setting((0.1, 0.2, 0.3), each(above(0)))
    eps_linf: tuple[float, ...] = setting((0.05, 0.1, 0.15, 0.2, 0.25, 0.3), non_empty(), each(_RADIUS))
    eps_l2: tuple[float, ...] = setting((0.5, 1.0, 1.5, 2.0, 2.5, 3.0), non_empty(), each(_RADIUS))
    attack_steps: int = setting(40, at_least(1))
    attack_restarts: int = setting(2, at_least(1))
    apgd_steps: int = setting(40, at_least(1))
    square_queries: int = setting(1000, at_least(1))
    n_test: int = setting(1000, at_least(1))
    seed: int = 0
    extra: dict[str, Any] = setting(factory=dict)

    def protocol(self) -> ClassifyEvalConfig:
        """The worst-case protocol of the experiment: margin PGD (``attack_steps`` x ``attack_restarts``), ART
        APGD-CE and APGD-DLR (``apgd_steps``) and Square (``square_queries``), a cascade on every test image
        (``n=None``) at eps 0 and every eps of ``eps_linf`` / ``eps_l2``."""
        from ..attacks import AttackSpec
        from ..gat.classifier_robustness import ClassifyEvalConfig, attacker_set

        everything = attacker_set(steps=self.attack_steps, restarts=self.attack_restarts,
                                  apgd_steps=self.apgd_steps, square_queries=self.square_queries)
        attackers: dict[str, AttackSpec] = {kind: everything[kind]
                                            for kind in ("margin", "apgd-ce", "apgd-dlr", "square")}
        return ClassifyEvalConfig(attackers, n=None, linf_eps=(0.0, *self.eps_linf), l2_eps=(0.0, *self.eps_l2),
                                  seed=self.seed)


def entropy(logits: Tensor) -> Tensor:
    """Mean Shannon entropy of ``softmax(logits)`` (the second term of S Eq. 9)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(1).mean()


def train_low_density_classifier(net: FeatureHeadClassifier, x: Tensor, y: Tensor, *, epochs: int, lr: float,
                                 batch_size: int, seed: int, pixel_noise: float = 0.0,
                                 generated: Callable[[int], Tensor] | None = None, weight: float = 0.0,
                                 train_body: bool = True) -> dict[str, float]:
    """Adam on S Eq. 9, ``CE(net(x + U(-pixel_noise, pixel_noise)), y) + weight * H(softmax(net.head(g)))`` with
    ``g = generated(m)`` a batch of m generated low-density features (``weight = 0``: plain cross-entropy, the
    baseline; ``pixel_noise > 0``: the noise-augmented baseline of S Sec. 5.2), in the library's classifier loop
    (:func:`atebm.training.train_classifier`; the final weights are kept). ``train_body=False`` freezes the feature
    body (``net.body`` gets no gradient and only ``net.head`` is updated). Returns the last batch's losses (``ce``
    and, with the entropy term, ``entropy_generated``)."""
    g = torch.Generator().manual_seed(seed)

    def noisy(batch: Tensor) -> Tensor:
        return (batch + pixel_noise * (torch.rand(batch.shape, generator=g) * 2 - 1)).clamp(0, 1)

    def entropy_term(model: nn.Module, batch: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        assert generated is not None
        h = entropy(net.head(generated(len(batch))))
        return weight * h, {"entropy_generated": float(h.detach())}

    run = train_classifier(net, x, y, epochs=epochs, batch_size=batch_size, lr=lr, generator=g,
                           parameters=None if train_body else net.head.parameters(),
                           augment=noisy if pixel_noise > 0 else None,
                           extra_loss=entropy_term if generated is not None and weight > 0 else None)
    return run.last


def worst_case_grid(models: dict[str, nn.Module], x: Tensor, y: Tensor, settings: RobustSettings, *,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per model the clean accuracy and the worst-case robust accuracy at every eps of the L-infinity and L2 grids
    (:meth:`RobustSettings.protocol`, :func:`atebm.gat.classifier_robustness.accuracy_grid`): ``{"clean", "linf": {eps:
    accuracy}, "l2": {eps: accuracy}, "grid": {norm: rows}, "seconds"}``, where each row carries its protocol and
    per attacker the inputs it attacked and broke (the per-input 0/1 lists are dropped)."""
    from ..gat.classifier_robustness import accuracy_grid

    config = settings.protocol()
    results: dict[str, Any] = {}
    for name, model in models.items():
        began = time.perf_counter()
        grid = accuracy_grid({name: model}, x, y, config=config, progress=progress)["models"][name]
        for rows in grid.values():
            for row in rows:
                row.pop("robust", None)
        results[name] = {"clean": grid["linf"][0]["clean_accuracy"],
                         **{norm: {f"{r['eps']:g}": r["robust_accuracy"] for r in rows if r["eps"] > 0}
                            for norm, rows in grid.items()},
                         "grid": grid, "seconds": round(time.perf_counter() - began, 1)}
    return results


def run_low_density_at(out: str | Path, settings: RobustSettings | None = None, *,
                       log: Callable[[str], None] | None = print, command: str | None = None) -> dict[str, Any]:
    """The S Sec. 5.2 experiment on MNIST 5,000 (module doc). Writes ``out/robust.json`` (settings, protocol, per
    model the clean and worst-case accuracies with each grid point's protocol and attacker counts, timings) and
    ``out/robust_accuracy.png`` (worst-case accuracy against L-infinity and L2 eps per model); returns the JSON
    content."""
    s = settings or RobustSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_dataset("mnist", split="train"), load_dataset("mnist", split="test", n=s.n_test)
    assert train.y is not None and test.y is not None
    timings: dict[str, float] = {}

    def say(text: str) -> None:
        if log:
            log(text)

    t = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        baseline = FeatureHeadClassifier()
    train_low_density_classifier(baseline, train.x, train.y, epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
                                 seed=s.seed)
    timings["baseline_s"] = time.perf_counter() - t
    models: dict[str, nn.Module] = {"baseline": baseline}
    control = copy.deepcopy(baseline)
    train_low_density_classifier(control, train.x, train.y, epochs=s.finetune_epochs, lr=s.finetune_lr,
                                 batch_size=s.batch_size, seed=s.seed + 1, train_body=s.finetune_body)
    models["baseline + CE fine-tuning"] = control
    for e in s.pixel_noise:
        noisy = copy.deepcopy(baseline)
        train_low_density_classifier(noisy, train.x, train.y, epochs=s.finetune_epochs, lr=s.finetune_lr,
                                     batch_size=s.batch_size, seed=s.seed + 1, pixel_noise=e)
        models[f"noise baseline U(-{e:g}, {e:g})"] = noisy
    say(f"baselines trained ({timings['baseline_s']:.0f} s for the first)")

    t = time.perf_counter()
    with torch.no_grad():
        features = baseline.features(train.x).detach()
    radius = s.feature_noise * float(features.std())
    dim = features.shape[1]
    config = DSGANConfig(model={"arch": "mlp2d", "kwargs": {"in_dim": dim, "hidden": 256, "depth": 3,
                                                            "activation": "relu"}},
                         generator={"arch": "mlp", "kwargs": {"latent_dim": 16, "out_dim": dim, "hidden": 256,
                                                              "depth": 3}},
                         alpha=s.alpha, critic_steps=s.critic_steps, batch_size=128, lr=1e-3, g_lr=1e-3,
                         max_iters=s.dsgan_iters, log_every=250, ckpt_every=10 ** 9, seed=s.seed, device="cpu",
                         progress=False)
    dsgan = DSGANTrainer(config, NoisySource(features, "uniform", radius), features)
    dsgan.fit()
    timings["dsgan_s"] = time.perf_counter() - t
    generated_eval = dsgan.generate(2000)
    with torch.no_grad():
        to_data = torch.cdist(generated_eval, features).min(1).values
        data_to_data = torch.cdist(features[:2000], features).topk(2, largest=False).values[:, 1]
    generator = dsgan.dsgan.generator
    generator.eval()
    latent = torch.Generator().manual_seed(s.seed + 7)

    def generated(m: int) -> Tensor:
        with torch.no_grad():
            return generator(generator.sample_latent(m, latent))

    say(f"feature-space DSGAN trained ({timings['dsgan_s']:.0f} s); noise radius {radius:.3f}")
    for w in s.weights:
        tuned = copy.deepcopy(baseline)
        train_low_density_classifier(tuned, train.x, train.y, epochs=s.finetune_epochs, lr=s.finetune_lr,
                                     batch_size=s.batch_size, seed=s.seed + 1, generated=generated, weight=w,
                                     train_body=s.finetune_body)
        models[f"DSGAN low-density, w = {w:g}"] = tuned

    results = worst_case_grid(models, test.x, test.y, s, progress=say)
    for name, r in results.items():
        timings[f"attack {name} s"] = r["seconds"]
        e_inf, e_2 = s.eps_linf[len(s.eps_linf) // 2], s.eps_l2[len(s.eps_l2) // 2]
        say(f"{name}: clean {r['clean']:.3f}, worst case Linf {e_inf:g} {r['linf'][f'{e_inf:g}']:.3f}, "
            f"L2 {e_2:g} {r['l2'][f'{e_2:g}']:.3f}")
    from ..attacks.art import art_version

    summary = {
        "experiment": "S Sec. 5.2 adversarial training with DSGAN low-density samples, MNIST 5,000",
        "command": command, "settings": asdict(s),
        "finetuned": "the head only (feature body frozen)" if not s.finetune_body else "the whole network",
        "protocol": {**s.protocol().to_dict(), "attacks": "per-sample worst case (atebm.gat.classifier_robustness."
                     "robust_accuracy): margin PGD, ART APGD-CE, ART APGD-DLR, Square (atebm.attacks.square) as a "
                     "cascade",
                     "art": art_version()},
        "train": len(train), "test": len(test), "feature_noise_radius": radius,
        "generated_features": {"mean_distance_to_nearest_training_feature": float(to_data.mean()),
                               "training_features_mean_distance_to_nearest_other": float(data_to_data.mean()),
                               "dsgan_last_log": dsgan.history[-1] if dsgan.history else None},
        "results": results, "timings_s": timings,
    }
    write_json(out / "robust.json", summary)
    _accuracy_figure(out / "robust_accuracy.png", results, s)
    return summary


def _accuracy_figure(path: Path, results: dict[str, Any], s: RobustSettings) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, (norm, eps, title) in zip(axes, (("linf", s.eps_linf, "worst case, L-inf"),
                                             ("l2", s.eps_l2, "worst case, L2"))):
        for name, r in results.items():
            style = "-" if name.startswith("DSGAN") else ("--" if name.startswith("noise") else ":")
            ax.plot([0, *eps], [r["clean"], *[r[norm][f"{e:g}"] for e in eps]], style, marker="o", ms=3, label=name)
        ax.set_title(f"{title} (margin PGD {s.attack_steps}x{s.attack_restarts}, APGD-CE/DLR {s.apgd_steps}, "
                     f"Square {s.square_queries})", fontsize=8)
        ax.set_xlabel("eps (pixels in [0, 1])")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
