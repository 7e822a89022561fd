"""Fuzzing every file reader of atebm.data with hypothesis: random bytes, truncated and bit-flipped files of the
real formats, and random pickled/array content. A reader either returns valid images or raises the library's
DataFormatError naming the file; never an error from inside pickle, NumPy, Pillow, zipfile or gzip."""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import atebm.data as data
from atebm.data import DataFormatError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _check_images(result: data.ImageSet | torch.Tensor) -> None:
    x = result.x if isinstance(result, data.ImageSet) else result
    assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[1] in (1, 3)
    assert torch.isfinite(x).all() and float(x.min()) >= 0 and float(x.max()) <= 1


def _read_or_data_error(read, name: str):
    """Runs ``read()``; a DataFormatError must name ``name`` (the file); any other exception fails the test."""
    try:
        result = read()
    except DataFormatError as err:
        assert name in str(err), f"the message does not name {name}: {err}"
        assert "\n" not in str(err).strip()
        return None
    _check_images(result)
    return result


def _damaged(valid: bytes, draw: st.DrawFn) -> bytes:
    """A truncation of ``valid`` or ``valid`` with a few bytes overwritten."""
    if draw(st.booleans()):
        return valid[:draw(st.integers(0, len(valid) - 1))]
    blob = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
    return bytes(blob)


@st.composite
def damaged_or_random(draw: st.DrawFn, valid: bytes) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=600))
    return _damaged(valid, draw)


# --------------------------------------------------------------------------------------------------- IDX
def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


IDX_IMAGES = _idx(np.arange(3 * 6 * 5, dtype=np.uint8).reshape(3, 6, 5))


@FUZZ
@given(blob=damaged_or_random(IDX_IMAGES), compress=st.booleans())
def test_idx_reader(work, blob, compress):
    path = work / "fuzz-images-idx3-ubyte"
    path.write_bytes(gzip.compress(blob) if compress else blob)
    (work / "fuzz-labels-idx1-ubyte").write_bytes(_idx(np.arange(3, dtype=np.uint8)))
    _read_or_data_error(lambda: data.read_idx(path), "fuzz-")  # the images or the labels file


@FUZZ
@given(blob=damaged_or_random(gzip.compress(IDX_IMAGES, mtime=0)))
def test_idx_reader_damaged_gzip(work, blob):
    path = work / "gz-images-idx3-ubyte.gz"
    path.write_bytes(blob)
    _read_or_data_error(lambda: data.read_idx(path, labels=None), path.name)


@FUZZ
@given(header=st.binary(min_size=4, max_size=24), tail=st.binary(max_size=64))
def test_idx_random_headers(work, header, tail):
    path = work / "head-images"
    path.write_bytes(b"\x00\x00" + header[2:] + tail)  # past the first check, into type, dims and sizes
    _read_or_data_error(lambda: data.read_idx(path, labels=None), path.name)


# ------------------------------------------------------------------------------------------------- CIFAR
def _cifar_blob() -> bytes:
    rows = np.random.default_rng(0).integers(0, 256, size=(2, 3072), dtype=np.uint8)
    return pickle.dumps({b"batch_label": b"x", b"labels": [1, 7], b"data": rows}, protocol=2)


@FUZZ
@given(blob=damaged_or_random(_cifar_blob()))
def test_cifar_batch(work, blob):
    folder = work / "cifar"
    folder.mkdir(exist_ok=True)
    (folder / "data_batch_1").write_bytes(blob)
    _read_or_data_error(lambda: data.read_cifar(folder), "data_batch_1")


_LEAVES = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.binary(max_size=8)
           | st.text(max_size=4))
_ARRAYS = hnp.arrays(dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.bool_]),
                     shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
_VALUES = st.recursive(_LEAVES | _ARRAYS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.binary(max_size=4), inner, max_size=3), max_leaves=8)


@FUZZ
@given(data_value=_VALUES | st.just(np.zeros((2, 3072), np.uint8)), labels=_VALUES | st.just([0, 1]))
def test_cifar_batch_with_odd_content(work, data_value, labels):
    folder = work / "cifar-odd"
    folder.mkdir(exist_ok=True)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": data_value, b"labels": labels}, protocol=2))
    _read_or_data_error(lambda: data.read_cifar(folder, split="test"), "test_batch")


def _cifar_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        blob = _cifar_blob()
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


@FUZZ
@given(blob=damaged_or_random(_cifar_tar()))
def test_cifar_archive(work, blob):
    path = work / "cifar-10-python.tar.gz"
    path.write_bytes(blob)
    _read_or_data_error(lambda: data.read_cifar(path, split="test"), path.name)


