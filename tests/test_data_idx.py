"""The IDX reader on tiny files written here byte by byte (raw and gzip, every element type), the ``idx:``
source, and Fashion-MNIST read from Debian's ``dataset-fashion-mnist`` package (with the optional OOD suite)."""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import atebm.data as data
from atebm.data import DataFormatError
from atebm.data.fashion import FASHION_MNIST_DIR, fashion_split_indices

# element-type byte of the IDX format and the big-endian type it stands for, written out here independently
TYPE_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(TYPE_CODES[code]).tobytes()


def _write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> Path:
    blob = _idx_bytes(array, code)
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)
    return path


def _digits(count: int, rows: int = 5, columns: int = 4) -> np.ndarray:
    """uint8 images with a marker at (0, 1) and the image number in pixel (rows-1, columns-1)."""
    images = np.zeros((count, rows, columns), np.uint8)
    images[:, 0, 1] = 255
    images[:, -1, -1] = np.arange(count) * 7
    return images


# ------------------------------------------------------------------------------------------ read_idx_array
@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("code", sorted(TYPE_CODES))
def test_every_element_type_reads_back_exactly(tmp_path, code, compressed):
    rng = np.random.default_rng(code)
    kind = np.dtype(TYPE_CODES[code])
    if kind.kind == "f":
        values = rng.normal(size=(3, 2, 5)) * 1e3
        values[0, 0, :3] = [np.inf, -0.0, np.finfo(kind).max]  # read_idx_array keeps whatever is stored
    else:
        info = np.iinfo(kind)
        values = rng.integers(info.min, info.max, size=(3, 2, 5), endpoint=True)
        values[0, 0, :2] = [info.min, info.max]
    expected = values.astype(kind.newbyteorder("="))
    path = _write_idx(tmp_path / ("a.idx.gz" if compressed else "a.idx"), expected, code)
    got = data.read_idx_array(path)
    assert got.dtype == expected.dtype and got.dtype.isnative and got.shape == (3, 2, 5)
    assert np.array_equal(got, expected, equal_nan=True) and got.flags.writeable


def test_one_and_four_dimensional_arrays(tmp_path):
    labels = np.array([3, 0, 255, 7], np.uint8)
    assert np.array_equal(data.read_idx_array(_write_idx(tmp_path / "l.idx", labels)), labels)
    cube = np.arange(2 * 3 * 4 * 1, dtype=np.int32).reshape(2, 3, 4, 1)
    assert np.array_equal(data.read_idx_array(_write_idx(tmp_path / "c.idx.gz", cube, 0x0C)), cube)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    images = _digits(3)
    (tmp_path / "plain-name").write_bytes(gzip.compress(_idx_bytes(images, 0x08)))
    (tmp_path / "raw.gz").write_bytes(_idx_bytes(images, 0x08))
    assert np.array_equal(data.read_idx_array(tmp_path / "plain-name"), images)
    assert np.array_equal(data.read_idx_array(tmp_path / "raw.gz"), images)


def test_malformed_idx_files(tmp_path):
    good = _idx_bytes(_digits(2), 0x08)
    cases = {
        "short": (good[:3], "too short for an IDX header"),
        "magic": (b"\x01" + good[1:], "not an IDX file"),
        "type": (good[:2] + b"\x07" + good[3:], "unknown IDX element type 0x07"),
        "nodims": (b"\x00\x00\x08\x00", "1 to 32 dimensions"),
        "header": (good[:10], "truncated header"),
        "truncated": (good[:-1], "truncated: the header declares"),
        "trailing": (good + b"\x00", "trailing bytes"),
    }
    for name, (blob, message) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataFormatError, match=message) as caught:
            data.read_idx_array(tmp_path / name)
        assert name in str(caught.value)  # the message names the file
    squeezed = gzip.compress(good)
    (tmp_path / "cut.gz").write_bytes(squeezed[:-6])
    with pytest.raises(DataFormatError, match=r"cut.gz: not a readable gzip file"):
        data.read_idx_array(tmp_path / "cut.gz")
    (tmp_path / "long.gz").write_bytes(gzip.compress(good + bytes(50)))
    with pytest.raises(DataFormatError, match="more data than the IDX header declares"):
        data.read_idx_array(tmp_path / "long.gz")
    with pytest.raises(FileNotFoundError, match="nothing.idx"):
        data.read_idx_array(tmp_path / "nothing.idx")


