"""Metrics on hand-built cases with known answers: detection (AUROC family), Fréchet distance, KID, IS, nearest
neighbours, feature networks, SSIM/PSNR and the sampling-efficiency table."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from atebm.metrics import (
    FeatureClassifier,
    InceptionFeatures,
    aupr_in,
    aupr_out,
    auroc,
    detection_metrics,
    efficiency_pairs,
    fpr_at_tpr,
    frechet_distance,
    generation_metrics,
    inception_score,
    kid,
    mean_nn_distance,
    nearest_neighbour_grid,
    nearest_neighbours,
    psnr,
    roc_points,
    sampling_efficiency,
    ssim,
    train_feature_classifier,
)
from atebm.metrics.features import cache_dir

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ detection
def test_perfect_and_reversed_separation():
    perfect = detection_metrics([3.0, 4.0], [1.0, 2.0])
    assert perfect["auroc"] == 1.0 and perfect["aupr_in"] == 1.0 and perfect["aupr_out"] == 1.0
    assert perfect["fpr95"] == 0.0 and perfect["n_in"] == 2 and perfect["n_out"] == 2
    reversed_ = detection_metrics([1.0, 2.0], [3.0, 4.0])
    assert reversed_["auroc"] == 0.0 and reversed_["fpr95"] == 1.0


def test_interleaved_case_by_hand():
    # ranking 4(out) > 3(in) > 2(out) > 1(in): one of four (in, out) pairs is ordered correctly.
    assert auroc([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.25)
    # in positive: precision 1/2 at recall 1/2 (score 3) and 2/4 at recall 1 -> AP = 0.5
    assert aupr_in([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.5)
    # OOD positive on -score: -1(in) > -2(out) > -3(in) > -4(out): precision 1/2 and 2/4 -> 0.5
    assert aupr_out([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.5)
    # accepting both in-distribution samples needs threshold 1, which accepts both OOD samples
    assert fpr_at_tpr([1.0, 3.0], [2.0, 4.0]) == 1.0


def test_fpr_at_95_tpr_by_hand():
    scores_in = np.arange(1.0, 21.0)            # 20 in-distribution scores 1..20
    scores_out = [1.5, 2.5, 10.0, 30.0]
    # 95 % TPR = 19 of 20 accepted -> threshold 2 -> OOD scores >= 2 are accepted: 2.5, 10, 30
    assert fpr_at_tpr(scores_in, scores_out) == pytest.approx(0.75)
    assert detection_metrics(scores_in, scores_out)["fpr95"] == pytest.approx(0.75)
    # 100 % TPR needs threshold 1 -> all four accepted
    assert fpr_at_tpr(scores_in, scores_out, tpr=1.0) == 1.0


def test_auroc_is_the_mann_whitney_probability_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 30).astype(float)
    pairs = (a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean()
    assert auroc(a, b) == pytest.approx(pairs)
    assert auroc([2.0, 2.0], [2.0, 2.0]) == 0.5


def test_infinite_scores_keep_their_rank_and_nan_is_refused():
    assert auroc([math.inf, 1.0], [0.0, -math.inf]) == 1.0
    assert auroc([1.0, 2.0], [math.inf, 0.0]) == 0.5
    with pytest.raises(ValueError, match="NaN"):
        auroc([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="empty"):
        auroc([], [0.0])


def test_roc_points_end_points_and_auc():
    curve = roc_points(torch.arange(100.0), torch.arange(50.0) - 20, max_points=20)
    assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0 and len(curve["fpr"]) <= 20
    assert curve["auroc"] == pytest.approx(auroc(torch.arange(100.0), torch.arange(50.0) - 20))


# ------------------------------------------------------------------------------------------------ generative
def test_frechet_distance_matches_the_formula_and_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) * 2.0 + 1.0
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # N(0, I) vs N(m, 4 I) in d dims: ||m||^2 + d (1 - 2)^2
    x = rng.normal(size=(20000, 3))
    y = rng.normal(size=(20000, 3)) * 2.0 + np.array([1.0, 0.0, -1.0])
    assert frechet_distance(x, y) == pytest.approx(2.0 + 3.0, rel=0.03)
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(a, b[:, :3])


def test_kid_is_the_unbiased_mmd_and_detects_a_shift():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) + 0.5

    def k(u, v):
        return (u @ v / 4 + 1.0) ** 3

    xx = sum(k(a[i], a[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    yy = sum(k(b[i], b[j]) for i in range(25) for j in range(25) if i != j) / (25 * 24)
    xy = sum(k(a[i], b[j]) for i in range(30) for j in range(25)) / (30 * 25)
    # one subset of min(30, 25) = 25 samples from a, all of b
    mean, std = kid(a[:25], b, subsets=1, subset_size=25)
    xx25 = sum(k(a[i], a[j]) for i in range(25) for j in range(25) if i != j) / (25 * 24)
    xy25 = sum(k(a[i], b[j]) for i in range(25) for j in range(25)) / (25 * 25)
    assert mean == pytest.approx(xx25 + yy - 2 * xy25, rel=1e-9) and std == 0.0
    assert xx + yy - 2 * xy > 0
    same_a, same_b = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    shifted = rng.normal(size=(400, 4)) + 1.0
    assert abs(kid(same_a, same_b, subset_size=200)[0]) < 0.2 * kid(same_a, shifted, subset_size=200)[0]


def test_inception_score_extremes():
    spread = np.eye(10)[np.arange(100) % 10]
    assert inception_score(spread, splits=1)[0] == pytest.approx(10.0, rel=1e-6)
    collapsed = np.eye(10)[np.zeros(100, dtype=int)]
    assert inception_score(collapsed, splits=2)[0] == pytest.approx(1.0, abs=1e-6)
    assert inception_score(np.full((50, 10), 0.1), splits=5)[0] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.ones((4, 3)), splits=1)


def test_nearest_neighbours_and_memorisation_distance(tmp_path):
    torch.manual_seed(0)
    train = torch.rand(50, 1, 6, 6)
    queries = torch.cat([train[7:8], train[3:4] + 0.1])
    dist, idx = nearest_neighbours(queries, train, k=2)
    assert idx[0, 0] == 7 and dist[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert idx[1, 0] == 3 and dist[1, 0] == pytest.approx(0.1 * 6, rel=1e-4)   # sqrt(36 * 0.01)
    assert (dist[:, 1] >= dist[:, 0]).all()
    assert mean_nn_distance(queries, train) == pytest.approx(0.3, rel=1e-4)
    net = FeatureClassifier(1, 3, width=4, feature_dim=8)
    path = nearest_neighbour_grid(tmp_path / "nn.png", queries, train, net, n=2, k=3, scale=1)
    width, height = Image.open(path).size
    # 1 sample + 3 pixel NNs + separator + 3 feature NNs = 8 columns of 6 px with 2 px padding
    assert (width, height) == (8 * 8 + 2, 2 * 8 + 2)


# ------------------------------------------------------------------------------------------------ feature nets
def _stripes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.3 * torch.rand(n, 1, 12, 12, generator=g)
    x[y == 0, :, :, :6] += 0.6
    x[y == 1, :, :, 6:] += 0.6
    return x.clamp(0, 1), y


def test_train_classifier_learns_and_is_deterministic():
    x, y = _stripes(200, 0)
    xv, yv = _stripes(100, 1)
    state = torch.random.get_rng_state()
    a = train_feature_classifier(x, y, epochs=12, width=4, feature_dim=8, x_val=xv, y_val=yv, seed=3)
    assert torch.equal(state, torch.random.get_rng_state()), "training must not move the global RNG"
    b = train_feature_classifier(x, y, epochs=12, width=4, feature_dim=8, seed=3)
    assert a.info["val_accuracy"] > 0.95
    assert torch.equal(a.features(xv), b.features(xv))
    assert a.features(xv).shape == (100, 8) and a.predict_proba(xv).shape == (100, 2)
    assert torch.allclose(a.predict_proba(xv).sum(1), torch.ones(100))


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("ATEBM_CACHE_DIR", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "atebm"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "atebm"
    monkeypatch.setenv("ATEBM_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_digit_features_second_call_is_a_cache_hit(monkeypatch, tmp_path):
    """The first call trains and writes the cache file; a new process (memory cache cleared) loads that file
    without training; an unreadable file is retrained with a warning. Runs on a one-epoch recipe in tmp_path:
    nothing is written to the user's cache."""
    from atebm.metrics import digit_features
    from atebm.metrics import features as feature_module

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("ATEBM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(feature_module, "_DIGIT_NET", {})
    full_recipe_tag = feature_module._recipe_tag()
    monkeypatch.setitem(feature_module.DIGIT_RECIPE, "epochs", 1)
    assert feature_module._recipe_tag() != full_recipe_tag, "the recipe is part of the cache file name"
    trainings = []

    def counting_train_classifier(*args, **kwargs):
        trainings.append(kwargs.get("epochs"))
        return train_feature_classifier(*args, **kwargs)

    monkeypatch.setattr(feature_module, "train_feature_classifier", counting_train_classifier)

    first = digit_features()
    files = list((tmp_path / "cache").iterdir())
    assert trainings == [1] and [f.name for f in files] == [f"digit-features-{feature_module._recipe_tag()}.pt"]
    written = files[0].stat().st_mtime_ns, files[0].read_bytes()

    feature_module._DIGIT_NET.clear()             # as in a new process
    second = digit_features()
    assert trainings == [1], "the second call must load the cache file, not retrain"
    assert second is not first
    assert (files[0].stat().st_mtime_ns, files[0].read_bytes()) == written, "a cache hit does not rewrite the file"
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(first.features(x), second.features(x))
    assert digit_features() is second, "within a process the network is kept in memory"

    feature_module._DIGIT_NET.clear()
    files[0].write_bytes(written[1][:1000])        # truncated
    with pytest.warns(UserWarning, match="unreadable feature-network cache"):
        third = digit_features()
    assert trainings == [1, 1] and torch.equal(third.features(x), first.features(x))
    assert files[0].read_bytes() != written[1][:1000], "the retrained network replaces the broken file"
    assert not (tmp_path / "home").exists(), "nothing written to the home folder"


@pytest.mark.slow
def test_digit_features_recognise_held_out_digits():
    """The embedded feature network (the full recipe) classifies the 1,000 MNIST test digits; trained in memory
    (cache=False: the user's cache is neither read nor written)."""
    from atebm.metrics import digit_features

    net = digit_features(cache=False)
    assert net.info["test_accuracy"] > 0.9 and "MNIST 5,000 train split" in net.info["network"]
    assert sum(p.numel() for p in net.parameters()) * 4 < 2_000_000


def test_inception_features_from_a_torchscript_file(tmp_path):
    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            pooled = x.mean(dim=(2, 3))
            if return_features:
                return pooled
            return torch.cat([pooled, -pooled], dim=1)

    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # TorchScript is deprecated but still the format
        torch.jit.script(Tiny()).save(str(path))
    net = InceptionFeatures(path, resize=16)
    feats = net.features(torch.ones(3, 1, 8, 8) * 0.5)
    assert feats.shape == (3, 3) and torch.allclose(feats, torch.full((3, 3), 127.5))
    probs = net.predict_proba(torch.rand(5, 3, 8, 8))
    assert probs.shape == (5, 6) and torch.allclose(probs.sum(1), torch.ones(5))
    with pytest.raises(FileNotFoundError):
        InceptionFeatures(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="TorchScript"):
        InceptionFeatures(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------------------------ image quality
def test_ssim_and_psnr():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    assert torch.isinf(psnr(x, x)).all()
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim(x, noisy) < 0.99).all()
    mse = ((x - noisy) ** 2).flatten(1).mean(1)
    assert torch.allclose(psnr(x, noisy), -10 * torch.log10(mse), atol=1e-3)
    with pytest.raises(ValueError):
        ssim(x, x[:2])


# ------------------------------------------------------------------------------------------------ generation
def test_generation_metrics_and_sampling_efficiency_depend_on_the_product():
    torch.manual_seed(0)
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1.0

    def score(x):                        # ascent moves straight toward the target image
        return -((x - target) ** 2).flatten(1).sum(1)

    reference = (target + 0.05 * torch.randn(200, 1, 8, 8)).clamp(0, 1)
    seeds = torch.rand(200, 1, 8, 8)
    net = FeatureClassifier(1, 4, width=4, feature_dim=6)
    base = generation_metrics(seeds, reference, net, train=reference)
    pairs = efficiency_pairs(8, 0.5)
    assert pairs == [(16, 0.25), (8, 0.5), (4, 1.0)]
    table = sampling_efficiency(score, seeds, reference, net, pairs=pairs, train=reference)
    fds = [row["fd"] for row in table["rows"]]
    assert all(row["product"] == pytest.approx(4.0) for row in table["rows"])
    assert max(fds) < 0.5 * base["fd"], "ascent toward the reference must improve the Fréchet distance"
    assert max(fds) - min(fds) < 0.05 * base["fd"], "same product -> same quality for a straight path"
    assert all(row["nn_l2"] < base["nn_l2"] for row in table["rows"])
    assert table["protocol"]["seeds"] == 200 and "FeatureClassifier" in table["protocol"]["feature_network"]
    with pytest.warns(UserWarning, match="different products"):
        sampling_efficiency(score, seeds[:20], reference, net, pairs=[(2, 0.5), (2, 1.0)])


def test_precomputed_reference_features_give_the_same_metrics_and_must_match_the_reference():
    torch.manual_seed(1)
    reference, samples = torch.rand(120, 1, 8, 8), torch.rand(80, 1, 8, 8) * 0.5
    net = FeatureClassifier(1, 4, width=4, feature_dim=6)
    once = net.features(reference).numpy()
    plain = generation_metrics(samples, reference, net, seed=0)
    cached = generation_metrics(samples, reference, net, seed=0, reference_features=once)
    assert cached["fd"] == pytest.approx(plain["fd"]) and cached["kid"] == pytest.approx(plain["kid"])
    other = generation_metrics(samples, reference, net, seed=0, reference_features=once[::-1] + 1.0)
    assert other["fd"] != pytest.approx(plain["fd"]), "the given features, not the reference images, are used"
    with pytest.raises(ValueError, match="rows"):
        generation_metrics(samples, reference, net, reference_features=once[:10])