# --------------------------------------------------------------------------------------------- NPZ / NPY
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, x=np.random.default_rng(1).random((2, 1, 4, 4)).astype(np.float32), y=np.array([0, 1]))
    return buffer.getvalue()


NPY_IMAGES = _npy(np.random.default_rng(2).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8))


@settings(FUZZ, max_examples=100)
@given(blob=damaged_or_random(NPY_IMAGES))
@example(blob=NPY_IMAGES[:11] + b"(" + NPY_IMAGES[12:])  # an unbalanced header: NumPy's tokenizer raised TokenError
def test_npy_file(work, blob):
    path = work / "fuzz.npy"
    path.write_bytes(blob)
    _read_or_data_error(lambda: data.read_array(path), path.name)


@FUZZ
@given(blob=st.one_of(damaged_or_random(_npz(False)), damaged_or_random(_npz(True))))
def test_npz_file(work, blob):
    path = work / "fuzz.npz"
    path.write_bytes(blob)
    _read_or_data_error(lambda: data.read_array(path), path.name)


_ANY_FLOATS = hnp.arrays(dtype=st.sampled_from([np.float16, np.float32, np.float64]),
                         shape=st.sampled_from([(2, 3, 3), (1, 1, 2, 2), (2, 2, 2, 3)]),
                         elements=st.floats(allow_nan=True, allow_infinity=True, width=16))


@FUZZ
@given(array=_ANY_FLOATS)
def test_float_arrays_need_finite_values_in_the_unit_interval(work, array):
    path = work / "values.npy"
    np.save(path, array)
    values = array.astype(np.float32)
    valid = bool(np.isfinite(values).all() and values.min() >= -1e-4 and values.max() <= 1 + 1e-4)
    result = _read_or_data_error(lambda: data.read_array(path), path.name)
    assert (result is not None) == valid
    if result is not None:
        if values.ndim == 3:
            nchw = values[:, None]
        else:
            nchw = values if values.shape[1] == 1 else values.transpose(0, 3, 1, 2)
        assert torch.equal(result.x, torch.from_numpy(np.clip(nchw, 0, 1)))


@FUZZ
@given(array=hnp.arrays(dtype=hnp.scalar_dtypes(), shape=hnp.array_shapes(max_dims=5, max_side=3)))
def test_arrays_of_any_dtype_and_shape(work, array):
    path = work / "any.npz"
    np.savez(path, x=array)
    _read_or_data_error(lambda: data.read_array(path), path.name)


# ----------------------------------------------------------------------------------------- image folders
def _image_bytes(fmt: str) -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp",
           "PPM": ".ppm"}


@FUZZ
@given(fmt=st.sampled_from(sorted(_SUFFIX)), choice=st.data())
def test_image_folder(work, fmt, choice):
    blob = choice.draw(damaged_or_random(_image_bytes(fmt)))
    folder = work / "images"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    name = f"fuzz{_SUFFIX[fmt]}"
    (folder / name).write_bytes(blob)
    _read_or_data_error(lambda: data.read_image_folder(folder, size=8, channels=1), name)


def test_image_folder_rejects_a_decompression_bomb(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 > 2 x 100: Pillow refuses it as a bomb
    with pytest.raises(DataFormatError, match=r"big.png: cannot be read as an image \(DecompressionBombError"):
        data.read_image_folder(tmp_path, size=8)


# ------------------------------------------------------------------------------------------- Tiny Images
@FUZZ
@given(records=st.integers(0, 3), extra=st.integers(-2, 2), seed=st.integers(0, 2 ** 16))
def test_tiny_images_binary(work, records, extra, seed):
    path = work / "tiny_images.bin"
    size = max(0, records * 3072 + extra)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())

    def read():
        tiny = data.TinyImages(path)
        return tiny.get_batch(np.arange(len(tiny)))

    result = _read_or_data_error(read, path.name)
    assert (result is not None) == (size > 0 and size % 3072 == 0)


@FUZZ
@given(text=st.text(max_size=40), npy=damaged_or_random(_npy(np.array([1, 2], np.int64))))
def test_tiny_images_exclusion_lists(work, text, npy):
    path = work / "tiny.bin"
    path.write_bytes(bytes(3072 * 4))
    (work / "exclude.txt").write_text(text)
    (work / "exclude.npy").write_bytes(npy)
    for name in ("exclude.txt", "exclude.npy"):
        try:
            tiny = data.TinyImages(path, exclusion=work / name)
        except DataFormatError as err:
            assert name in str(err)
        else:
            assert 0 <= len(tiny) <= 4