# ------------------------------------------------------------------------------------------------ read_idx
def test_read_idx_images_with_their_labels(tmp_path):
    images = _digits(6)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([5, 0, 4, 1, 9, 2], np.uint8))  # raw beside .gz
    got = data.read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    assert got.x.shape == (6, 1, 5, 4) and got.x.dtype == torch.float32
    assert torch.equal(got.x[:, 0], torch.from_numpy(images).float() / 255.0)
    assert got.y.tolist() == [5, 0, 4, 1, 9, 2] and got.y.dtype == torch.int64
    assert got.meta["labels"].endswith("train-labels-idx1-ubyte") and got.name == "idx:train-images-idx3-ubyte.gz"
    assert data.read_idx(tmp_path / "train-images-idx3-ubyte.gz", labels=None).y is None
    _write_idx(tmp_path / "other-labels", np.arange(6, dtype=np.int32)[::-1], 0x0C)
    assert data.read_idx(tmp_path / "train-images-idx3-ubyte.gz", labels=tmp_path / "other-labels").y.tolist() == [
        5, 4, 3, 2, 1, 0]
    flipped = data.read_idx(tmp_path / "train-images-idx3-ubyte.gz", transpose=True)
    assert flipped.x.shape == (6, 1, 4, 5) and torch.equal(flipped.x[:, 0, 1, 0], got.x[:, 0, 0, 1])
    big = data.read_idx(tmp_path / "train-images-idx3-ubyte.gz", size=10, channels=3)
    assert big.x.shape == (6, 3, 10, 10) and torch.equal(big.x[:, 0], big.x[:, 2])
    unlabelled = _write_idx(tmp_path / "extra-images-idx3-ubyte", images)
    assert data.read_idx(unlabelled).y is None  # no matching labels file: images only


def test_read_idx_float_images_and_content_errors(tmp_path):
    floats = np.linspace(0, 1, 2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    path = _write_idx(tmp_path / "f-images-idx3-ubyte", floats, 0x0D)
    assert torch.equal(data.read_idx(path).x[:, 0], torch.from_numpy(floats))
    for name, array, code, message in (
            ("nan", np.full((1, 2, 2), np.nan, np.float32), 0x0D, "non-finite values"),
            ("big", np.full((1, 2, 2), 3.0), 0x0E, r"values must lie in \[0, 1\]"),
            ("short", np.zeros((2, 2, 2), np.int16), 0x0B, "images must be uint8"),
            ("flat", np.zeros(4, np.uint8), 0x08, "must have 3 dimensions")):
        with pytest.raises(DataFormatError, match=message):
            data.read_idx(_write_idx(tmp_path / f"{name}-images", array, code), labels=None)
    _write_idx(tmp_path / "n-images-idx3-ubyte", _digits(3))
    _write_idx(tmp_path / "n-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(DataFormatError, match=r"n-labels-idx1-ubyte: must hold one integer label per image \(3\)"):
        data.read_idx(tmp_path / "n-images-idx3-ubyte")
    _write_idx(tmp_path / "n-labels-idx1-ubyte", np.array([0, -1, 2], np.int8), 0x09)
    with pytest.raises(DataFormatError, match="labels must be non-negative"):
        data.read_idx(tmp_path / "n-images-idx3-ubyte")
    with pytest.raises(FileNotFoundError, match="nolabels"):
        data.read_idx(tmp_path / "n-images-idx3-ubyte", labels=tmp_path / "nolabels")


def test_idx_folder_splits_and_names(tmp_path):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    _write_idx(mnist / "train-images-idx3-ubyte.gz", _digits(4))
    _write_idx(mnist / "train-labels-idx1-ubyte.gz", np.array([1, 2, 3, 4], np.uint8))
    _write_idx(mnist / "t10k-images-idx3-ubyte.gz", _digits(2))
    _write_idx(mnist / "t10k-labels-idx1-ubyte.gz", np.array([8, 9], np.uint8))
    assert data.read_idx(mnist).y.tolist() == [1, 2, 3, 4]  # split defaults to train
    assert data.read_idx(mnist, split="test").y.tolist() == [8, 9]
    emnist = tmp_path / "emnist"  # EMNIST's prefixed names, "test" for the test split
    emnist.mkdir()
    _write_idx(emnist / "emnist-letters-test-images-idx3-ubyte", _digits(3))
    _write_idx(emnist / "emnist-letters-test-labels-idx1-ubyte.gz", np.array([1, 26, 3], np.uint8))
    assert data.read_idx(emnist, split="test").y.tolist() == [1, 26, 3]
    kaggle = tmp_path / "kaggle"  # "train-images.idx3-ubyte" with a dot
    kaggle.mkdir()
    _write_idx(kaggle / "train-images.idx3-ubyte", _digits(2))
    _write_idx(kaggle / "train-labels.idx1-ubyte", np.array([6, 7], np.uint8))
    assert data.read_idx(kaggle).y.tolist() == [6, 7]
    _write_idx(emnist / "emnist-digits-test-images-idx3-ubyte.gz", _digits(1))
    with pytest.raises(ValueError, match="several test image files"):
        data.read_idx(emnist, split="test")
    with pytest.raises(FileNotFoundError, match="no train images in IDX format"):
        data.read_idx(emnist)
    with pytest.raises(ValueError, match="has splits train, test"):
        data.read_idx(mnist, split="val")
    with pytest.raises(ValueError, match="already one file"):
        data.read_idx(mnist / "t10k-images-idx3-ubyte.gz", split="test")
    with pytest.raises(FileNotFoundError, match="IDX data not found"):
        data.read_idx(tmp_path / "absent")


def test_idx_source_strings(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", _digits(5))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", _digits(3))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([7, 8, 9], np.uint8))
    assert "idx" in data.FILE_KINDS
    assert data.parse_source(f"idx:{tmp_path}?split=test") == ("idx", str(tmp_path), {"split": "test"})
    test = data.open_source(f"idx:{tmp_path}?split=test&size=8&channels=3")
    assert test.x.shape == (3, 3, 8, 8) and test.y.tolist() == [7, 8, 9]
    file = data.open_source(f"idx:{tmp_path / 'train-images-idx3-ubyte.gz'}?n=3&seed=1&labels=none")
    assert len(file) == 3 and file.y is None
    assert sorted(data.open_source("idx", tmp_path / "train-images-idx3-ubyte.gz", n=5).y.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="does not take crop"):
        data.open_source(f"idx:{tmp_path}?crop=center")


# ---------------------------------------------------------------------------------- Fashion-MNIST (Debian)
@pytest.fixture(scope="module")
def fashion_files() -> Path:
    """The Debian package's folder; missing files fail the test in CI (CI=1) and skip it elsewhere."""
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    missing = [n for n in names if not (FASHION_MNIST_DIR / n).is_file()]
    if missing:
        message = (f"Fashion-MNIST files missing from {FASHION_MNIST_DIR} ({', '.join(missing)}); install them "
                   "with `apt-get install dataset-fashion-mnist`")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return FASHION_MNIST_DIR


def _plain_idx(path: Path, header: int) -> np.ndarray:
    """The file's bytes after its header, read without atebm (the reference for the reader)."""
    return np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8, offset=header).copy()


