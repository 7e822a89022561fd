"""The IDX format of MNIST and its relatives (EMNIST, KMNIST, Fashion-MNIST), raw or gzip-compressed.

Format (LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
                0x0E float64
    byte  3     number of dimensions d
    4 d bytes   the size of each dimension, a 32-bit unsigned integer, most significant byte first
    then        the elements, C order (last index fastest), each most significant byte first

Images are ``(N, rows, columns)`` unsigned bytes (``*-images-idx3-ubyte``), labels ``(N,)`` unsigned bytes
(``*-labels-idx1-ubyte``). A file whose first two bytes are the gzip magic ``1f 8b`` is decompressed first,
whatever its name. The standard file names: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each possibly ending in ``.gz``; EMNIST prefixes
them, e.g. ``emnist-letters-train-images-idx3-ubyte.gz``, and names its test files ``test-...``; some copies
write ``train-images.idx3-ubyte``). EMNIST stores every image transposed (column-major): read it with
``transpose=True``.
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core import DataFormatError, ImageSet, _reason, images_from_array, labels_from_array, resize, to_channels

__all__ = ["read_idx", "read_idx_array", "idx_files", "IDX_DTYPES", "IDX_SPLITS"]

#: IDX element-type byte -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
                                   0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
#: File-name prefixes of each split in a folder of IDX files.
IDX_SPLITS = {"train": ("train",), "test": ("t10k", "test")}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24
_IMAGE_NAME = re.compile(r"(?:^|.*[-_.])(train|t10k|test)-images[-.]idx\d-ubyte(?:\.gz)?$")


def _header(head: bytes, where: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """(element dtype, shape, header length) from the first bytes of an IDX stream."""
    if len(head) < 4:
        raise DataFormatError(f"{where}: {len(head)} bytes is too short for an IDX header (4 bytes of magic number)")
    if head[0] != 0 or head[1] != 0:
        raise DataFormatError(f"{where}: not an IDX file (magic number 0x{head[:4].hex()} does not start with "
                              "0x0000)")
    if head[2] not in IDX_DTYPES:
        raise DataFormatError(f"{where}: unknown IDX element type 0x{head[2]:02x} (known: "
                              f"{', '.join(f'0x{code:02x}' for code in IDX_DTYPES)})")
    ndim = head[3]
    if not 1 <= ndim <= 32:
        raise DataFormatError(f"{where}: an IDX array needs 1 to 32 dimensions, the header says {ndim}")
    length = 4 + 4 * ndim
    if len(head) < length:
        raise DataFormatError(f"{where}: truncated header ({len(head)} bytes; {ndim} dimensions need {length})")
    shape = tuple(int(v) for v in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[head[2]], shape, length


def _declared_bytes(head: bytes, where: str) -> int | None:
    """Header plus data bytes the IDX header in ``head`` declares; None while ``head`` is too short to tell.
    A header already wrong in its first 4 bytes raises at once."""
    if len(head) < 4:
        return None
    if head[:2] == b"\0\0" and head[2] in IDX_DTYPES and head[3] and len(head) < 4 + 4 * head[3]:
        return None
    dtype, shape, length = _header(head, where)
    return length + int(np.prod(shape, dtype=object)) * dtype.itemsize


def _read_gzip(path: Path, where: str) -> bytes:
    """The decompressed bytes; stops as soon as they outgrow what the IDX header declares."""
    chunks: list[bytes] = []
    total, limit = 0, None
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                chunks.append(chunk)
                total += len(chunk)
                if limit is None:
                    limit = _declared_bytes(b"".join(chunks)[:4 + 4 * 255], where)
                if limit is not None and total > limit:
                    raise DataFormatError(f"{where}: trailing bytes: more data than the IDX header declares "
                                          f"({limit} bytes in all)")
    except DataFormatError:
        raise
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataFormatError(f"{where}: not a readable gzip file ({_reason(err)})") from err
    return b"".join(chunks)


def read_idx_array(path: str | os.PathLike) -> np.ndarray:
    """The array stored in one IDX file (raw or gzip-compressed), in native byte order, exactly as stored.

    Raises ``FileNotFoundError`` when the file is missing and :class:`DataFormatError` when it is not a
    complete IDX file (bad magic number or element type, truncated, trailing bytes, broken compression).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    where = str(path)
    with open(path, "rb") as stream:
        compressed = stream.read(2) == _GZIP_MAGIC
    if compressed:
        blob = _read_gzip(path, where)
    else:
        blob = path.read_bytes()
    dtype, shape, length = _header(blob[:4 + 4 * 255], where)
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(blob) - length != need:
        problem = "truncated" if len(blob) - length < need else "trailing bytes after the data"
        raise DataFormatError(f"{where}: {problem}: the header declares {dtype.name} {shape} ({need} bytes of "
                              f"data) but {len(blob) - length} bytes follow the {length}-byte header")
    array = np.frombuffer(blob, dtype=dtype, count=need // dtype.itemsize, offset=length).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a native, writable copy


def _sibling(path: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` next to ``path`` (the uncompressed one first), or None."""
    base = name[:-3] if name.endswith(".gz") else name
    for candidate in (path.with_name(base), path.with_name(base + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def idx_files(path: str | os.PathLike, split: str | None = None) -> tuple[Path, Path | None]:
    """(images file, labels file or None) named by ``path``.

    ``path`` is an images file (its labels file is the same name with ``images`` -> ``labels`` and
    ``idx3`` -> ``idx1``, raw or ``.gz``, when present), or a folder holding the standard files, of which
    ``split`` (``"train"``, the default, or ``"test"``; see :data:`IDX_SPLITS`) picks one pair.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"IDX data not found: {path} (expected an images file such as "
                                "train-images-idx3-ubyte.gz or a folder holding the standard four files)")
    if path.is_dir():
        split = "train" if split is None else split
        if split not in IDX_SPLITS:
            raise ValueError(f"a folder of IDX files has splits {', '.join(IDX_SPLITS)}; got split={split!r}")
        found: dict[str, Path] = {}
        for file in sorted(path.iterdir()):
            match = _IMAGE_NAME.match(file.name)
            if file.is_file() and match and match.group(1) in IDX_SPLITS[split]:
                stem = file.name[:-3] if file.name.endswith(".gz") else file.name
                found.setdefault(stem, file)  # sorted: "x" before "x.gz", so the raw file wins
        if not found:
            raise FileNotFoundError(f"{path}: no {split} images in IDX format (looked for "
                                    f"{' or '.join(f'{p}-images-idx3-ubyte[.gz]' for p in IDX_SPLITS[split])})")
        if len(found) > 1:
            raise ValueError(f"{path}: several {split} image files ({', '.join(sorted(found))}); name one, e.g. "
                             f"idx:{path / sorted(found)[0]}")
        images = next(iter(found.values()))
    else:
        if split is not None:
            raise ValueError(f"split={split!r} picks files in a folder; {path} is already one file")
        images = path
    if "images" not in images.name:
        return images, None
    labels_name = re.sub(r"idx\d", "idx1", images.name.replace("images", "labels"))
    return images, _sibling(images, labels_name)


def read_idx(path: str | os.PathLike, split: str | None = None, labels: str | os.PathLike | None = "auto",
             size: int | Sequence[int] | None = None, channels: int = 1, transpose: bool = False) -> ImageSet:
    """Images (and labels) in IDX format as float32 [0, 1] NCHW with int64 labels.

    ``path``: an images file or a folder of the standard files (``split`` ``"train"`` or ``"test"``, see
    :func:`idx_files`). ``labels``: ``"auto"`` reads the matching labels file when it exists, ``None`` reads
    none, a path reads that file. Images must be unsigned bytes (divided by 255) or floats in [0, 1], shaped
    ``(N, H, W)`` (or with a channel axis of 1 or 3). ``transpose`` swaps rows and columns (EMNIST).
    ``size`` resizes (antialiased bilinear; ``None`` keeps the file's), ``channels`` 3 repeats the grey channel.
    """
    images_file, companion = idx_files(path, split)
    if labels == "auto":
        labels_file = companion
    elif labels is None:
        labels_file = None
    else:
        labels_file = Path(labels)
        if not labels_file.is_file():
            raise FileNotFoundError(f"IDX labels file not found: {labels_file}")
    array = read_idx_array(images_file)
    if array.ndim not in (3, 4):
        raise DataFormatError(f"{images_file}: IDX images must have 3 dimensions (N, rows, columns); the file holds "
                              f"an array of shape {array.shape}")
    x = images_from_array(array, str(images_file))
    if transpose:
        x = x.transpose(2, 3).contiguous()
    y = None
    if labels_file is not None:
        y = labels_from_array(read_idx_array(labels_file), len(x), str(labels_file))
    if size is not None:
        x = resize(x, size)
    x = to_channels(x, channels).contiguous()
    meta = {"source": "idx", "path": str(images_file), "labels": None if labels_file is None else str(labels_file)}
    if split is not None:
        meta["split"] = split
    return ImageSet(x, y, f"idx:{images_file.name}", meta)
