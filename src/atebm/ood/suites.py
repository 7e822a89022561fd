"""OOD benchmark suites (METHOD Sec. 3; E Tab. 4, G Tab. 6 and App. J at CPU scale).

For the embedded default (in-distribution: the MNIST 5,000 *test* split, 28x28 grey) the OOD sets are:

========== ================================================================================================
photos     natural-photo patches, ``atebm.data.load_dataset("photos", split="test")`` (photos never used for p_0)
uniform    pixels i.i.d. U[0, 1]
gaussian   pixels N(0.5, 0.25²) clipped to [0, 1]
lfw        LFW faces (scikit-image subset: 25 test + 75 train faces, then their mirror images)
digits     scikit-learn's 8x8 digits upscaled (a *near*-OOD set: same classes, other look)
inverted   the MNIST test split with inverted grey values (``1 - x``)
letters    Latin letters that do not resemble digits, rendered with PIL's default font and every usable
           TrueType/OpenType font found (matplotlib's bundled fonts and the system's), random size,
           stroke width, rotation and sub-pixel position, centred like MNIST digits (white on black)
========== ================================================================================================

Optional sets (:data:`OPTIONAL_SUITES`; selected by name, never part of the default list, because they need
files that a system package installs):

========== ================================================================================================
fashion    Fashion-MNIST test split (10,000 clothing images, 28x28 grey), from Debian's
           ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``); :mod:`atebm.data.fashion`
========== ================================================================================================

For presets read from files the user names a data source (SVHN as NPZ, CIFAR-100 python batches, an ImageNet
folder, ...; :data:`atebm.data.SOURCE_GRAMMAR`) and :func:`file_suite` reads it with the data package's readers
(:func:`atebm.data.open_source`), resizing and converting channels like every other set.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = ["EMBEDDED_SUITES", "OPTIONAL_SUITES", "ALL_SUITES", "LETTERS", "embedded_suites", "embedded_suite",
           "in_distribution", "letters", "available_fonts", "file_suite", "suite_descriptions", "describe_fonts"]

EMBEDDED_SUITES = ("photos", "uniform", "gaussian", "lfw", "digits", "inverted", "letters")
#: Suites selectable by name that need a system package (see the module docstring); not in the default list.
OPTIONAL_SUITES = ("fashion",)
#: Every suite name :func:`embedded_suite` accepts.
ALL_SUITES = EMBEDDED_SUITES + OPTIONAL_SUITES
#: Letters kept for the letters suite: those that are easily confused with a digit (O o Q D I l i j J S s Z z
#: B b G g q T) are left out, so that the set is OOD for a digit model.
LETTERS = "ACEFHKLMNPRUVWXYacdefhkmnprtuvwxy"

_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
              "/System/Library/Fonts", "/Library/Fonts", "C:/Windows/Fonts")


#: File-name fragments of symbol/math/fallback fonts, whose "letters" are symbols or boxes.
_SYMBOL_FONT_MARKERS = ("cmex", "cmsy", "math", "sym", "nonuni", "lastresort", "emoji", "symbol", "wingding",
                        "dingbat", "webdings")


def _rng(seed: int, *keys: str) -> np.random.Generator:
    from ..data.core import rng_for

    return rng_for(seed, "ood-suite", *keys)


def _resize_channels(x: Tensor, size: int, channels: int) -> Tensor:
    from ..data import resize, to_channels

    if x.shape[-1] != size or x.shape[-2] != size:
        x = resize(x, size)
    return to_channels(x, channels).clamp(0, 1).contiguous()


def in_distribution(name: str = "mnist", *, split: str = "test", n: int | None = None, size: int = 28,
                    channels: int = 1, seed: int = 0) -> Tensor:
    """The in-distribution evaluation images (default: the 1,000-image MNIST test split)."""
    from ..data import load_dataset

    return load_dataset(name, split=split, size=size, channels=channels, n=n, seed=seed).x


def embedded_suite(name: str, n: int, *, size: int = 28, channels: int = 1, seed: int = 0) -> Tensor:
    """One OOD set by name (:data:`ALL_SUITES`, see the module tables), ``n`` images (fewer only for ``lfw``,
    which has 200 with mirrors, and ``fashion``, 10,000), float32 [0, 1] NCHW."""
    from ..data import load_dataset

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if name in ("photos", "uniform", "gaussian"):
        return load_dataset(name, split="test", size=size, channels=channels, n=n, seed=seed).x
    if name == "lfw":
        faces = torch.cat([load_dataset("lfw", split="test", size=size, channels=channels, seed=seed).x,
                           load_dataset("lfw", split="train", size=size, channels=channels, seed=seed).x])
        faces = torch.cat([faces, faces.flip(-1)])
        return faces[:n].contiguous()
    if name == "digits":
        available = load_dataset("digits", split="test", size=size, channels=channels, seed=seed).x
        if n > len(available):
            available = torch.cat([available, load_dataset("digits", split="train", size=size, channels=channels,
                                                   seed=seed).x])
        return available[:n].contiguous()
    if name == "inverted":
        mnist = load_dataset("mnist", split="test", size=size, channels=channels, seed=seed + 1).x
        return (1.0 - mnist[:n]).contiguous()
    if name == "letters":
        return letters(n, size=size, channels=channels, seed=seed)
    if name == "fashion":
        from ..data.fashion import FASHION_SPLIT_SIZES

        count = min(n, FASHION_SPLIT_SIZES["test"])
        return load_dataset("fashion", split="test", size=size, channels=channels, n=count, seed=seed).x
    raise ValueError(f"unknown OOD suite {name!r}; embedded suites: {', '.join(EMBEDDED_SUITES)}; optional: "
                     f"{', '.join(OPTIONAL_SUITES)} (use file_suite for a path)")


def embedded_suites(n: int = 128, *, size: int = 28, channels: int = 1, seed: int = 0,
                    names: Sequence[str] = EMBEDDED_SUITES) -> dict[str, Tensor]:
    """The embedded OOD sets by name, each ``n`` images (``lfw`` at most 200)."""
    return {name: embedded_suite(name, n, size=size, channels=channels, seed=seed) for name in names}


def file_suite(spec: str | os.PathLike, *, n: int | None = None, size: int = 28, channels: int = 1,
               seed: int = 0) -> Tensor:
    """A user-given OOD (or in-distribution) set read through the data package's readers.

    ``spec`` is a data-source string (:data:`atebm.data.SOURCE_GRAMMAR`: ``cifar100:/data/cifar-100-python?split=
    test``, ``folder:/data/imagenet/val``, ``npz:/data/svhn_test.npz``, ...) or a plain path to an image folder,
    an NPZ (key ``x``) or an NPY file. ``n`` images are drawn with ``seed`` (all when ``None``), resized
    (antialiased bilinear) to ``size`` and converted to ``channels`` unless the string sets those options.
    """
    from ..data import read_source

    return _resize_channels(read_source(spec, size=size, channels=channels, n=n, seed=seed).x.float(), size,
                            channels)


# ------------------------------------------------------------------------------------------------ letters
def _renders_latin(font: ImageFont.FreeTypeFont) -> bool:
    """True when the font draws distinct, non-empty glyphs for A, B and x (symbol fonts and fonts that draw
    the same empty box for every letter fail)."""
    glyphs = []
    for ch in "ABx":
        canvas = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(canvas).text((8, 4), ch, fill=255, font=font)
        array = np.asarray(canvas)
        if array.max() == 0:
            return False
        glyphs.append(array)
    return not (np.array_equal(glyphs[0], glyphs[1]) or np.array_equal(glyphs[1], glyphs[2]))


@lru_cache(maxsize=4)
def _font_files(include_system: bool) -> tuple[str, ...]:
    import matplotlib

    folders = [Path(matplotlib.get_data_path()) / "fonts" / "ttf"]
    if include_system:
        folders += [Path(os.path.expanduser(d)) for d in _FONT_DIRS]
    found: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in (".ttf", ".otf") and path.name not in found:
                found[path.name] = str(path)
    usable = []
    for name in sorted(found):
        if any(marker in name.lower() for marker in _SYMBOL_FONT_MARKERS):
            continue
        try:
            font = ImageFont.truetype(found[name], 40)
        except OSError:
            continue
        if _renders_latin(font):
            usable.append(found[name])
    return tuple(usable)


def available_fonts(include_system: bool = True) -> list[str]:
    """The fonts the letters suite draws from: ``"PIL-default"`` (``ImageFont.load_default``) and every TrueType/
    OpenType file (matplotlib's bundled fonts, then the system's) that renders Latin letters; sorted by file
    name, duplicates by file name dropped."""
    return ["PIL-default", *_font_files(include_system)]


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if path == "PIL-default":
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size)


def _render_letter(ch: str, font_path: str, rng: np.random.Generator, size: int) -> np.ndarray:
    font = _font(font_path, int(rng.integers(36, 61)))
    canvas = Image.new("L", (128, 128), 0)
    stroke = int(rng.integers(0, 3))
    ImageDraw.Draw(canvas).text((24, 16), ch, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    canvas = canvas.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"font {font_path} drew nothing for {ch!r}")
    glyph = canvas.crop(box)
    # MNIST convention: the glyph fits a 20x20 box (scaled to the image size), centred by its centre of mass.
    fit = size * 20 / 28 * float(rng.uniform(0.75, 1.0))
    scale = fit / max(glyph.size)
    new_size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(new_size, Image.Resampling.LANCZOS)
    array = np.asarray(glyph, dtype=np.float32) / 255.0
    total = array.sum()
    ys, xs = np.mgrid[0:array.shape[0], 0:array.shape[1]]
    cy, cx = (float((ys * array).sum() / total), float((xs * array).sum() / total)) if total > 0 else (0.0, 0.0)
    out = Image.new("L", (size, size), 0)
    jitter = rng.uniform(-1.0, 1.0, size=2)
    left = int(round(size / 2 - cx - 0.5 + jitter[0]))
    top = int(round(size / 2 - cy - 0.5 + jitter[1]))
    out.paste(glyph, (left, top))
    return np.asarray(out, dtype=np.float32) / 255.0


def letters(n: int, *, size: int = 28, channels: int = 1, seed: int = 0, fonts: Sequence[str] | None = None,
            alphabet: str = LETTERS) -> Tensor:
    """``n`` rendered letters (white on black), float32 [0, 1] NCHW. Each image draws a letter from
    ``alphabet`` and a font from ``fonts`` (default :func:`available_fonts`) uniformly, a font size of 36-60
    px, a stroke width of 0-2 px and a rotation of ±20°; the glyph is scaled into a 20/28-of-the-image box
    (75-100 %), centred by its centre of mass with ±1 px jitter. Deterministic in ``seed`` and the font list."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    fonts = list(fonts) if fonts is not None else available_fonts()
    if not fonts or not alphabet:
        raise ValueError("letters needs at least one font and one letter")
    rng = _rng(seed, "letters", str(size))
    images = []
    for _ in range(n):
        ch = alphabet[int(rng.integers(len(alphabet)))]
        font_path = fonts[int(rng.integers(len(fonts)))]
        images.append(_render_letter(ch, font_path, rng, size))
    x = torch.from_numpy(np.stack(images))[:, None]
    return _resize_channels(x, size, channels)


def describe_fonts(fonts: Sequence[str] | None = None) -> list[str]:
    """Font file names of the letters suite (``"PIL-default"`` for Pillow's built-in font)."""
    fonts = available_fonts() if fonts is None else fonts
    return [f if f == "PIL-default" else Path(f).name for f in fonts]


def suite_descriptions() -> dict[str, str]:
    """One line per embedded suite, for the protocol."""
    fonts = available_fonts()
    return {
        "photos": "natural-photo patches, atebm.data photos/test (held-out photographs)",
        "uniform": "i.i.d. U[0,1] pixels",
        "gaussian": "i.i.d. N(0.5, 0.25^2) pixels clipped to [0,1]",
        "lfw": "skimage LFW subset faces (test, train, then mirrored), resized",
        "digits": "sklearn 8x8 digits upscaled (near-OOD)",
        "inverted": "MNIST test split, 1 - x",
        "fashion": "Fashion-MNIST test split (Debian package dataset-fashion-mnist), resized",
        "letters": f"letters {LETTERS!r} rendered in {len(fonts)} fonts (PIL default + TrueType files; listed "
                   "under protocol.fonts in ood.json)",
    }

