"""Naming a data source with one string, so presets and command-line options can point at any data.

Grammar (:data:`SOURCE_GRAMMAR`)::

    SPEC    := NAME [ "?" OPTIONS ]                      named:    mnist digits lfw photos uniform gaussian
                                                                   fashion (system package, see below)
             | KIND ":" PATH [ "?" OPTIONS ]             files:    cifar10 cifar100 cifar folder imagenet
                                                                   npz npy array tinyimages idx
    OPTIONS := KEY "=" VALUE { "&" KEY "=" VALUE }
    VALUE   := an integer | a float | true | false | none | any other text (a string, e.g. a path)

Examples: ``mnist?split=test``, ``photos?n=5000&seed=3``, ``fashion?split=val``,
``cifar10:/data/cifar-10-batches-py?split=test``, ``folder:/data/celebahq?size=256``, ``npz:runs/x/samples.npz``,
``tinyimages:/data/tiny_images.bin?exclusion=/data/80mn_cifar_idxs.txt&exclusion_base=1``,
``idx:/data/mnist/train-images-idx3-ubyte.gz`` (labels from ``train-labels-idx1-ubyte.gz`` beside it),
``idx:/data/kmnist?split=test`` (a folder holding the standard four files).
Only the text after the *last* ``?`` is read as options, and only when it has the ``key=value`` form, so a
path may hold ``?`` elsewhere. ``cifar`` detects CIFAR-10 or CIFAR-100 from the files; ``imagenet`` is an
alias of ``folder``; ``array`` accepts .npz and .npy.

Options per kind (keyword arguments of :func:`open_source` are merged with those of the string; giving one
twice with different values is an error):

- named datasets: ``split size channels n seed`` (see :func:`atebm.data.load_dataset`); ``fashion`` also takes
  ``root`` (a folder with the four Fashion-MNIST ``.gz`` files; default: where Debian's
  ``dataset-fashion-mnist`` puts them)
- ``cifar10 cifar100 cifar``: ``split size channels labels n seed``
- ``folder imagenet``: ``size channels crop n seed`` (lazy :class:`~atebm.data.readers.ImageFolder`)
- ``npz npy array``: ``key label_key size channels n seed``
- ``tinyimages``: ``exclusion exclusion_base size channels n seed`` (lazy :class:`~atebm.data.readers.TinyImages`)
- ``idx``: ``split labels transpose size channels n seed`` (:func:`~atebm.data.idx.read_idx`; ``split`` only
  for a folder, ``labels=none`` reads no labels, ``transpose=true`` for EMNIST)

Every returned object has ``len()``, ``get_batch(indices)`` (the trainer's data protocol) and
``load(n=None, seed=0) -> ImageSet``; in-memory ones are :class:`~atebm.data.core.ImageSet` already.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .core import ImageSet, rng_for, take
from .embedded import DATASETS, load_dataset
from .fashion import load_fashion
from .idx import read_idx
from .readers import ImageFolder, TinyImages, read_array, read_cifar

__all__ = ["open_source", "parse_source", "read_source", "SOURCE_GRAMMAR", "FILE_KINDS"]

SOURCE_GRAMMAR = __doc__
FILE_KINDS = ("cifar10", "cifar100", "cifar", "folder", "imagenet", "npz", "npy", "array", "tinyimages", "idx")
_OPTIONS = {
    "embedded": {"split", "size", "channels", "n", "seed"},
    "fashion": {"split", "size", "channels", "n", "seed", "root"},
    "idx": {"split", "labels", "transpose", "size", "channels", "n", "seed"},
    "cifar": {"split", "size", "channels", "labels", "n", "seed"},
    "folder": {"size", "channels", "crop", "n", "seed"},
    "array": {"key", "label_key", "size", "channels", "n", "seed"},
    "tinyimages": {"exclusion", "exclusion_base", "size", "channels", "n", "seed"},
}
_FAMILY = {"cifar10": "cifar", "cifar100": "cifar", "cifar": "cifar", "folder": "folder", "imagenet": "folder",
           "npz": "array", "npy": "array", "array": "array", "tinyimages": "tinyimages", "idx": "idx"}
_OPTION_TEXT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^&]*(&[A-Za-z_][A-Za-z0-9_]*=[^&]*)*$")


def _value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", text):
        return float(text)
    return text


def _split_options(spec: str) -> tuple[str, dict[str, Any]]:
    """``"body?k=v&k2=v2"`` -> ``("body", {k: v, k2: v2})``; text after the last ``?`` counts only if it has the
    ``key=value`` form."""
    options: dict[str, Any] = {}
    head, mark, tail = spec.rpartition("?")
    if not (mark and _OPTION_TEXT.match(tail)):
        return spec, options
    for pair in tail.split("&"):
        key, _, text = pair.partition("=")
        if key in options:
            raise ValueError(f"option {key!r} given twice in data source {spec!r}")
        options[key] = _value(text)
    return head, options


def _check_kind(kind: str, spec: str) -> str:
    kind = kind.strip().lower()
    if kind not in DATASETS and kind not in FILE_KINDS:
        raise ValueError(f"unknown data source {spec!r}: use one of {', '.join(DATASETS)} or KIND:PATH with KIND in "
                         f"{', '.join(FILE_KINDS)}")
    return kind


def parse_source(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """Splits a source string into ``(kind, path or None, options)`` following :data:`SOURCE_GRAMMAR`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a data source must be a non-empty string, got {spec!r}")
    body, options = _split_options(spec.strip())
    kind, colon, path = body.partition(":")
    kind = _check_kind(kind, spec)
    if kind in DATASETS:
        if colon:
            hint = " (or read your own copy of the files with idx:PATH)" if kind == "fashion" else ""
            raise ValueError(f"{kind!r} is a named dataset and takes no path; write just {kind!r}{hint}")
        return kind, None, options
    if not path:
        raise ValueError(f"data source {kind!r} needs a path: write '{kind}:<path>'")
    return kind, path, options


