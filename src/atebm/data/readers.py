"""Readers for dataset files a user brings; nothing here downloads anything.

- CIFAR-10 / CIFAR-100, *python* version (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html; no
  licence stated by the authors, free for research): pickled dicts with ``data`` uint8 ``(N, 3072)`` (1024 red,
  then 1024 green, then 1024 blue values, each a row-major 32x32 plane) and ``labels`` (CIFAR-10) or
  ``fine_labels`` / ``coarse_labels`` (CIFAR-100). CIFAR-10 holds ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch``; CIFAR-100 holds ``train`` and ``test``.
- Image folders (PNG/JPEG/...; optional class sub-folders give labels; ImageNet, CelebA-HQ, AFHQ or LSUN
  exported as images read the same way).
- NPZ / NPY arrays (the format every atebm command writes), parsed here header first: the NPY header's shape
  and dtype are checked against the bytes present before anything is allocated, and only numeric arrays are
  read (no pickles).
- 80 Million Tiny Images (Torralba, Fergus & Freeman 2008; withdrawn by its authors in 2020, read only from a
  copy the user already has): ``tiny_images.bin``, 79,302,017 records of 3072 bytes. Each record is a
  MATLAB (column-major) 32x32x3 uint8 array: byte ``r + 32 c + 1024 k`` is row ``r``, column ``c``, channel
  ``k``. Read as ``(3, 32, 32)`` in C order that is ``[k, c, r]``, so it must be transposed ``(0, 2, 1)`` to be
  upright (the same as the usual ``reshape(32, 32, 3, order="F")`` loaders).

CIFAR batches are pickles; they are read with an unpickler that only builds NumPy arrays, lists and dicts, so a
tampered file cannot run code.

Every reader reports a file that is truncated, corrupt or in another format with
:class:`~atebm.data.core.DataFormatError` (a ``ValueError``) naming the file and the problem; a missing file
or folder is a ``FileNotFoundError``.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .core import (
    DataFormatError,
    ImageSet,
    _check_count,
    _reason,
    _size_pair,
    images_from_array,
    labels_from_array,
    resize,
    rng_for,
    to_channels,
)

__all__ = ["read_cifar", "read_image", "read_image_folder", "ImageFolder", "read_array", "read_npy", "TinyImages",
           "IMAGE_SUFFIXES", "TINY_RECORD_BYTES"]

#: File suffixes (lower case) read as images by every image-folder reader of atebm.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Bytes per 80M Tiny Images record: 32 x 32 pixels x 3 channels.
TINY_RECORD_BYTES = 3072


# ------------------------------------------------------------------------------------------------ CIFAR
class _ArrayUnpickler(pickle.Unpickler):
    """Builds only what CIFAR batches contain: NumPy arrays and dtypes (plus Python containers)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR batch holds only arrays)")
        if module == "numpy.core.multiarray":  # pickles written with NumPy 1.x; the module moved in NumPy 2
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict[str, object]:
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # truncated or foreign files raise many different types
        raise DataFormatError(f"{where}: not a CIFAR python batch (unpickling failed: {_reason(err)})") from err
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: not a CIFAR python batch (expected a pickled dict, got {type(obj).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_files(path: Path) -> tuple[str, Callable[[str], bytes | None], str, set[str]]:
    """(kind, read(basename) -> bytes or None, where, basenames present) for a folder or a tar archive."""
    if path.is_dir():
        candidates = [path, path / "cifar-10-batches-py", path / "cifar-100-python"]
        for folder in candidates:
            present = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
            if any(name.startswith("data_batch_") for name in present) or "test_batch" in present:
                return "cifar10", lambda base, f=folder: _read_bytes(f / base), str(folder), present
            if "train" in present or "test" in present:
                return "cifar100", lambda base, f=folder: _read_bytes(f / base), str(folder), present
        raise FileNotFoundError(
            f"{path}: no CIFAR batches found; expected the extracted 'cifar-10-batches-py' folder (data_batch_1..5, "
            "test_batch) or 'cifar-100-python' folder (train, test), or the folder that contains one of them")
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            for base, member in members.items():
                if base in ("train", "test", "test_batch") or base.startswith("data_batch_"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        contents[base] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:  # gzip/bz2/lzma errors are OSError
        raise DataFormatError(f"{path}: neither a folder nor a readable tar archive of CIFAR batches "
                              f"({_reason(err)})") from err
    if any(name.startswith("data_batch_") for name in contents) or "test_batch" in contents:
        kind = "cifar10"
    elif "train" in contents or "test" in contents:
        kind = "cifar100"
    else:
        raise DataFormatError(f"{path}: archive holds no CIFAR python batches (data_batch_N/test_batch or "
                              "train/test)")
    return kind, contents.get, str(path), set(contents)


def _read_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def read_cifar(path: str | os.PathLike, split: str = "train", size: int = 32, channels: int = 3,
               labels: str = "fine") -> ImageSet:
    """CIFAR-10 or CIFAR-100 (python version) as float32 [0, 1] NCHW with int64 labels.

    ``path``: the extracted ``cifar-10-batches-py`` / ``cifar-100-python`` folder, the folder containing it, or
    the downloaded ``.tar.gz``. The kind is detected from the file names. CIFAR-10 ``train`` concatenates the
    ``data_batch_<k>`` present, which must be numbered 1, 2, ... without gaps. ``labels``: ``"fine"`` (100
    classes) or ``"coarse"`` (20 super-classes) for CIFAR-100; ignored for CIFAR-10. Images come in file order.
    """
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR has splits 'train' and 'test'; got {split!r}")
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CIFAR data not found: {path} (expected the extracted cifar-10-batches-py or "
                                "cifar-100-python folder, or its .tar.gz)")
    kind, read, where, present = _cifar_files(path)
    if kind == "cifar10" and split == "test":
        names = ["test_batch"]
    elif kind == "cifar10":
        numbers = sorted(int(m.group(1)) for m in map(re.compile(r"data_batch_(\d+)").fullmatch, present) if m)
        if not numbers:
            raise FileNotFoundError(f"{where}: CIFAR-10 train batches missing (expected data_batch_1 .. data_batch_5)")
        if numbers != list(range(1, len(numbers) + 1)):
            missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
            raise FileNotFoundError(f"{where}: CIFAR-10 train batches must be numbered 1, 2, ... without gaps; found "
                                    f"{numbers}, data_batch_{missing[0]} is missing")
        names = [f"data_batch_{k}" for k in numbers]
    else:
        names = [split]
    label_key = "labels" if kind == "cifar10" else f"{labels}_labels"
    n_classes = 10 if kind == "cifar10" else (100 if labels == "fine" else 20)
    images, targets = [], []
    for name in names:
        blob = read(name)
        file = f"{where}/{name}" if Path(where).is_dir() else f"{where}:{name}"
        if blob is None:
            raise FileNotFoundError(f"{file} not found (a {kind} folder needs it for split {split!r})")
        batch = _unpickle(blob, file)
        for key in ("data", label_key):
            if key not in batch:
                raise DataFormatError(f"{file}: CIFAR batch has no {key!r} entry (keys: {sorted(batch)})")
        data = batch["data"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataFormatError(f"{file}: 'data' must be uint8 of shape (N, 3072), got {got}")
        target = _cifar_labels(batch[label_key], file, label_key)
        if len(target) != len(data):
            raise DataFormatError(f"{file}: {len(data)} images but {len(target)} {label_key}")
        if len(target) and (target.min() < 0 or target.max() >= n_classes):
            raise DataFormatError(f"{file}: {label_key} must lie in 0..{n_classes - 1}, "
                                  f"found {target.min()}..{target.max()}")
        images.append(data.reshape(-1, 3, 32, 32))  # red plane, green plane, blue plane; each row-major
        targets.append(target)
    x = torch.from_numpy(np.concatenate(images)).float().div_(255.0)
    x = to_channels(resize(x, size), channels).contiguous()
    return ImageSet(x, torch.from_numpy(np.concatenate(targets)), f"{kind}/{split}",
                    {"source": kind, "split": split, "path": str(path)})


def _cifar_labels(value: object, file: str, key: str) -> np.ndarray:
    """A batch's label list as int64; anything but a flat sequence of integers is a DataFormatError."""
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                  for v in value):
        array = np.asarray(value) if value else np.zeros(0, np.int64)
    else:
        raise DataFormatError(f"{file}: {key!r} must be a list of integer labels, got {type(value).__name__}")
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataFormatError(f"{file}: {key!r} must be a list of integer labels, got {array.dtype} {array.shape}")
    if array.size and (int(array.max()) > np.iinfo(np.int64).max or int(array.min()) < np.iinfo(np.int64).min):
        raise DataFormatError(f"{file}: {key!r} holds labels outside the int64 range")
    return array.astype(np.int64)


# ------------------------------------------------------------------------------------------- image folders
def read_image(path: str | os.PathLike, channels: int = 3, size: int | Sequence[int] | None = None,
               crop: str = "center") -> np.ndarray:
    """One image file as float32 ``(channels, H, W)`` in [0, 1]: grey (``"L"``) or RGB, optionally resized.

    ``size`` (an int or ``(height, width)``; ``None`` keeps the file's) with ``crop="center"`` resizes the short
    side then takes the centre, ``crop="stretch"`` resizes both sides; Pillow's antialiased bicubic filter.
    A file Pillow cannot decode raises :class:`DataFormatError` naming it.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    if crop not in ("center", "stretch"):
        raise ValueError(f"crop must be 'center' or 'stretch', got {crop!r}")
    pair = None if size is None else _size_pair(size)
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as opened:
            if pair is not None:
                opened.draft(mode, (pair[1], pair[0]))  # JPEG: decode at a reduced scale when much larger
            image = opened.convert(mode)
    # Pillow's decoders raise many types on corrupt input (OSError, SyntaxError, struct.error, zlib.error,
    # IndexError, DecompressionBombError, ...); all of them mean "this file is not a readable image".
    except Exception as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: cannot be read as an image ({_reason(err)})") from err
    if pair is not None:
        height, width = pair
        if crop == "center":
            scale = max(height / image.height, width / image.width)
            new = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
            image = image.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
            left, top = (new[0] - width) // 2, (new[1] - height) // 2
            image = image.crop((left, top, left + width, top + height))
        else:
            image = image.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class ImageFolder:
    """Image files under ``path``, decoded lazily: ``len``, ``get_batch(indices)``, ``load()``.

    Layout: if sub-folders of ``path`` hold images, each such sub-folder is a class (searched recursively;
    labels are the sorted sub-folder names' positions, listed in :attr:`classes`) and image files directly in
    ``path`` are an error; otherwise the images directly in ``path`` are read without labels. Hidden files and
    folders are skipped; image files are those with a suffix in :data:`IMAGE_SUFFIXES`. ``crop="center"``
    resizes the short side to ``size`` then takes the centre (aspect kept; the ImageNet/LSUN convention),
    ``crop="stretch"`` resizes both sides to ``size``. Resizing uses Pillow's antialiased bicubic filter.
    ``size=None`` keeps every image's own size (then the images of one batch must all have the same size).
    ``n``/``seed`` keep a seeded random subset of ``n`` files.
    """

    def __init__(self, path: str | os.PathLike, size: int | Sequence[int] | None = 64, channels: int = 3,
                 crop: str = "center", n: int | None = None, seed: int = 0) -> None:
        self.path = Path(path)
        self.size = None if size is None else _size_pair(size)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
        if crop not in ("center", "stretch"):
            raise ValueError(f"crop must be 'center' or 'stretch', got {crop!r}")
        self.channels, self.crop = channels, crop
        if not self.path.exists():
            raise FileNotFoundError(f"image folder not found: {self.path}")
        if not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is not a folder (expected a folder of image files)")
        self.files, self.labels, self.classes = self._scan()
        if n is not None:  # a seeded random subset of n files, kept in sorted order
            _check_count(n)
            if n > len(self.files):
                raise ValueError(f"{self.path} holds {len(self.files)} images; n={n} asked for more")
            keep = np.sort(rng_for(seed, "folder-subset").choice(len(self.files), size=n, replace=False))
            self.files = [self.files[i] for i in keep]
            self.labels = None if self.labels is None else self.labels[keep]

    def _scan(self) -> tuple[list[Path], np.ndarray | None, list[str]]:
        def visible(p: Path) -> bool:
            return not any(part.startswith(".") for part in p.relative_to(self.path).parts)

        def images_in(folder: Path, recursive: bool) -> list[Path]:
            found = folder.rglob("*") if recursive else folder.iterdir()
            return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and visible(p))

        loose = images_in(self.path, recursive=False)
        classes: list[str] = []
        files: list[Path] = []
        labels: list[int] = []
        for sub in sorted(p for p in self.path.iterdir() if p.is_dir() and visible(p)):
            members = images_in(sub, recursive=True)
            if members:
                labels += [len(classes)] * len(members)
                classes.append(sub.name)
                files += members
        if classes and loose:
            raise DataFormatError(f"{self.path}: holds class sub-folders ({', '.join(classes[:3])}...) and also "
                                  f"loose images such as {loose[0].name}; put every image in a class folder, or none")
        if classes:
            return files, np.asarray(labels, dtype=np.int64), classes
        if not loose:
            raise DataFormatError(f"{self.path}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)}, "
                                  "directly or in class sub-folders)")
        return loose, None, []

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as float32 ``(C, H, W)`` in [0, 1]."""
        return read_image(self.files[index], channels=self.channels, size=self.size, crop=self.crop)

    def get_batch(self, indices: Tensor | Sequence[int] | np.ndarray) -> Tensor:
        """The images at ``indices`` as float32 [0, 1] ``(N, C, H, W)`` (the trainer's data protocol)."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"indices must lie in 0..{len(self) - 1} for {self.path}")
        if len(index) == 0:
            return torch.zeros(0, self.channels, *(self.size or (0, 0)))
        arrays = [self.read(int(i)) for i in index]
        shapes = [a.shape[1:] for a in arrays]
        if len(set(shapes)) > 1:
            k = next(k for k, shape in enumerate(shapes) if shape != shapes[0])
            first, other = self.files[int(index[0])].name, self.files[int(index[k])].name
            raise DataFormatError(f"{self.path}: images differ in size ({first} is {shapes[0][0]}x{shapes[0][1]}, "
                                  f"{other} is {shapes[k][0]}x{shapes[k][1]}); give a size to resize them")
        return torch.from_numpy(np.stack(arrays))

    def load(self, n: int | None = None, seed: int = 0) -> ImageSet:
        """Every image (in sorted file order), or the first ``n`` after a shuffle seeded by ``seed``."""
        if n is None:
            index = np.arange(len(self))
        else:
            _check_count(n)
            if n > len(self):
                raise ValueError(f"{self.path} holds {len(self)} images; n={n} asked for more")
            index = rng_for(seed, str(self.path), "folder").permutation(len(self))[:n]
        x = self.get_batch(torch.from_numpy(index))
        y = None if self.labels is None else torch.from_numpy(self.labels[index])
        return ImageSet(x, y, f"folder:{self.path.name}", {"source": "folder", "path": str(self.path),
                                                             "classes": list(self.classes)})

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.path)!r}, {len(self)} images, {len(self.classes)} classes, size={self.size})"


def read_image_folder(path: str | os.PathLike, size: int | Sequence[int] | None = 64, channels: int = 3,
                      crop: str = "center", n: int | None = None, seed: int = 0) -> ImageSet:
    """All images of a folder (see :class:`ImageFolder` for the layout) in memory, labels from class folders.
    ``size=None`` keeps the images' own (common) size."""
    return ImageFolder(path, size=size, channels=channels, crop=crop).load(n=n, seed=seed)


# -------------------------------------------------------------------------------------------------- arrays
#: dtype kinds an NPY array may have here: booleans, integers and floats (no objects, strings or records).
_NUMERIC_KINDS = "biuf"


def _npy_from_stream(stream: IO[bytes], nbytes: int, where: str) -> np.ndarray:
    """Parses one NPY stream of ``nbytes`` bytes: magic and header (version 1.0 or 2.0), then exactly the data
    the header declares, after checking that it is present (a truncated file is reported, never allocated)."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise DataFormatError(f"{where}: NPY format version {version[0]}.{version[1]} is not read here "
                                  "(only 1.0 and 2.0 hold plain numeric arrays)")
    except DataFormatError:
        raise
    # the header is a Python literal parsed by NumPy with tokenize and ast: a damaged one raises ValueError,
    # SyntaxError, tokenize.TokenError, EOFError, OSError (zip streams) ... all meaning "not an NPY array"
    except Exception as err:
        raise DataFormatError(f"{where}: not an NPY array (bad header: {_reason(err)})") from err
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DataFormatError(f"{where}: holds {dtype} values; only numeric arrays are read (no objects or pickles)")
    count = 1
    for dim in shape:
        count *= int(dim)
    need, header = count * dtype.itemsize, stream.tell()
    if header + need > nbytes:
        raise DataFormatError(f"{where}: truncated: the header declares a {dtype} array of shape {tuple(shape)} "
                              f"({need} bytes) but only {max(nbytes - header, 0)} bytes follow it")
    raw = stream.read(need)
    if len(raw) != need:
        raise DataFormatError(f"{where}: truncated: fewer than the {need} data bytes its header declares")
    array = np.frombuffer(raw, dtype=dtype, count=count).copy()  # a writable array of its own
    return array.reshape(shape, order="F" if fortran else "C")


def read_npy(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """One numeric array from an ``.npy`` file, or array ``key`` of an ``.npz`` archive, without pickles.

    Malformed, truncated or non-numeric content raises :class:`DataFormatError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"array file not found: {path}")
    if path.suffix.lower() == ".npy":
        if key is not None:
            raise ValueError(f"{path}: an .npy file holds one array; key={key!r} applies to .npz archives")
        with open(path, "rb") as stream:
            return _npy_from_stream(stream, path.stat().st_size, str(path))
    if key is None:
        raise ValueError(f"{path}: name the array to read from the .npz archive (key=...)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name[:-4] if name.endswith(".npy") else name: name for name in archive.namelist()}
            if key not in members:
                raise DataFormatError(f"{path} has no array '{key}' (it has {sorted(members)})")
            info = archive.getinfo(members[key])
            with archive.open(info) as stream:
                return _npy_from_stream(stream, info.file_size, f"{path} (array '{key}')")
    except DataFormatError:
        raise
    # zipfile and its decompressors raise BadZipFile, zlib.error, EOFError, NotImplementedError (unknown
    # method), RuntimeError (encrypted), LZMAError, OSError ... on corrupt archives: all mean the same here.
    except Exception as err:
        raise DataFormatError(f"{path} is not a readable NPZ archive ({_reason(err)})") from err


def read_array(path: str | os.PathLike, key: str = "x", size: int | Sequence[int] | None = None,
               channels: int | None = None, label_key: str = "y") -> ImageSet:
    """Images from an NPZ (array ``key``) or NPY file, as float32 [0, 1] NCHW.

    uint8 arrays are divided by 255, float arrays must be finite and lie in [0, 1]; NCHW, NHWC and NHW are
    accepted (:func:`~atebm.data.core.images_from_array`). An NPZ's ``label_key`` array, when present, gives
    integer labels. ``size`` / ``channels`` resize and convert (``None`` keeps what the file has).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"array file not found: {path}")
    if path.is_dir() or path.suffix.lower() not in (".npz", ".npy"):
        raise ValueError(f"{path}: expected an .npz or .npy file (use read_image_folder for folders)")
    is_npz = path.suffix.lower() == ".npz"
    x = images_from_array(read_npy(path, key if is_npz else None), f"{path} (array '{key}')" if is_npz else str(path))
    y = None
    if is_npz and label_key != key:
        try:
            labels = read_npy(path, label_key)
        except DataFormatError as err:
            if f"no array '{label_key}'" not in str(err):
                raise
        else:
            y = labels_from_array(labels, len(x), f"{path} (array '{label_key}')")
    if size is not None:
        x = resize(x, size)
    if channels is not None:
        x = to_channels(x, channels)
    return ImageSet(x.float().contiguous(), y, f"array:{path.name}", {"source": "array", "path": str(path)})


# ---------------------------------------------------------------------------------------------- Tiny Images
class TinyImages:
    """The 80M Tiny Images binary, memory-mapped: ``len``, ``get_batch(indices)``, ``load(n)``.

    ``exclusion``: indices to drop (e.g. the images that also appear in CIFAR): a text file with one integer
    per line, an ``.npy`` file, or a sequence of ints, numbered from ``exclusion_base`` (the outlier-exposure
    list ``80mn_cifar_idxs.txt`` counts from 1, so pass ``exclusion_base=1`` for it). The remaining records are
    renumbered ``0..len-1`` in file order: index ``i`` reads record ``i + #{e in E : e - rank(e) <= i}``,
    computed with a binary search over the sorted exclusions, so no table of 79M indices is built.
    ``n``/``seed`` keep a seeded random subset of ``n`` of the remaining records (in file order).
    """

    def __init__(self, path: str | os.PathLike, exclusion: str | os.PathLike | Sequence[int] | np.ndarray | None = None,
                 size: int | Sequence[int] = 32, channels: int = 3, exclusion_base: int = 0,
                 n: int | None = None, seed: int = 0) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"80M Tiny Images file not found: {self.path} (expected tiny_images.bin)")
        if not self.path.is_file():
            raise ValueError(f"{self.path} is not a file (expected tiny_images.bin)")
        nbytes = self.path.stat().st_size
        if nbytes == 0 or nbytes % TINY_RECORD_BYTES:
            raise DataFormatError(f"{self.path}: size {nbytes} bytes is not a positive multiple of "
                                  f"{TINY_RECORD_BYTES} (32x32x3 uint8 records); the file is truncated or not "
                                  "tiny_images.bin")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
        self.records = nbytes // TINY_RECORD_BYTES
        self.size, self.channels = _size_pair(size), channels
        self.excluded = self._read_exclusion(exclusion, exclusion_base)
        # kept-before[j] = number of kept records before the j-th excluded one
        self._kept_before = self.excluded - np.arange(len(self.excluded))
        self._length = self.records - len(self.excluded)
        self.subset: np.ndarray | None = None
        if n is not None:
            _check_count(n)
            if n > self._length:
                raise ValueError(f"{self.path}: n={n} but only {self._length} records remain after exclusion")
            self.subset = np.sort(rng_for(seed, "tinyimages").choice(self._length, size=n, replace=False))
        self._memmap: np.memmap | None = None

    def _read_exclusion(self, exclusion: object, base: int) -> np.ndarray:
        if exclusion is None:
            return np.zeros(0, dtype=np.int64)
        where = "exclusion list"
        if isinstance(exclusion, (str, os.PathLike)):
            file = Path(exclusion)
            where = str(file)
            if not file.is_file():
                raise FileNotFoundError(f"exclusion list not found: {file} (expected a text file of indices or .npy)")
            if file.suffix.lower() == ".npy":
                values = read_npy(file)
            else:
                tokens = file.read_text(errors="replace").split()
                bad = next((t for t in tokens if not re.fullmatch(r"[+-]?\d{1,18}", t)), None)
                if bad is not None:
                    raise DataFormatError(f"{file}: expected one integer index per line, found {bad[:40]!r}")
                values = np.asarray([int(t) for t in tokens], dtype=np.int64)
        else:
            values = np.asarray(exclusion)
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise DataFormatError(f"{where}: indices must be integers, got dtype {values.dtype}")
        values = values.reshape(-1)
        if values.size and (int(values.min()) < base or int(values.max()) >= self.records + base):
            raise DataFormatError(f"{where}: indices must lie in {base}..{self.records - 1 + base} for {self.path} "
                                  f"({self.records} records, numbered from {base}); found "
                                  f"{int(values.min())}..{int(values.max())}")
        values = np.unique(values.astype(np.int64)) - int(base)
        return values

    def __len__(self) -> int:
        return self._length if self.subset is None else len(self.subset)

    def __getstate__(self) -> dict:  # picklable for DataLoader workers: the memory map is reopened on use
        state = dict(self.__dict__)
        state["_memmap"] = None
        return state

    def _data(self) -> np.memmap:
        if self._memmap is None:
            self._memmap = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.records, TINY_RECORD_BYTES))
        return self._memmap

    def record_index(self, indices: Tensor | Sequence[int] | np.ndarray) -> np.ndarray:
        """File record numbers (0-based) of dataset indices, after the subset and the exclusion list."""
        index = np.asarray(torch.as_tensor(indices, dtype=torch.long).reshape(-1).numpy(), dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"indices must lie in 0..{len(self) - 1} for {self.path}")
        if self.subset is not None:
            index = self.subset[index]
        return index + np.searchsorted(self._kept_before, index, side="right")

    def get_batch(self, indices: Tensor | Sequence[int] | np.ndarray) -> Tensor:
        """Images at ``indices`` as float32 [0, 1] ``(N, channels, size, size)``, upright."""
        records = self.record_index(indices)
        order = np.argsort(records, kind="stable")  # read the file front to back
        raw = np.empty((len(records), TINY_RECORD_BYTES), dtype=np.uint8)
        raw[order] = self._data()[records[order]]
        x = torch.from_numpy(raw.reshape(-1, 3, 32, 32).transpose(0, 1, 3, 2).copy()).float().div_(255.0)
        return to_channels(resize(x, self.size), self.channels).contiguous()

    def load(self, n: int | None = None, seed: int = 0) -> ImageSet:
        """Images in memory: all of them (mind the size), or the first ``n`` after a seeded shuffle."""
        total = len(self)
        if n is None:
            index = np.arange(total)
        else:
            _check_count(n)
            if n > total:
                raise ValueError(f"{self.path}: n={n} but the source holds {total} images")
            index = rng_for(seed, "tinyimages", "load").choice(total, size=n, replace=False)
        return ImageSet(self.get_batch(torch.from_numpy(index)), None, "tinyimages",
                        {"source": "tinyimages", "path": str(self.path)})

    def __repr__(self) -> str:
        return (f"TinyImages({str(self.path)!r}, {len(self)} images of {self.records} records, "
                f"{len(self.excluded)} excluded, size={self.size})")
