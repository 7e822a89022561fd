"""File readers on tiny files written here in the real formats: CIFAR-10/100 python batches, image folders,
NPZ/NPY, the 80M Tiny Images binary; and their errors on missing or malformed files."""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import atebm.data as data


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # these tensors are tiny; thread start-up costs more than the work
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ CIFAR
def _cifar_images(count: int, offset: int) -> np.ndarray:
    """(count, 32, 32, 3) uint8 upright RGB images with an orientation marker and an id in the blue plane."""
    images = np.zeros((count, 32, 32, 3), np.uint8)
    images[:, 0, 5, 0] = 255  # red: row 0, column 5
    images[:, 7, 0, 1] = 255  # green: row 7, column 0
    images[:, :, :, 2] = (offset + np.arange(count) * 10)[:, None, None]  # blue: which image
    return images


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """The CIFAR layout: 1024 red values, 1024 green, 1024 blue, each plane row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _dump(path: Path, payload: dict, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(payload, protocol=protocol))


@pytest.fixture
def cifar10(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for k, offset in ((1, 0), (2, 100)):
        _dump(folder / f"data_batch_{k}", {b"batch_label": b"training batch", b"labels": [k, k + 2, 9, 0],
                                           b"data": _cifar_rows(_cifar_images(4, offset)), b"filenames": []})
    _dump(folder / "test_batch", {b"labels": [3, 4, 5], b"data": _cifar_rows(_cifar_images(3, 200))}, protocol=4)
    return folder


def test_cifar10_folder(cifar10):
    train = data.read_cifar(cifar10)
    assert train.x.shape == (8, 3, 32, 32) and train.x.dtype == torch.float32
    assert train.y.tolist() == [1, 3, 9, 0, 2, 4, 9, 0] and train.y.dtype == torch.int64
    assert torch.all(train.x[:, 0, 0, 5] == 1) and torch.all(train.x[:, 1, 7, 0] == 1)  # upright, RGB order
    assert float(train.x[:, 0].sum()) == 8 and float(train.x[:, 1].sum()) == 8
    ids = (train.x[:, 2, 10, 10] * 255).round().long().tolist()
    assert ids == [0, 10, 20, 30, 100, 110, 120, 130]  # batch 1 then batch 2, file order
    test = data.read_cifar(cifar10.parent, split="test", size=16, channels=1)  # the parent folder works too
    assert test.x.shape == (3, 1, 16, 16) and test.y.tolist() == [3, 4, 5]
    assert test.name == "cifar10/test"


def test_cifar_numpy1_pickles(tmp_path):
    """Real CIFAR batches were pickled by NumPy 1.x, naming numpy.core.multiarray (moved in NumPy 2)."""
    blob = pickle.dumps({b"labels": [7], b"data": _cifar_rows(_cifar_images(1, 0))}, protocol=2)
    blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in blob
    (tmp_path / "data_batch_1").write_bytes(blob)
    images = data.read_cifar(tmp_path)
    assert images.y.tolist() == [7] and float(images.x[0, 0, 0, 5]) == 1.0


def test_cifar10_tar_archive(cifar10, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar10, arcname="cifar-10-batches-py")
    from_tar = data.read_cifar(archive)
    assert torch.equal(from_tar.x, data.read_cifar(cifar10).x)


def test_cifar100(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, count in (("train", 5), ("test", 2)):
        _dump(folder / split, {b"fine_labels": list(range(95, 95 + count)), b"coarse_labels": [19] * count,
                               b"data": _cifar_rows(_cifar_images(count, 0))})
    train = data.read_cifar(folder)
    assert train.x.shape == (5, 3, 32, 32) and train.y.tolist() == [95, 96, 97, 98, 99]
    assert data.read_cifar(folder, split="test", labels="coarse").y.tolist() == [19, 19]
    assert data.read_cifar(folder).name == "cifar100/train"


def test_cifar_errors(tmp_path, cifar10):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.read_cifar(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR batches"):
        data.read_cifar(empty)
    gap = tmp_path / "gap"
    gap.mkdir()
    (gap / "data_batch_1").write_bytes((cifar10 / "data_batch_1").read_bytes())
    (gap / "data_batch_3").write_bytes((cifar10 / "data_batch_2").read_bytes())
    with pytest.raises(FileNotFoundError, match="data_batch_2 is missing"):
        data.read_cifar(gap)
    blob = (cifar10 / "data_batch_2").read_bytes()
    (cifar10 / "data_batch_2").write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(ValueError, match=r"data_batch_2: not a CIFAR python batch"):
        data.read_cifar(cifar10)
    _dump(cifar10 / "data_batch_2", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]})
    with pytest.raises(ValueError, match=r"data_batch_2: 2 images but 1 labels"):
        data.read_cifar(cifar10)
    _dump(cifar10 / "data_batch_2", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [1, 2]})
    with pytest.raises(ValueError, match=r"data_batch_2: 'data' must be uint8 of shape \(N, 3072\)"):
        data.read_cifar(cifar10)
    _dump(cifar10 / "data_batch_2", {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [1]})
    with pytest.raises(ValueError, match="no 'labels' entry"):
        data.read_cifar(cifar10)
    _dump(cifar10 / "data_batch_2", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]})
    with pytest.raises(ValueError, match=r"labels must lie in 0..9"):
        data.read_cifar(cifar10)


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/atebm-should-not-exist"),))


def test_cifar_refuses_code_in_pickles(tmp_path):
    marker = Path("/tmp/atebm-should-not-exist")
    marker.unlink(missing_ok=True)
    _dump(tmp_path / "test_batch", {b"data": _Exploit(), b"labels": []})
    with pytest.raises(ValueError, match="refusing to load"):
        data.read_cifar(tmp_path, split="test")
    assert not marker.exists()


# ----------------------------------------------------------------------------------------- image folders
def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_classes(tmp_path):
    red = np.zeros((12, 12, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((20, 20, 3), np.uint8)
    blue[..., 2] = 255
    _png(tmp_path / "zebra" / "a.png", blue)
    _png(tmp_path / "zebra" / "nested" / "b.png", blue)
    _png(tmp_path / "ant" / "c.png", red)
    Image.fromarray(red).save(tmp_path / "ant" / "d.jpg", quality=95)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    _png(tmp_path / ".hidden" / "e.png", red)
    images = data.read_image_folder(tmp_path, size=8, channels=3)
    assert images.x.shape == (4, 3, 8, 8) and images.y.tolist() == [0, 0, 1, 1]
    assert images.meta["classes"] == ["ant", "zebra"]
    assert torch.allclose(images.x[:2].mean((2, 3)), torch.tensor([1.0, 0.0, 0.0]).expand(2, 3), atol=0.02)
    assert torch.allclose(images.x[2:].mean((2, 3)), torch.tensor([0.0, 0.0, 1.0]).expand(2, 3), atol=0.02)
    grey = data.read_image_folder(tmp_path, size=8, channels=1)
    assert grey.x.shape == (4, 1, 8, 8)
    assert float(grey.x[0].mean()) == pytest.approx(0.299, abs=0.01)  # luma of pure red
    lazy = data.ImageFolder(tmp_path, size=8)
    assert len(lazy) == 4 and torch.equal(lazy.get_batch(torch.tensor([3, 0])), images.x[[3, 0]])
    subset = data.read_image_folder(tmp_path, size=8, n=2, seed=1)
    assert len(subset) == 2 and subset.x.shape == (2, 3, 8, 8)


def test_image_folder_flat_and_crop(tmp_path):
    half = np.zeros((20, 40), np.uint8)
    half[:, 20:] = 255  # 40 wide, 20 high: left half black, right half white
    _png(tmp_path / "wide.png", half)
    centre = data.read_image_folder(tmp_path, size=10, channels=1)
    assert centre.y is None and centre.x.shape == (1, 1, 10, 10)
    assert float(centre.x[0, 0, :, :4].max()) < 0.05 and float(centre.x[0, 0, :, 6:].min()) > 0.95  # centre kept
    stretched = data.read_image_folder(tmp_path, size=10, channels=1, crop="stretch")
    assert float(stretched.x[0, 0, :, :4].max()) < 0.05 and float(stretched.x[0, 0, :, 6:].min()) > 0.95
    assert data.read_image_folder(tmp_path, size=(10, 20), channels=1).x.shape == (1, 1, 10, 20)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        data.read_image_folder(tmp_path / "missing", size=8)
    with pytest.raises(ValueError, match="no image files"):
        data.read_image_folder(tmp_path, size=8)
    _png(tmp_path / "cls" / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "loose.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="loose.png"):
        data.read_image_folder(tmp_path, size=8)
    broken = tmp_path / "broken"
    _png(broken / "good.png", np.zeros((4, 4), np.uint8))
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG body")
    with pytest.raises(ValueError, match=r"bad\.png: cannot be read as an image"):
        data.read_image_folder(broken, size=8)
    with pytest.raises(NotADirectoryError):
        data.read_image_folder(broken / "good.png", size=8)


# -------------------------------------------------------------------------------------------- NPZ / NPY
def test_read_array_npz_npy(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(5, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=nhwc, y=np.arange(5))
    images = data.read_array(tmp_path / "a.npz")
    assert images.x.shape == (5, 3, 6, 6) and images.y.tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(images.x, torch.from_numpy(nhwc.transpose(0, 3, 1, 2) / 255.0).float())
    small = data.read_array(tmp_path / "a.npz", size=3, channels=1)
    assert small.x.shape == (5, 1, 3, 3)
    nchw = rng.random((4, 1, 5, 5)).astype(np.float32)
    np.save(tmp_path / "b.npy", nchw)
    loaded = data.read_array(tmp_path / "b.npy", channels=3)
    assert loaded.y is None and torch.equal(loaded.x[:, 2:], torch.from_numpy(nchw))


def test_read_array_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.npz"):
        data.read_array(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="bad.npz"):
        data.read_array(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"other.npz has no array 'x'"):
        data.read_array(tmp_path / "other.npz")
    np.savez(tmp_path / "labels.npz", x=np.zeros((2, 1, 4, 4), np.float32), y=np.arange(3))
    with pytest.raises(ValueError, match="one integer label per image"):
        data.read_array(tmp_path / "labels.npz")
    np.save(tmp_path / "range.npy", np.full((2, 1, 4, 4), 2.0, np.float32))
    with pytest.raises(ValueError, match=r"range.npy: values must lie in \[0, 1\]"):
        data.read_array(tmp_path / "range.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="expected an .npz or .npy"):
        data.read_array(tmp_path / "x.csv")


# --------------------------------------------------------------------------------------------- Tiny Images
def _tiny_images(count: int) -> np.ndarray:
    """Upright (count, 32, 32, 3) uint8 images: a red bar along the top row's left part, a green pixel at row 30,
    column 1, the record number in blue."""
    images = np.zeros((count, 32, 32, 3), np.uint8)
    images[:, 0, :8, 0] = 255
    images[:, 30, 1, 1] = 255
    images[:, :, :, 2] = np.arange(count)[:, None, None] * 20
    return images


def _write_tiny(path: Path, images: np.ndarray) -> None:
    # the MATLAB layout of tiny_images.bin: each 32x32x3 array flattened column-major
    path.write_bytes(b"".join(image.reshape(-1, order="F").tobytes() for image in images))


def test_tiny_images_layout_and_exclusion(tmp_path):
    images = _tiny_images(10)
    _write_tiny(tmp_path / "tiny_images.bin", images)
    tiny = data.TinyImages(tmp_path / "tiny_images.bin")
    assert len(tiny) == 10
    batch = tiny.get_batch(torch.arange(10))
    assert batch.shape == (10, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.equal(batch, torch.from_numpy(images.transpose(0, 3, 1, 2) / 255.0).float())  # upright
    assert torch.all(batch[:, 0, 0, :8] == 1) and torch.all(batch[:, 1, 30, 1] == 1)
    (tmp_path / "exclude.txt").write_text("4\n8\n\n4\n")  # 1-based, like 80mn_cifar_idxs.txt; a duplicate
    excluded = data.TinyImages(tmp_path / "tiny_images.bin", exclusion=tmp_path / "exclude.txt", exclusion_base=1)
    assert len(excluded) == 8
    kept = [0, 1, 2, 4, 5, 6, 8, 9]
    ids = (excluded.get_batch(torch.tensor([7, 0, 3, 5, 3]))[:, 2, 0, 0] * 255 / 20).round().long().tolist()
    assert ids == [kept[7], kept[0], kept[3], kept[5], kept[3]]
    np.save(tmp_path / "exclude.npy", np.array([0, 9]))
    zero_based = data.TinyImages(tmp_path / "tiny_images.bin", exclusion=tmp_path / "exclude.npy", size=16,
                                 channels=1)
    assert len(zero_based) == 8 and zero_based.record_index([0, 7]).tolist() == [1, 8]
    assert zero_based.get_batch([0, 1]).shape == (2, 1, 16, 16)
    subset = data.TinyImages(tmp_path / "tiny_images.bin", exclusion=[0, 9], n=3, seed=0)
    assert len(subset) == 3 and set(subset.record_index([0, 1, 2]).tolist()) <= set(range(1, 9))
    loaded = subset.load()
    assert loaded.x.shape == (3, 3, 32, 32)
    restored = pickle.loads(pickle.dumps(excluded))  # DataLoader workers pickle their dataset
    assert torch.equal(restored.get_batch([1, 2]), excluded.get_batch([1, 2]))


def test_tiny_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tiny_images.bin"):
        data.TinyImages(tmp_path / "tiny_images.bin")
    (tmp_path / "short.bin").write_bytes(bytes(3072 * 2 + 100))
    with pytest.raises(ValueError, match=r"short.bin: size 6244 bytes is not a positive multiple of 3072"):
        data.TinyImages(tmp_path / "short.bin")
    _write_tiny(tmp_path / "ok.bin", _tiny_images(3))
    with pytest.raises(ValueError, match=r"indices must lie in 0..2"):
        data.TinyImages(tmp_path / "ok.bin", exclusion=[3])
    (tmp_path / "words.txt").write_text("1\ntwo\n")
    with pytest.raises(ValueError, match=r"words.txt: expected one integer index per line, found 'two'"):
        data.TinyImages(tmp_path / "ok.bin", exclusion=tmp_path / "words.txt")
    with pytest.raises(FileNotFoundError, match="nolist.txt"):
        data.TinyImages(tmp_path / "ok.bin", exclusion=tmp_path / "nolist.txt")
    with pytest.raises(IndexError, match="0..2"):
        data.TinyImages(tmp_path / "ok.bin").get_batch([3])


# --------------------------------------------------------------------------------------------- open_source
def test_open_source_strings(tmp_path, cifar10):
    test = data.open_source(f"cifar10:{cifar10}?split=test&size=16")
    assert isinstance(test, data.ImageSet) and test.x.shape == (3, 3, 16, 16)
    assert len(data.open_source("cifar", str(cifar10), n=5, seed=2)) == 5
    with pytest.raises(ValueError, match="holds cifar10 batches, not cifar100"):
        data.open_source(f"cifar100:{cifar10}")
    _png(tmp_path / "pics" / "a.png", np.zeros((9, 9, 3), np.uint8))
    folder = data.open_source(f"folder:{tmp_path / 'pics'}?size=4&channels=1")
    assert isinstance(folder, data.ImageFolder) and folder.load().x.shape == (1, 1, 4, 4)
    np.savez(tmp_path / "s.npz", x=np.zeros((6, 1, 4, 4), np.float32))
    assert data.open_source(f"npz:{tmp_path / 's.npz'}?n=4").x.shape == (4, 1, 4, 4)
    with pytest.raises(ValueError, match="expects a .npy file"):
        data.open_source(f"npy:{tmp_path / 's.npz'}")
    _write_tiny(tmp_path / "t.bin", _tiny_images(5))
    (tmp_path / "ex.txt").write_text("1\n")
    tiny = data.open_source(f"tinyimages:{tmp_path / 't.bin'}?exclusion={tmp_path / 'ex.txt'}&exclusion_base=1")
    assert isinstance(tiny, data.TinyImages) and len(tiny) == 4 and tiny.record_index([0]).tolist() == [1]
    mnist = data.open_source("mnist?split=val&n=7&seed=3")
    assert torch.equal(mnist.x, data.load_dataset("mnist", split="val", n=7, seed=3).x)
    for source in (test, folder, tiny, mnist):  # the common protocol
        assert source.get_batch(torch.tensor([0])).shape[0] == 1 and len(source.load(n=1)) == 1


def test_parse_source_grammar():
    assert data.parse_source("photos?n=10&seed=2&size=32") == ("photos", None, {"n": 10, "seed": 2, "size": 32})
    assert data.parse_source("folder:/a/b?c/d") == ("folder", "/a/b?c/d", {})
    assert data.parse_source("npz:C:/x.npz?key=img&flag=true&eps=0.5&v=none") == (
        "npz", "C:/x.npz", {"key": "img", "flag": True, "eps": 0.5, "v": None})
    for bad, message in (("", "non-empty"), ("svhn", "unknown data source"), ("folder", "needs a path"),
                         ("mnist:/x", "takes no path"), ("mnist?n=1&n=2", "given twice")):
        with pytest.raises(ValueError, match=message):
            data.parse_source(bad)
    with pytest.raises(ValueError, match="does not take crop"):
        data.open_source("mnist?crop=center")
    with pytest.raises(ValueError, match="give it once"):
        data.open_source("mnist?n=5", n=6)


def test_image_set_checks():
    with pytest.raises(ValueError, match="NCHW"):
        data.ImageSet(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="float32"):
        data.ImageSet(torch.zeros(1, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="one label per image"):
        data.ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    images = data.ImageSet(torch.rand(5, 1, 4, 4), torch.arange(5), "r")
    assert torch.equal(images.get_batch([4, 1]), images.x[[4, 1]])
    assert "r" in repr(images) and len(images.load(n=3)) == 3


# ------------------------------------------------------------------------------------ format errors, values
def test_bad_values_in_arrays_are_named(tmp_path):
    cases = {
        "nan.npy": (np.full((2, 1, 3, 3), np.nan, np.float32), r"nan.npy: contains 18 non-finite values \(NaN\)"),
        "inf.npy": (np.array([[[[0.5, np.inf], [-np.inf, 0.0]]]]), r"non-finite values \(inf\)"),
        "high.npy": (np.full((1, 3, 2, 2), 1.5, np.float32), r"values must lie in \[0, 1\].*found \[1.5, 1.5\]"),
        "low.npy": (np.full((1, 2, 2), -0.25), r"found \[-0.25, -0.25\]"),
        "int.npy": (np.zeros((1, 1, 2, 2), np.int32), "images must be uint8 .* got dtype int32"),
        "channels.npy": (np.zeros((1, 2, 5, 5), np.float32), "1 or 3 channels"),
        "empty.npy": (np.zeros((0, 1, 4, 4), np.float32), "holds no images"),
        "big.npy": (np.full((1, 1, 2, 2), 1e300), r"found \[1e\+300, 1e\+300\]"),  # not reported as inf
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(data.DataFormatError, match=message):
            data.read_array(tmp_path / name)
    np.savez(tmp_path / "nan.npz", x=np.full((1, 1, 2, 2), np.nan, np.float32))
    with pytest.raises(data.DataFormatError, match=r"nan.npz \(array 'x'\): contains 4 non-finite values"):
        data.read_array(tmp_path / "nan.npz")
    np.savez(tmp_path / "neg.npz", x=np.zeros((2, 1, 2, 2), np.float32), y=np.array([0, -3]))
    with pytest.raises(data.DataFormatError, match="labels must be non-negative; found -3"):
        data.read_array(tmp_path / "neg.npz")
    np.save(tmp_path / "edge.npy", np.array([[[[1 + 5e-5, -5e-5]]]], np.float32))  # rounding noise is clipped
    assert data.read_array(tmp_path / "edge.npy").x.flatten().tolist() == [1.0, 0.0]


def test_npy_parsing_refuses_pickles_and_truncation(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(data.DataFormatError, match="objects.npy: holds object values; only numeric arrays"):
        data.read_npy(tmp_path / "objects.npy")
    np.save(tmp_path / "full.npy", np.zeros((4, 1, 8, 8), np.float32))
    blob = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(blob[:-10])
    with pytest.raises(data.DataFormatError, match=r"cut.npy: truncated: the header declares a float32 array of "
                                                   r"shape \(4, 1, 8, 8\) \(1024 bytes\) but only 1014"):
        data.read_npy(tmp_path / "cut.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(data.DataFormatError, match="text.npy: not an NPY array"):
        data.read_array(tmp_path / "text.npy")
    fortran = np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 24)
    np.save(tmp_path / "fortran.npy", fortran)
    assert np.array_equal(data.read_npy(tmp_path / "fortran.npy"), fortran)
    np.savez_compressed(tmp_path / "z.npz", x=fortran, y=np.arange(2))
    assert np.array_equal(data.read_npy(tmp_path / "z.npz", "x"), fortran)
    assert data.read_array(tmp_path / "z.npz").y.tolist() == [0, 1]


def test_format_errors_are_data_format_errors(tmp_path, cifar10):
    blob = (cifar10 / "test_batch").read_bytes()
    (cifar10 / "test_batch").write_bytes(blob[:100])
    with pytest.raises(data.DataFormatError, match="test_batch: not a CIFAR python batch"):
        data.read_cifar(cifar10, split="test")
    (tmp_path / "fake.tar.gz").write_bytes(b"\x1f\x8b" + bytes(30))
    with pytest.raises(data.DataFormatError, match=r"fake.tar.gz: neither a folder nor a readable tar archive"):
        data.read_cifar(tmp_path / "fake.tar.gz")
    (tmp_path / "t.bin").write_bytes(bytes(3000))
    with pytest.raises(data.DataFormatError, match="t.bin: size 3000 bytes"):
        data.TinyImages(tmp_path / "t.bin")
    _dump(cifar10 / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1.5, 2]})
    with pytest.raises(data.DataFormatError, match="'labels' must be a list of integer labels"):
        data.read_cifar(cifar10, split="test")


def test_image_folder_native_size_and_suffixes(tmp_path):
    for k, suffix in enumerate(data.IMAGE_SUFFIXES):
        image = Image.fromarray(np.full((6, 9), 20 * k, np.uint8))
        image.save(tmp_path / f"img{k:02d}{suffix}", **({"quality": 100} if suffix in (".jpg", ".jpeg") else {}))
    native = data.read_image_folder(tmp_path, size=None, channels=1)
    assert native.x.shape == (len(data.IMAGE_SUFFIXES), 1, 6, 9)  # every listed suffix is read
    assert torch.allclose(native.x.mean((1, 2, 3)) * 255, 20 * torch.arange(len(data.IMAGE_SUFFIXES)).float(),
                          atol=1.0)
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(tmp_path / "zz.png")
    with pytest.raises(data.DataFormatError, match=r"images differ in size \(img00.png is 6x9, zz.png is 7x9\)"):
        data.read_image_folder(tmp_path, size=None)
    assert data.read_image_folder(tmp_path, size=5).x.shape == (len(data.IMAGE_SUFFIXES) + 1, 3, 5, 5)


def test_read_image_one_file(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 1] = 255
    _png(tmp_path / "green.png", rgb)
    colour = data.read_image(tmp_path / "green.png")
    assert colour.shape == (3, 6, 8) and colour.dtype == np.float32 and colour[1].min() == 1 and colour[0].max() == 0
    grey = data.read_image(tmp_path / "green.png", channels=1, size=(3, 4), crop="stretch")
    assert grey.shape == (1, 3, 4) and np.allclose(grey, 0.587, atol=0.01)  # luma of pure green
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(data.DataFormatError, match=r"broken.png: cannot be read as an image"):
        data.read_image(tmp_path / "broken.png")
    with pytest.raises(FileNotFoundError):
        data.read_image(tmp_path / "absent.png")


def test_read_source_resolves_paths_and_source_strings_alike(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((6, 1, 10, 10)).astype(np.float32)
    np.savez(tmp_path / "set.npz", x=images)
    by_path = data.read_source(tmp_path / "set.npz")
    by_string = data.read_source(f"npz:{tmp_path / 'set.npz'}")
    torch.testing.assert_close(by_path.x, torch.from_numpy(images))
    torch.testing.assert_close(by_string.x, by_path.x)
    drawn = data.read_source(tmp_path / "set.npz", n=3, seed=1, size=5)
    assert drawn.x.shape == (3, 1, 5, 5)
    assert torch.equal(drawn.x, data.read_source(f"npz:{tmp_path / 'set.npz'}?n=3&seed=1&size=5").x)
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((rng.random((12, 9, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    assert data.read_source(folder).x.shape == (2, 3, 12, 9)  # a folder keeps its own size unless asked
    assert data.read_source(folder, size=8, channels=1).x.shape == (2, 1, 8, 8)
    string_wins = data.read_source("mnist?split=val", n=4, split="test").x  # options in the string win
    assert torch.equal(string_wins, data.read_source("mnist", n=4, split="val").x)
    assert not torch.equal(string_wins, data.read_source("mnist", n=4, split="test").x)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.read_source(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="nothing"):
        data.read_source(f"cifar100:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="n must be >= 1"):
        data.read_source(folder, n=0)
