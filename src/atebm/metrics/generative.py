"""Generation-quality metrics (METHOD Sec. 6; E Sec. 5.1, supp. Tab. 7, supp. Fig. 3 and 8-10).

All of them work on features from a feature network (see :mod:`atebm.metrics.features`; the table that shows a
number must say which network produced it):

* Fréchet distance between Gaussians fitted to two feature sets (the FID formula):
  ``FD = ||mu_a - mu_b||² + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``;
* KID: the unbiased estimate of the squared MMD with the cubic polynomial kernel
  ``k(u, v) = (u·v / d + 1)³``, averaged over random subsets;
* Inception-style score ``IS = exp(E_x KL(p(y|x) || p(y)))`` from a classifier's softmax;
* nearest neighbours of generated samples among training images, in pixel and feature space (a memorisation
  check), and the mean pixel L2 distance to the nearest training image;
* diversity relative to real images of the set the samples should come from (:func:`diversity_metrics`): the
  Fréchet ratio ``FD(samples, reference) / FD(held-out real, reference)`` on equal counts (about 1 for samples as
  varied as real images, large for a collapsed generator) and the number of classes the samples cover
  (:func:`classes_covered`).
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["frechet_distance", "kid", "inception_score", "nearest_neighbours", "mean_nn_distance",
           "nearest_neighbour_grid", "generation_metrics", "efficiency_pairs", "sampling_efficiency",
           "classes_covered", "diversity_metrics", "MIN_CLASS_SHARE"]

#: A class counts as covered by a sample set when at least this share of the samples is judged to be it (a fifth
#: of a class's share when 10 classes are covered evenly).
MIN_CLASS_SHARE = 0.02


def _features(values: Any, what: str) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (samples, features) array, got shape {array.shape}")
    if len(array) < 2:
        raise ValueError(f"{what} needs at least 2 samples, got {len(array)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains non-finite values")
    return array


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows = samples).

    ``tr((S_a S_b)^{1/2})`` is computed as ``tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})`` with symmetric eigen-
    decompositions, which is exact for PSD covariances and free of the complex round-off of a general sqrtm.
    """
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(value, 0.0)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m, n = len(x), len(y)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(features_a: Any, features_b: Any, *, subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation over ``subsets`` random subsets (drawn without
    replacement, ``min(subset_size, len(a), len(b))`` samples each) of the unbiased squared MMD with the kernel
    ``(u·v/d + 1)³``. With one subset covering both sets entirely the result is deterministic."""
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        ia = rng.choice(len(a), size, replace=False) if size < len(a) else np.arange(len(a))
        ib = rng.choice(len(b), size, replace=False) if size < len(b) else np.arange(len(b))
        values.append(_mmd2_unbiased(a[ia], b[ib]))
    return float(np.mean(values)), float(np.std(values))


def inception_score(probabilities: Any, splits: int = 10) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) || p(y)))`` per split of the samples (``p(y)`` = the split's mean prediction); returns
    the mean and standard deviation over splits. Ranges from 1 (all predictions equal) to the number of
    classes (confident predictions spread evenly over the classes)."""
    if isinstance(probabilities, Tensor):
        probabilities = probabilities.detach().cpu().numpy()
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (samples, classes >= 2), got shape {p.shape}")
    if (p < -1e-6).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be non-negative rows summing to 1 (apply a softmax first)")
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must lie in [1, {len(p)}], got {splits}")
    p = np.clip(p, 1e-12, 1.0)
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(0, keepdims=True)
        scores.append(math.exp(float((part * (np.log(part) - np.log(marginal))).sum(1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


def _flat(x: Tensor) -> Tensor:
    return torch.as_tensor(x).detach().float().cpu().flatten(1)


def nearest_neighbours(queries: Tensor, reference: Tensor, *, k: int = 1, chunk: int = 256,
                       mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """For each query, the ``k`` nearest reference rows in Euclidean distance (rows flattened: pixels or
    features). Returns ``(distances, indices)``, both ``(len(queries), k)``, nearest first.

    With ``mask`` (the queries' shape, or broadcastable to it) a distance only counts the values where the mask
    is nonzero, ``d(q_n, r_j)² = Σ_p m_np (q_np - r_jp)²`` (the nearest-neighbour inpainting baselines of
    T Sec. 2.5.3 compare the pixels under or outside a hole). Distances are computed in blocks of ``chunk``
    queries from ``Σ m q² - 2 Σ m q r + Σ m r²``, in float64."""
    q, r = _flat(queries).double(), _flat(reference).double()
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} values per row but the reference has {r.shape[1]}")
    if not 1 <= k <= len(r):
        raise ValueError(f"k must lie in [1, {len(r)}], got {k}")
    weights = None
    if mask is not None:
        shape = tuple(torch.as_tensor(queries).shape)
        try:
            full = torch.broadcast_to(torch.as_tensor(mask).detach().cpu() != 0, shape)
        except RuntimeError as err:
            raise ValueError(f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not fit queries of shape "
                             f"{shape}") from err
        weights = full.reshape(len(q), -1).double()
    r_sq = (r ** 2).sum(1).view(1, -1) if weights is None else (r ** 2).T
    dists, idx = [], []
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        if weights is None:
            d2 = (block ** 2).sum(1, keepdim=True) + r_sq - 2 * block @ r.T
        else:
            m = weights[start:start + chunk]
            d2 = (m * block ** 2).sum(1, keepdim=True) - 2 * (m * block) @ r.T + m @ r_sq
        values, indices = torch.topk(d2, k, dim=1, largest=False)
        dists.append(values.clamp_min(0).sqrt().float())
        idx.append(indices)
    return torch.cat(dists), torch.cat(idx)


def mean_nn_distance(samples: Tensor, train: Tensor) -> float:
    """Mean pixel-space L2 distance from each sample to its nearest training image (small = memorisation)."""
    distances, _ = nearest_neighbours(samples, train, k=1)
    return float(distances.mean())


def nearest_neighbour_grid(path: str | Path, samples: Tensor, train: Tensor, feature_net: Any | None = None, *,
                           n: int = 8, k: int = 4, scale: int = 2) -> Path:
    """A PNG grid: one row per sample (the first ``n``): the sample, then its ``k`` nearest training images in
    pixel space, then (with ``feature_net``) a grey separator and its ``k`` nearest in feature space
    (E supp. Fig. 3, 8-10)."""
    from ..io import save_grid

    samples = torch.as_tensor(samples).detach().float().cpu()[:n]
    train = torch.as_tensor(train).detach().float().cpu()
    if samples.dim() != 4 or train.dim() != 4 or samples.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape)} and training images {tuple(train.shape)} must be NCHW "
                         "of the same image shape")
    _, pixel_idx = nearest_neighbours(samples, train, k=k)
    columns = [samples[:, None], train[pixel_idx]]
    if feature_net is not None:
        _, feat_idx = nearest_neighbours(feature_net.features(samples), feature_net.features(train), k=k)
        columns += [torch.full_like(samples[:, None], 0.5), train[feat_idx]]
    rows = torch.cat(columns, dim=1)
    return save_grid(path, rows.flatten(0, 1), nrow=rows.shape[1], scale=scale)


def generation_metrics(samples: Tensor, reference: Tensor, feature_net: Any, *, train: Tensor | None = None,
                       kid_subsets: int = 20, kid_subset_size: int = 500, is_splits: int = 5,
                       seed: int = 0, reference_features: np.ndarray | None = None) -> dict[str, Any]:
    """FD, KID (mean, std), Inception-style score (when the network has ``predict_proba``) of ``samples`` against
    ``reference`` images, and with ``train`` the mean pixel distance to the nearest training image. The result
    names the feature network (``feature_net.info["network"]``) and the sample counts. ``reference_features``:
    ``feature_net.features(reference)`` computed once by a caller that scores many sample sets against it."""
    samples = torch.as_tensor(samples).detach().float().cpu()
    reference = torch.as_tensor(reference).detach().float().cpu()
    fa = feature_net.features(samples).numpy()
    fb = feature_net.features(reference).numpy() if reference_features is None else np.asarray(reference_features)
    if len(fb) != len(reference):
        raise ValueError(f"reference_features has {len(fb)} rows for {len(reference)} reference images")
    if len(fa) <= fa.shape[1]:
        warnings.warn(f"{len(fa)} samples for {fa.shape[1]}-d features: the covariance is singular and the "
                      "Fréchet distance is biased; use more samples", stacklevel=2)
    kid_mean, kid_std = kid(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    result: dict[str, Any] = {
        "fd": frechet_distance(fa, fb), "kid": kid_mean, "kid_std": kid_std,
        "n_samples": len(samples), "n_reference": len(reference),
        "feature_network": getattr(feature_net, "info", {}).get("network", type(feature_net).__name__),
    }
    if hasattr(feature_net, "predict_proba"):
        probs = feature_net.predict_proba(samples)
        result["is"], result["is_std"] = inception_score(probs, splits=min(is_splits, len(samples)))
        counts = np.bincount(probs.argmax(1).numpy(), minlength=probs.shape[1])
        result["class_histogram"] = counts.tolist()
    if train is not None:
        result["nn_l2"] = mean_nn_distance(samples, train)
    return result


def classes_covered(labels: Any, num_classes: int, min_share: float = MIN_CLASS_SHARE) -> tuple[int, list[float]]:
    """``(covered, shares)``: the share of ``labels`` (integer class indices) in each of ``num_classes`` classes,
    and how many classes hold at least ``min_share`` of them."""
    labels = np.asarray(torch.as_tensor(labels).detach().cpu(), dtype=np.int64).reshape(-1)
    if len(labels) == 0:
        raise ValueError("classes_covered needs at least one label")
    if num_classes < 1 or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must lie in (0, 1], got {min_share}")
    shares = np.bincount(labels, minlength=num_classes) / len(labels)
    return int((shares >= min_share).sum()), [float(v) for v in shares]


def _chunked_fd(features: np.ndarray, reference: np.ndarray, count: int, max_chunks: int) -> tuple[float, int]:
    """Mean FD to ``reference`` over disjoint chunks of ``count`` rows of ``features`` (at most ``max_chunks``)."""
    chunks = max(1, min(max_chunks, len(features) // count))
    values = [frechet_distance(features[i * count:(i + 1) * count], reference) for i in range(chunks)]
    return float(np.mean(values)), chunks


def diversity_metrics(samples: Tensor, reference: Tensor, held_out: Tensor, feature_net: Any, *,
                      min_share: float = MIN_CLASS_SHARE, max_chunks: int = 10) -> dict[str, Any]:
    """Diversity of generated images relative to real images of the set they should come from (e.g. the sevens
    of S Fig. 5-6), in ``feature_net``'s features (:func:`atebm.metrics.digit_features` for digits).

    ``fd_ratio = fd_samples / fd_held_out``: ``fd_samples`` is the Fréchet distance of the samples to the real
    ``reference`` images, ``fd_held_out`` that of ``held_out`` real images of the same set (not in
    ``reference``). Both are computed on ``n_per_fd = min(len(samples), len(held_out))`` rows, averaged over up
    to ``max_chunks`` disjoint chunks, so that both carry the same finite-sample bias: about 1 when the samples
    vary as much as real images, large when they collapse (one image repeated). With ``predict_proba``, also
    ``classes_covered`` (:func:`classes_covered`: classes judged for at least ``min_share`` of the samples) and
    ``class_shares``."""
    fa = _features(feature_net.features(torch.as_tensor(samples).detach().float().cpu()), "sample features")
    fr = _features(feature_net.features(torch.as_tensor(reference).detach().float().cpu()), "reference features")
    fh = _features(feature_net.features(torch.as_tensor(held_out).detach().float().cpu()), "held-out features")
    if max_chunks < 1:
        raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
    count = min(len(fa), len(fh))
    fd_samples, sample_chunks = _chunked_fd(fa, fr, count, max_chunks)
    fd_held_out, held_out_chunks = _chunked_fd(fh, fr, count, max_chunks)
    result: dict[str, Any] = {
        "fd_ratio": fd_samples / max(fd_held_out, 1e-12), "fd_samples": fd_samples, "fd_held_out": fd_held_out,
        "n_per_fd": count, "sample_chunks": sample_chunks, "held_out_chunks": held_out_chunks,
        "n_samples": len(fa), "n_reference": len(fr), "n_held_out": len(fh),
        "feature_network": getattr(feature_net, "info", {}).get("network", type(feature_net).__name__),
    }
    if hasattr(feature_net, "predict_proba"):
        probs = feature_net.predict_proba(torch.as_tensor(samples).detach().float().cpu())
        covered, shares = classes_covered(probs.argmax(1), int(probs.shape[1]), min_share)
        result.update(classes_covered=covered, class_shares=shares, min_class_share=min_share)
    return result


def efficiency_pairs(steps: int, step_size: float,
                     factors: Sequence[float] = (2.0, 1.0, 0.5)) -> list[tuple[int, float]]:
    """(steps x f, step_size / f) for each factor f: pairs with the same product, as in E supp. Tab. 7."""
    pairs = []
    for f in factors:
        s = int(round(steps * f))
        if s < 1 or f <= 0:
            raise ValueError(f"factor {f} gives {s} steps from {steps}; choose factors with steps x f >= 1")
        pairs.append((s, float(step_size) * steps / s))
    return pairs


def sampling_efficiency(score: Callable[[Tensor], Tensor], seeds: Tensor, reference: Tensor, feature_net: Any, *,
                        pairs: Sequence[tuple[int, float]], train: Tensor | None = None, norm: str = "l2",
                        eps: float = float("inf"), clamp: tuple[float, float] | None = (0.0, 1.0),
                        batch_size: int = 256, kid_subset_size: int = 500, seed: int = 0) -> dict[str, Any]:
    """E supp. Tab. 7: generation quality for several (steps, step size) pairs, from the same ``seeds``.

    Every pair runs :func:`atebm.pgd` (unconstrained ascent by default) on ``seeds`` and is scored with
    :func:`generation_metrics` against ``reference``. Returns ``{"rows": [...], "protocol": {...}}``, one row per
    pair with steps, step_size, product, fd, kid, is, nn_l2 and the sampling time; the paper's finding is that
    quality depends on the product, not on either factor alone.
    """
    from ..sampling import pgd

    seeds = torch.as_tensor(seeds).detach().float()
    if not pairs:
        raise ValueError("pairs is empty; give (steps, step_size) pairs, e.g. efficiency_pairs(32, 0.2)")
    products = {round(s * lam, 6) for s, lam in pairs}
    if len(products) > 1:
        warnings.warn(f"the (steps, step size) pairs have different products {sorted(products)}; E supp. Tab. 7 "
                      "compares pairs with one product", stacklevel=2)
    reference_features = feature_net.features(torch.as_tensor(reference).detach().float().cpu()).numpy()
    rows = []
    for steps, step_size in pairs:
        start = time.perf_counter()
        out = torch.cat([pgd(score, seeds[i:i + batch_size], steps=int(steps), step_size=float(step_size), norm=norm,
                             eps=eps, clamp=clamp) for i in range(0, len(seeds), batch_size)])
        seconds = time.perf_counter() - start
        metrics = generation_metrics(out, reference, feature_net, train=train, kid_subset_size=kid_subset_size,
                                     seed=seed, reference_features=reference_features)
        rows.append({"steps": int(steps), "step_size": float(step_size), "product": float(steps * step_size),
                     "fd": metrics["fd"], "kid": metrics["kid"], "is": metrics.get("is"),
                     "nn_l2": metrics.get("nn_l2"), "sampling_s": seconds})
    protocol = {"seeds": len(seeds), "reference": len(reference), "norm": norm, "eps": eps, "clamp": clamp,
                "feature_network": getattr(feature_net, "info", {}).get("network", type(feature_net).__name__),
                "kid_subset_size": min(kid_subset_size, len(seeds), len(reference)), "sampler": "atebm.pgd"}
    return {"rows": rows, "protocol": protocol}
