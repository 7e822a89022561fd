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
   confidently into the low-density band around the data.

Baselines: the baseline itself; the baseline fine-tuned for the same epochs with cross-entropy only (a control for
the extra training); and the noise-augmented baselines of S Sec. 5.2 (fine-tuned on inputs plus uniform pixel noise
``U(-e, e)``). Robust accuracy on the test split under white-box FGSM and PGD (L-infinity) and DeepFool (L2) from
adversarial-robustness-toolbox (ART, the project's independent attacker) over a range of eps; for DeepFool, which
finds a minimal perturbation, an image counts as robust at eps when it is classified correctly and DeepFool needs an
L2 perturbation larger than eps (or fails). S's DeepFool L-infinity variant (Foolbox) has no ART counterpart and is
not run.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data import load_dataset
from ..training import write_json
from .networks import FeatureHeadClassifier
from .sources import NoisySource
from .training import DSGANConfig, DSGANTrainer

__all__ = ["RobustSettings", "train_classifier", "entropy", "robust_accuracy", "run_low_density_at"]


@dataclass
class RobustSettings:
    """Budgets and ranges of the S Sec. 5.2 experiment at CPU scale (S: 50 DSGAN epochs and 50 fine-tuning epochs on
    CIFAR-10; here MNIST 5,000)."""

    epochs: int = 15
    finetune_epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    finetune_lr: float = 5e-4
    feature_noise: float = 0.5
    dsgan_iters: int = 3000
    critic_steps: int = 5
    alpha: float = 0.8
    weights: tuple[float, ...] = (1.0, 3.0, 10.0)
    pixel_noise: tuple[float, ...] = (0.1, 0.2, 0.3)
    eps_linf: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    eps_l2: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    pgd_steps: int = 20
    n_test: int = 1000
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.finetune_epochs < 1 or self.dsgan_iters < 1 or self.pgd_steps < 1:
            raise ValueError("epochs, finetune_epochs, dsgan_iters and pgd_steps must be >= 1")
        if not self.feature_noise > 0 or any(w < 0 for w in self.weights) or any(e <= 0 for e in self.pixel_noise):
            raise ValueError("feature_noise and pixel_noise must be > 0 and the weights w >= 0")


def entropy(logits: Tensor) -> Tensor:
    """Mean Shannon entropy of ``softmax(logits)`` (the second term of S Eq. 9)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(1).mean()


def train_classifier(net: FeatureHeadClassifier, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
                     seed: int, pixel_noise: float = 0.0, generated: Callable[[int], Tensor] | None = None,
                     weight: float = 0.0) -> dict[str, float]:
    """Adam on ``CE(net(x + U(-pixel_noise, pixel_noise)), y) + weight * entropy(net.head(generated(m)))``
    (S Eq. 9 with ``generated``; the noise-augmented baseline with ``pixel_noise``); returns the last losses."""
    g = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    last: dict[str, float] = {}
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            batch = x[index]
            if pixel_noise > 0:
                batch = (batch + pixel_noise * (torch.rand(batch.shape, generator=g) * 2 - 1)).clamp(0, 1)
            loss = F.cross_entropy(net(batch), y[index])
            last["ce"] = float(loss.detach())
            if generated is not None and weight > 0:
                h = entropy(net.head(generated(len(index))))
                loss = loss + weight * h
                last["entropy_generated"] = float(h.detach())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    net.eval()
    return last


def robust_accuracy(net: nn.Module, x: Tensor, y: Tensor, eps_linf: Sequence[float], eps_l2: Sequence[float],
                    pgd_steps: int = 20) -> dict[str, Any]:
    """Clean accuracy and accuracy under ART's FGSM and PGD (L-infinity, ``pgd_steps`` steps of eps / 4, no random
    start) at each eps, and under DeepFool (L2 minimal perturbation; robust at eps when correct and the
    perturbation is larger than eps)."""
    from art.attacks.evasion import DeepFool, FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    net.eval()
    classifier = PyTorchClassifier(net, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                                   clip_values=(0.0, 1.0), device_type="cpu")
    xs, labels = x.numpy(), y.numpy()

    def accuracy(images: np.ndarray) -> float:
        return float((classifier.predict(images, batch_size=500).argmax(1) == labels).mean())

    result: dict[str, Any] = {"clean": accuracy(xs), "fgsm_linf": {}, "pgd_linf": {}, "deepfool_l2": {}}
    for eps in eps_linf:
        fgsm = FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=500)
        result["fgsm_linf"][str(eps)] = accuracy(fgsm.generate(xs))
        pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=eps / 4, max_iter=pgd_steps,
                                       num_random_init=0, batch_size=500, verbose=False)
        result["pgd_linf"][str(eps)] = accuracy(pgd.generate(xs))
    adversarial = DeepFool(classifier, max_iter=50, nb_grads=10, batch_size=250, verbose=False).generate(xs)
    clean_ok = classifier.predict(xs, batch_size=500).argmax(1) == labels
    still_ok = classifier.predict(adversarial, batch_size=500).argmax(1) == labels
    distance = np.sqrt(((adversarial - xs) ** 2).reshape(len(xs), -1).sum(1))
    for eps in eps_l2:
        result["deepfool_l2"][str(eps)] = float((clean_ok & (still_ok | (distance > eps))).mean())
    result["deepfool_l2_median_distance"] = float(np.median(distance[clean_ok & ~still_ok])) \
        if (clean_ok & ~still_ok).any() else None
    return result


def run_low_density_at(out: str | Path, settings: RobustSettings | None = None, *,
                       log: Callable[[str], None] | None = print, command: str | None = None) -> dict[str, Any]:
    """The S Sec. 5.2 experiment on MNIST 5,000 (module doc). Writes ``out/robust.json`` and
    ``out/robust_accuracy.png`` (accuracy against eps per attack and model); returns the JSON content."""
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
    train_classifier(baseline, train.x, train.y, epochs=s.epochs, lr=s.lr, batch_size=s.batch_size, seed=s.seed)
    timings["baseline_s"] = time.perf_counter() - t
    models: dict[str, nn.Module] = {"baseline": baseline}
    control = copy.deepcopy(baseline)
    train_classifier(control, train.x, train.y, epochs=s.finetune_epochs, lr=s.finetune_lr, batch_size=s.batch_size,
                     seed=s.seed + 1)
    models["baseline + CE fine-tuning"] = control
    for e in s.pixel_noise:
        noisy = copy.deepcopy(baseline)
        train_classifier(noisy, train.x, train.y, epochs=s.finetune_epochs, lr=s.finetune_lr,
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
        train_classifier(tuned, train.x, train.y, epochs=s.finetune_epochs, lr=s.finetune_lr,
                         batch_size=s.batch_size, seed=s.seed + 1, generated=generated, weight=w)
        models[f"DSGAN low-density, w = {w:g}"] = tuned

    results: dict[str, Any] = {}
    for name, model in models.items():
        t = time.perf_counter()
        results[name] = robust_accuracy(model, test.x, test.y, s.eps_linf, s.eps_l2, s.pgd_steps)
        timings[f"attack {name} s"] = time.perf_counter() - t
        e_inf, e_2 = s.eps_linf[len(s.eps_linf) // 2], s.eps_l2[len(s.eps_l2) // 2]
        say(f"{name}: clean {results[name]['clean']:.3f}, PGD@{e_inf} {results[name]['pgd_linf'][str(e_inf)]:.3f}, "
            f"DeepFool L2@{e_2} {results[name]['deepfool_l2'][str(e_2)]:.3f}")
    import art

    summary = {
        "experiment": "S Sec. 5.2 adversarial training with DSGAN low-density samples, MNIST 5,000",
        "command": command, "settings": asdict(s), "attacker": f"adversarial-robustness-toolbox {art.__version__}",
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

    fig = Figure(figsize=(15, 4), dpi=100)
    axes = fig.subplots(1, 3)
    for ax, (key, eps, title) in zip(axes, (("fgsm_linf", s.eps_linf, "FGSM, L-inf"),
                                            ("pgd_linf", s.eps_linf, f"PGD ({s.pgd_steps} steps), L-inf"),
                                            ("deepfool_l2", s.eps_l2, "DeepFool, L2"))):
        for name, r in results.items():
            style = "-" if name.startswith("DSGAN") else ("--" if name.startswith("noise") else ":")
            ax.plot([0, *eps], [r["clean"], *[r[key][str(e)] for e in eps]], style, marker="o", ms=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("eps (pixels in [0, 1])")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