def open_source(kind: str, path: str | os.PathLike | None = None,
                **options: Any) -> ImageSet | ImageFolder | TinyImages:
    """Opens a data source named by a string (``"mnist"``, ``"cifar10:<folder>"``, ...; see
    :data:`SOURCE_GRAMMAR`) or by ``kind`` plus ``path``, with options from the string and ``options``."""
    if path is None:
        name, spec_path, spec_options = parse_source(kind)
    else:  # the path is taken verbatim; options may still follow the kind ("tinyimages?exclusion_base=1")
        body, spec_options = _split_options(str(kind).strip())
        if ":" in body:
            raise ValueError(f"give the path once: either in {kind!r} or as path={str(path)!r}")
        name, spec_path = _check_kind(body, str(kind)), str(path)
        if name in DATASETS:
            raise ValueError(f"{name!r} is a named dataset and takes no path (got path={spec_path!r})")
    for key, value in options.items():
        if key in spec_options and spec_options[key] != value:
            raise ValueError(f"option {key!r} is {spec_options[key]!r} in the source string but {value!r} as an "
                             "argument; give it once")
        spec_options[key] = value
    family = ("fashion" if name == "fashion" else "embedded") if name in DATASETS else _FAMILY[name]
    unknown = sorted(set(spec_options) - _OPTIONS[family])
    if unknown:
        raise ValueError(f"data source {name!r} does not take {', '.join(unknown)}; it takes "
                         f"{', '.join(sorted(_OPTIONS[family]))}")
    opts = dict(spec_options)
    if family == "embedded":
        return load_dataset(name, **opts)
    if family == "fashion":
        return load_fashion(**opts)
    assert spec_path is not None  # every file kind has a path (parse_source and the checks above)
    n, seed = opts.pop("n", None), opts.pop("seed", 0)
    if family == "folder":
        return ImageFolder(spec_path, n=n, seed=seed, **opts)
    if family == "tinyimages":
        return TinyImages(spec_path, n=n, seed=seed, **opts)
    if family == "idx":
        result = read_idx(spec_path, **opts)
    elif family == "cifar":
        result = read_cifar(spec_path, **opts)
        expected = {"cifar10": "cifar10", "cifar100": "cifar100"}.get(name)
        if expected is not None and result.meta["source"] != expected:
            raise ValueError(f"{spec_path} holds {result.meta['source']} batches, not {expected}; "
                             f"write '{result.meta['source']}:{spec_path}' or 'cifar:{spec_path}'")
    else:
        if name in ("npz", "npy") and not str(spec_path).lower().endswith(f".{name}"):
            raise ValueError(f"{spec_path}: '{name}:' expects a .{name} file")
        result = read_array(spec_path, **opts)
    if n is None:
        return result
    return take(result, n, rng_for(seed, result.name, "take"))


def read_source(spec: str | os.PathLike, *, size: int | tuple[int, int] | None = None, channels: int | None = None,
                n: int | None = None, seed: int = 0, split: str | None = None) -> ImageSet:
    """The images named by a path or a data-source string, loaded: the one resolver every command uses.

    A plain path that exists is short for its kind: an image folder means ``folder:PATH``, an ``.npz`` / ``.npy``
    file means ``npz:PATH`` / ``npy:PATH``; anything else is parsed as a source string (:data:`SOURCE_GRAMMAR`).
    ``n`` images are drawn with ``seed`` (all when ``None``); ``size``, ``channels`` and, for a named data set
    only, ``split`` apply unless the string sets them (``None`` leaves the reader's own default). A missing file
    raises FileNotFoundError naming it; a text that is neither a path nor a source string says so.
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    text = str(spec)
    path = Path(text)
    options: dict[str, Any] = {}
    file: str | None
    if path.exists():
        suffix = path.suffix.lower()
        if not path.is_dir() and suffix not in (".npz", ".npy"):
            raise ValueError(f"{text}: expected an image folder, an .npz or an .npy file (or a source string such "
                             "as cifar100:PATH?split=test)")
        name, file = ("folder" if path.is_dir() else suffix[1:]), text
    else:
        try:
            name, file, options = parse_source(text)
        except ValueError as err:
            raise FileNotFoundError(f"{text!r} is neither an existing path nor a data-source string ({err})") from err
        if file is not None and not Path(file).exists():
            raise FileNotFoundError(f"data for {text!r} not found: {file}")
    extra: dict[str, Any] = {"size": size, "channels": channels, "n": n, "seed": seed,
                             "split": split if name in DATASETS else None}
    extra = {key: value for key, value in extra.items()
             if (value is not None or (key == "size" and _FAMILY.get(name) == "folder")) and key not in options}
    source = open_source(text, **extra) if file is None else open_source(name, file, **options, **extra)
    return source if isinstance(source, ImageSet) else source.load()
