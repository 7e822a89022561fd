"""What robust classifiers show (T Sec. 3.4.3, Fig. 3.6, 3.8-3.10, Tab. 3.15): class-conditional generation from
per-class Gaussian seeds, counterfactuals, integrated-gradients attributions, and the FD of generated samples and
counterfactuals (digit-classifier features, :func:`atebm.metrics.digit_features`).

A classifier is read through one per-sample score per class (:class:`ClassScore`): the generative classifier's
d_k(x) + c_k (its class-k density model up to a constant, T Eq. 3.40-3.43), a softmax classifier's
log softmax_k(z_f(x)). Generation and counterfactuals are ascents of that score with :func:`atebm.pgd`
(unit-L2 steps).

Integrated gradients (Sundararajan et al. 2017): IG_i(x) = (x_i - b_i) * int_0^1 dF(b + a (x - b))/dx_i da, whose
sum over pixels equals F(x) - F(b) (completeness). :func:`integrated_gradients` uses captum's
``IntegratedGradients`` when captum is installed and otherwise the trapezoid rule over ``steps`` intervals
through :func:`atebm.sampling.input_gradient`; the result says which one ran.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..apps._images import model_device
from ..sampling import input_gradient, pgd
from .committee import Committee

__all__ = ["ClassScore", "class_gaussian_seeds", "generate_class_samples", "counterfactuals",
           "integrated_gradients", "captum_available", "explain_models"]

class ClassScore(nn.Module):
    """One score per sample for class ``k`` of a K-logit model: d_k(x) + c_k for a :class:`Committee` (only
    detector k runs), log softmax_k(model(x)) for a softmax classifier. ``k`` may be an int or one class per
    sample."""

    def __init__(self, model: nn.Module, k: int | Tensor) -> None:
        super().__init__()
        self.model = model
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.model, Committee):
            if isinstance(self.k, int):
                return self.model.detector(self.k)(x).view(-1) + self.model.offsets[self.k]
            return self.model(x).gather(1, self.k.to(x.device).view(-1, 1))[:, 0]
        logp = F.log_softmax(self.model(x), dim=1)
        if isinstance(self.k, int):
            return logp[:, self.k]
        return logp.gather(1, self.k.to(x.device).view(-1, 1))[:, 0]


def class_gaussian_seeds(x: Tensor, y: Tensor, per_class: int, *, shrinkage: float = 0.01,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``per_class`` seeds per class drawn from N(mu_k, S_k + shrinkage I), mu_k and S_k the mean and sample
    covariance of the class-k images (no eigendecomposition: mu + X_c^T z / sqrt(n - 1) has covariance S_k),
    clamped to [0, 1]. Returns (seeds, labels)."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    seeds, labels = [], []
    for k in torch.unique(y).tolist():
        xk = x[y == k].flatten(1)
        if len(xk) < 2:
            raise ValueError(f"class {k} has {len(xk)} image(s); a Gaussian needs at least 2")
        centred = xk - xk.mean(0)
        z = torch.randn(per_class, len(xk), generator=generator)
        noise = torch.randn(per_class, xk.shape[1], generator=generator) * shrinkage ** 0.5
        seeds.append((xk.mean(0) + z @ centred / (len(xk) - 1) ** 0.5 + noise).clamp(0, 1))
        labels.append(torch.full((per_class,), int(k)))
    return torch.cat(seeds).view(-1, *x.shape[1:]), torch.cat(labels)


def generate_class_samples(model: nn.Module, seeds: Tensor, labels: Tensor, *, steps: int, step_size: float
                           ) -> Tensor:
    """Class-conditional generation (T Fig. 3.8): each seed ascends its class's score (:class:`ClassScore`)
    by ``steps`` unit-L2 steps of ``step_size`` (:func:`atebm.pgd`, no ball, [0, 1] box)."""
    out = seeds.clone()
    for k in torch.unique(labels).tolist():
        rows = labels == k
        out[rows] = pgd(ClassScore(model, int(k)), seeds[rows], steps=steps, step_size=step_size, norm="l2")
    return out


def counterfactuals(model: nn.Module, x: Tensor, target: Tensor, *, eps: float, steps: int) -> Tensor:
    """Targeted ascent of the target class's score from ``x`` inside the L2 ball of radius ``eps`` (T Fig. 3.9):
    what the classifier needs to change to see class ``target``."""
    return pgd(ClassScore(model, torch.as_tensor(target).long()), x, steps=steps, step_size=2.5 * eps / steps,
               norm="l2", eps=eps)


def captum_available() -> bool:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return False
    return True


def integrated_gradients(model: nn.Module, x: Tensor, target: Tensor, *, baseline: Tensor | None = None,
                         steps: int = 64, use_captum: bool | None = None) -> tuple[Tensor, Tensor, str]:
    """Integrated gradients of the class score F = :class:`ClassScore` (model, target) at ``x`` from
    ``baseline`` (default: black images). Returns (attributions of x's shape, completeness gap
    sum_i IG_i - (F(x) - F(baseline)) per sample, the method used). ``use_captum``: None = captum when
    installed, True = require it, False = the built-in trapezoid rule."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    target = torch.as_tensor(target).long().view(-1)
    if target.shape[0] != x.shape[0]:
        raise ValueError(f"need one target per input; got {target.shape[0]} for {x.shape[0]} inputs")
    base = torch.zeros_like(x) if baseline is None else baseline.to(x)
    if base.shape != x.shape:
        raise ValueError(f"baseline must have the shape of x {tuple(x.shape)}, got {tuple(base.shape)}")
    score = ClassScore(model, target)
    model.eval()
    with torch.no_grad():
        gap_ref = score(x) - score(base)
    if use_captum is None:
        use_captum = captum_available()
    if use_captum:
        from captum.attr import IntegratedGradients

        def forward(inputs: Tensor) -> Tensor:
            if isinstance(model, Committee):
                return model(inputs)
            return F.log_softmax(model(inputs), dim=1)

        attributions = IntegratedGradients(forward).attribute(x, baselines=base, target=target.to(x.device),
                                                              n_steps=steps)
        method = "captum IntegratedGradients (Gauss-Legendre)"
    else:
        weights = torch.ones(steps + 1)
        weights[0] = weights[-1] = 0.5
        total = torch.zeros_like(x)
        chunk = max(1, 2048 // max(1, len(x)))       # path points per gradient call
        for first in range(0, steps + 1, chunk):
            alphas = torch.arange(first, min(first + chunk, steps + 1)) / steps
            path = base[None] + alphas.view(-1, *([1] * x.dim())).to(x) * (x - base)[None]
            _, grad = input_gradient(ClassScore(model, target.repeat(len(alphas))), path.flatten(0, 1))
            w = weights[first:first + len(alphas)].view(-1, *([1] * x.dim())).to(x)
            total += (grad.view(len(alphas), *x.shape) * w).sum(0)
        attributions = (x - base) * total / steps
        method = f"built-in trapezoid rule ({steps} intervals)"
    gap = attributions.detach().flatten(1).sum(1) - gap_ref
    return attributions.detach(), gap.detach(), method


def explain_models(models: dict[str, nn.Module], train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                   out_dir: str | os.PathLike, *, per_class: int = 10, gen_steps: int = 60,
                   gen_step_size: float = 0.15, cf_n: int = 100, cf_eps: float = 3.0, cf_steps: int = 40,
                   ig_n: int = 8, ig_steps: int = 64, shrinkage: float = 0.01, seed: int = 0,
                   feature_net: Any | None = None, progress: Callable[[str], None] | None = None
                   ) -> dict[str, Any]:
    """For every model: class-conditional samples from Gaussian seeds, counterfactuals of ``cf_n`` test images
    toward their runner-up class, and integrated gradients of ``ig_n`` test images; FD (feature network:
    ``feature_net``, default :func:`atebm.metrics.digit_features`) of the samples and counterfactuals against
    the test images. Writes grids (PNG) into ``out_dir`` and returns the numbers (same seeds for every model).
    The data are CPU tensors; each model receives its inputs on its own device, and its samples, counterfactuals,
    predictions and attributions come back to the CPU before features, grids and numbers are made of them."""
    import matplotlib.pyplot as plt

    from ..io import save_grid
    from ..metrics import digit_features, frechet_distance
    from ..report.plots import figure_png  # noqa: F401  (selects the Agg backend)
    from .evaluate import stratified_subset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = feature_net or digit_features()
    ref = net.features(test_x).numpy()
    seeds, labels = class_gaussian_seeds(train_x, train_y, per_class, shrinkage=shrinkage,
                                         generator=torch.Generator().manual_seed(seed))
    cf_rows = stratified_subset(test_y, cf_n, seed)
    cf_x, cf_y = test_x[cf_rows], test_y[cf_rows]
    ig_rows = stratified_subset(test_y, ig_n, seed + 1)
    ig_x, ig_y = test_x[ig_rows], test_y[ig_rows]
    save_grid(out / "explain_seeds.png", seeds, nrow=per_class, scale=2)
    result: dict[str, Any] = {"protocol": {"per_class": per_class, "gen_steps": gen_steps,
                                           "gen_step_size": gen_step_size, "shrinkage": shrinkage, "cf_n": cf_n,
                                           "cf_eps": cf_eps, "cf_steps": cf_steps, "ig_n": ig_n,
                                           "ig_steps": ig_steps, "seed": seed,
                                           "feature_network": getattr(net, "info", {}).get("network"),
                                           "fd_reference": f"{len(test_x)} test images"},
                              "seeds_fd": frechet_distance(net.features(seeds).numpy(), ref), "models": {}}
    heatmaps: dict[str, Tensor] = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.eval()
        device = model_device(model)
        samples = generate_class_samples(model, seeds.to(device), labels.to(device), steps=gen_steps,
                                         step_size=gen_step_size)
        with torch.no_grad():
            logits = model(cf_x.to(device))
            masked = logits.masked_fill(F.one_hot(cf_y.to(device), logits.shape[1]).bool(), -float("inf"))
            target = masked.argmax(1)
            sample_pred = model(samples).argmax(1).cpu()
        cf = counterfactuals(model, cf_x.to(device), target, eps=cf_eps, steps=cf_steps)
        with torch.no_grad():
            cf_pred = model(cf).argmax(1).cpu()
        attributions, gap, method = integrated_gradients(model, ig_x.to(device), ig_y.to(device), steps=ig_steps)
        samples, cf, target, attributions, gap = samples.cpu(), cf.cpu(), target.cpu(), attributions.cpu(), gap.cpu()
        heatmaps[name] = attributions
        save_grid(out / f"explain_samples_{name}.png", samples, nrow=per_class, scale=2)
        first = torch.cat([torch.nonzero(cf_y == k)[:1, 0] for k in torch.unique(cf_y).tolist()])
        save_grid(out / f"explain_counterfactuals_{name}.png", torch.cat([cf_x[first], cf[first]]),
                  nrow=len(first), scale=2)
        scale = float(attributions.abs().flatten(1).max(1).values.mean())
        result["models"][name] = {
            "samples_fd": frechet_distance(net.features(samples).numpy(), ref),
            "samples_classified_as_seed_class": float((sample_pred == labels).float().mean()),
            "samples_digit_net_agrees": float((net.predict_proba(samples).argmax(1) == labels).float().mean()),
            "counterfactual_fd": frechet_distance(net.features(cf).numpy(), ref),
            "counterfactual_success": float((cf_pred == target).float().mean()),
            "counterfactual_digit_net_target": float((net.predict_proba(cf).argmax(1) == target).float().mean()),
            "counterfactual_mean_l2": float((cf - cf_x).flatten(1).norm(dim=1).mean()),
            "ig_method": method, "ig_completeness_max_abs_gap": float(gap.abs().max()),
            "ig_attribution_scale": scale,
            "files": {"samples": f"explain_samples_{name}.png",
                      "counterfactuals": f"explain_counterfactuals_{name}.png"},
            "seconds": round(time.perf_counter() - start, 1)}
        if progress is not None:
            m = result["models"][name]
            progress(f"{name}: samples FD {m['samples_fd']:.2f}, counterfactual FD {m['counterfactual_fd']:.2f} "
                     f"(success {m['counterfactual_success']:.2f}), IG gap {m['ig_completeness_max_abs_gap']:.2g}")
    fig, axes = plt.subplots(len(heatmaps) + 1, len(ig_x), figsize=(1.3 * len(ig_x), 1.4 * (len(heatmaps) + 1)),
                             squeeze=False)
    for j in range(len(ig_x)):
        axes[0, j].imshow(ig_x[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"y={int(ig_y[j])}", fontsize=7)
        for i, (name, attr) in enumerate(heatmaps.items(), start=1):
            a = attr[j].sum(0).numpy()
            bound = float(abs(a).max()) or 1.0
            axes[i, j].imshow(a, cmap="RdBu_r", vmin=-bound, vmax=bound)
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "explain_integrated_gradients.png", dpi=110)
    plt.close(fig)
    result["files"] = {"seeds": "explain_seeds.png", "integrated_gradients": "explain_integrated_gradients.png"}
    return result
