"""Issue 24, Fashion-MNIST at full size: the ``fashion`` training preset (built, validated, registered, a clear
one-line error without the Debian package or with a damaged file), FPR at 80 % TPR, the Fashion-MNIST feature
recipe, and the FID Inception loader of the optional extra ``fid``."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from atebm.cli import main
from atebm.data import DataFormatError, load_fashion, parse_source
from atebm.data.fashion import FASHION_MNIST_DIR
from atebm.metrics import InceptionFeatures, fid_inception, fpr_at_tpr, recipe_features
from atebm.metrics import features as feature_module
from atebm.metrics.features import DIGIT_RECIPE, FASHION_RECIPE, FEATURE_RECIPES, FID_INCEPTION
from atebm.presets import PRESETS, REGISTRY, get_preset
from atebm.training import TrainConfig

FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz")


def _needs_fashion() -> None:
    missing = [name for name in FASHION_FILES if not (FASHION_MNIST_DIR / name).is_file()]
    if missing:
        message = f"Fashion-MNIST missing from {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# ------------------------------------------------------------------------------------------------ the preset
def test_the_fashion_preset_builds_validates_and_is_registered(capsys):
    preset = get_preset("fashion")
    assert preset is PRESETS["fashion"] and REGISTRY.get("train", "fashion").preset is preset
    config = preset.config()
    assert isinstance(config, TrainConfig)
    mnist = PRESETS["mnist"].config()
    for field in ("model", "batch_size", "lr", "k_start", "k_max", "auc_window", "auc_threshold", "step_size", "r1",
                  "ema_decay"):
        assert getattr(config, field) == getattr(mnist, field), f"{field}: the K schedule and EMA are mnist's"
    assert config.max_iters is not None and config.time_budget_s is not None
    assert "benchmarks/results/fashion" in preset.wall_clock  # measured, and where
    assert (preset.data, preset.size, preset.channels) == ("fashion?split=train", 28, 1)
    # the GPU settings are TrainConfig fields; the selection names data sources of the grammar
    assert preset.config(**preset.extra["gpu"]).precision == "bf16"
    for key in ("seeds", "reference"):
        assert parse_source(preset.extra["selection"][key])[0] in ("photos", "fashion")
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert "  fashion " in listing and "time: about 16 min" in listing


def test_train_preset_fashion_without_the_package_says_what_to_install(tmp_path, capsys):
    missing = tmp_path / "no-fashion-here"
    assert main(["train", "--preset", "fashion", "--out", str(tmp_path / "run"),
                 f"data=fashion?split=train&root={missing}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in err and str(missing) in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def _write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if compress else blob)


def _fashion_folder(folder: Path, n_test: int = 10_000) -> Path:
    """A folder holding Fashion-MNIST-shaped files (zeros) with ``n_test`` test images."""
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((60_000, 28, 28), np.uint8))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(60_000) % 10)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((n_test, 28, 28), np.uint8))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return folder


def test_a_damaged_fashion_file_is_one_dataformaterror_line_naming_it(tmp_path, capsys):
    truncated = _fashion_folder(tmp_path / "truncated")
    images = truncated / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz: not a readable gzip file"):
        load_fashion("train", root=truncated)
    short = _fashion_folder(tmp_path / "short", n_test=12)
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte\.gz: Fashion-MNIST test images are uint8 "
                                              r"\(10000, 28, 28\); the file holds uint8 \(12, 28, 28\)"):
        load_fashion("test", root=short)
    # through `atebm train`: one line, naming the file
    assert main(["train", "--preset", "fashion", "--out", str(tmp_path / "run"),
                 f"data=fashion?split=train&root={truncated}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(images) in err and "not a readable gzip file" in err


# ------------------------------------------------------------------------------------------------ FPR at 80 % TPR
def test_fpr_at_80_percent_tpr_on_hand_built_scores():
    in_scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])      # positives
    out_scores = np.array([0.85, 0.65, 0.4, 0.3])
    # accepting 80 % of the positives needs the threshold 0.6, which accepts 0.85 and 0.65 of the negatives
    assert fpr_at_tpr(in_scores, out_scores, 0.80) == pytest.approx(0.5)
    assert fpr_at_tpr(in_scores, out_scores, 0.60) == pytest.approx(0.25)   # threshold 0.7: 0.85 alone
    assert fpr_at_tpr(in_scores, out_scores, 1.00) == pytest.approx(0.5)    # threshold 0.5: still 0.85, 0.65
    # with the OOD set as positives (negated scores): 80 % of the OOD set is 4 of 4 (threshold -0.85), which
    # flags every in-distribution score below 0.85: four of five
    assert fpr_at_tpr(-out_scores, -in_scores, 0.80) == pytest.approx(0.8)
    assert fpr_at_tpr(in_scores, out_scores - 10.0, 0.80) == 0.0   # separable: nothing accepted
    with pytest.raises(ValueError, match=r"tpr must lie in \(0, 1\]"):
        fpr_at_tpr(in_scores, out_scores, 0.0)


# ------------------------------------------------------------------------------------------------ feature recipe
def test_the_fashion_recipe_is_the_digit_recipe_on_fashion_mnist():
    assert FEATURE_RECIPES["fashion"] is FASHION_RECIPE and FEATURE_RECIPES["digits"] is DIGIT_RECIPE
    assert FASHION_RECIPE["dataset"] == "fashion" and DIGIT_RECIPE["dataset"] == "mnist"
    assert {k: v for k, v in FASHION_RECIPE.items() if k != "dataset"} == \
        {k: v for k, v in DIGIT_RECIPE.items() if k != "dataset"}
    assert feature_module._recipe_tag(FASHION_RECIPE) != feature_module._recipe_tag(DIGIT_RECIPE)
    assert feature_module._recipe_tag() == feature_module._recipe_tag(DIGIT_RECIPE)
    with pytest.raises(ValueError, match="unknown feature recipe 'kmnist'; choose from digits, fashion"):
        recipe_features("kmnist")
    with pytest.raises(ValueError, match=r"missing \['width'\], unknown \['depth'\]"):
        recipe_features({**{k: v for k, v in DIGIT_RECIPE.items() if k != "width"}, "depth": 3})
    with pytest.raises(ValueError, match="feature recipes train on mnist, fashion"):
        recipe_features({**DIGIT_RECIPE, "dataset": "lfw"})


@pytest.mark.slow
def test_a_fashion_recipe_trains_on_fashion_mnist_and_caches_under_its_own_name(monkeypatch, tmp_path):
    _needs_fashion()
    monkeypatch.setenv("ATEBM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(feature_module, "_DIGIT_NET", {})
    tiny = {**FASHION_RECIPE, "width": 4, "feature_dim": 8, "epochs": 1, "n": 300}
    net = recipe_features(tiny)
    assert [p.name for p in tmp_path.iterdir()] == [f"fashion-features-{feature_module._recipe_tag(tiny)}.pt"]
    assert "Fashion-MNIST train split (300 images)" in net.info["network"] and net.info["recipe"] == tiny
    assert net.features(torch.rand(3, 1, 28, 28)).shape == (3, 8)
    feature_module._DIGIT_NET.clear()
    again = recipe_features(tiny)     # from the cache file
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(again.features(x), net.features(x)) and again.info == net.info


# ------------------------------------------------------------------------------------------------ FID Inception
def test_fid_inception_without_the_extra_names_it(monkeypatch):
    monkeypatch.setattr(feature_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install -e "\.\[fid\]"'):
        fid_inception()


def _fake_extra(folder: Path) -> Path:
    """A package folder named like the extra's, holding a TorchScript network that returns its input's channel
    means (so the input transform shows in the features)."""

    class ChannelMeans(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    package = folder / FID_INCEPTION["package"]
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the loader must not import the package')\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(ChannelMeans()).save(str(package / FID_INCEPTION["file"]))
    return package / FID_INCEPTION["file"]


def test_fid_inception_loads_the_extras_file_through_inception_features(monkeypatch, tmp_path):
    weights = _fake_extra(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(FID_INCEPTION, "sha1", hashlib.sha1(weights.read_bytes()).hexdigest())
    net = fid_inception()
    assert isinstance(net, InceptionFeatures) and net.path == weights and net.resize == 299
    black, white = torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28)
    features = net.features(torch.cat([black, white]))
    # grey repeated to RGB, [0, 1] mapped to (255 x - 128) / 128: black -1, white 127/128
    assert torch.allclose(features, torch.tensor([[-1.0] * 3, [127 / 128] * 3]))
    monkeypatch.setitem(FID_INCEPTION, "sha1", "0" * 40)
    with pytest.raises(ValueError, match=r"not the 0{40} of the FID Inception network; reinstall"):
        fid_inception()


def test_fid_inception_of_the_installed_extra_is_the_2048_d_tf_network():
    if importlib.util.find_spec(FID_INCEPTION["package"]) is None:
        pytest.skip('the optional extra fid is not installed (pip install -e ".[fid]")')
    net = fid_inception()
    assert sum(p.numel() for p in net.module.parameters()) == 21_802_784  # conv + BN beta/mean/var, no fc
    features = net.features(torch.rand(2, 1, 28, 28))
    assert features.shape == (2, FID_INCEPTION["feature_dim"]) and (features >= 0).all()


# ------------------------------------------------------------------------------------------------ results README
def test_the_results_readme_quotes_only_verified_published_numbers():
    """The first table of benchmarks/results/fashion/README.md: every published number it prints is a verified number
    of published.json, and no unverified method carries numbers there."""
    import json
    import re

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "fashion"
    published = json.loads((results / "published.json").read_text())
    verified = {m["numbers"]["auroc"] for m in published["methods"] if m["status"].startswith("verified")}
    for method in published["methods"]:
        assert (method["numbers"] is None) == (method["status"] == "not verified"), method["method"]
        for key in ("paper", "where", "url"):
            assert method[key], f"{method['method']}: {key} missing"
    section = (results / "README.md").read_text().split("## Fashion-MNIST (in) vs MNIST (out), clean")[1]
    lines = section.split("\n## ")[0].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[first:]))[2:]  # the first table only
    quoted = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if "(ours)" in cells[0]:  # checked against eval-clean.json by tests/test_results_readmes.py
            continue
        number = re.match(r"\d\.\d+", cells[1])
        if number:
            quoted.append(float(number.group()))
        else:
            assert cells[1] == "not verified", cells
    assert quoted and all(value in verified for value in quoted)