def test_fashion_files_match_a_plain_reading(fashion_files):
    train = data.read_idx(fashion_files / "train-images-idx3-ubyte.gz")
    assert train.x.shape == (60000, 1, 28, 28)
    pixels = _plain_idx(fashion_files / "train-images-idx3-ubyte.gz", 16).reshape(60000, 28, 28)
    assert torch.equal(train.x[:, 0], torch.from_numpy(pixels).float() / 255.0)
    labels = _plain_idx(fashion_files / "train-labels-idx1-ubyte.gz", 8)
    assert torch.equal(train.y, torch.from_numpy(labels.astype(np.int64)))
    assert torch.equal(train.y.bincount(), torch.full((10,), 6000))


def test_fashion_splits(fashion_files):
    sizes = {split: len(data.load_dataset("fashion", split=split, seed=0)) for split in ("train", "val", "test")}
    assert sizes == {"train": 55000, "val": 5000, "test": 10000}
    val = data.load_dataset("fashion", split="val")
    assert torch.equal(val.y.bincount(), torch.full((10,), 500))  # stratified
    indices = fashion_split_indices(str(fashion_files))
    assert len(np.intersect1d(indices["train"], indices["val"])) == 0
    assert np.array_equal(np.union1d(indices["train"], indices["val"]), np.arange(60000))
    test = data.load_dataset("fashion", split="test", n=50, seed=3)
    again = data.open_source("fashion?split=test&n=50&seed=3")
    assert torch.equal(test.x, again.x) and torch.equal(test.y, again.y)
    assert not torch.equal(test.x, data.load_dataset("fashion", split="test", n=50, seed=4).x)
    colour = data.load_dataset("fashion", split="test", n=4, size=32, channels=3, seed=3)
    assert colour.x.shape == (4, 3, 32, 32) and torch.equal(colour.y, test.y[:4])
    plain = _plain_idx(fashion_files / "t10k-images-idx3-ubyte.gz", 16).reshape(10000, 784)
    shuffled = (data.load_dataset("fashion", split="test", seed=3).x.reshape(10000, 784) * 255).round().byte()
    assert sorted(map(bytes, shuffled.numpy())) == sorted(map(bytes, plain))  # the same images, reordered


def test_fashion_missing_says_how_to_install(tmp_path):
    assert data.DATASETS["fashion"] == ("train", "val", "test") and "fashion" not in data.SOURCES  # not embedded
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*idx:PATH"):
        data.load_fashion("test", root=tmp_path)
    with pytest.raises(ValueError, match="takes no path"):
        data.parse_source("fashion:/data/fashion")
    with pytest.raises(ValueError, match="has splits train, val, test"):
        data.load_dataset("fashion", split="valid")


def test_fashion_is_an_optional_ood_suite(fashion_files):
    from atebm.ood.suites import ALL_SUITES, EMBEDDED_SUITES, OPTIONAL_SUITES, embedded_suite, suite_descriptions

    assert "fashion" in OPTIONAL_SUITES and "fashion" in ALL_SUITES and "fashion" not in EMBEDDED_SUITES
    assert "fashion" in suite_descriptions()
    x = embedded_suite("fashion", 12, size=32, channels=3, seed=1)
    # pixels in [0, 1] that use the range: black backgrounds and bright garments (a missing or doubled /255 fails)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and 0.9 < float(x.max()) <= 1.0
    assert torch.equal(x, embedded_suite("fashion", 12, size=32, channels=3, seed=1))
    assert len(embedded_suite("fashion", 20000, seed=1)) == 10000  # the whole test split, no more
