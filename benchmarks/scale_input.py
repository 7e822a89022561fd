"""Images per second each file reader delivers vs images per second the trainer consumes (issue 15, item 2).

Small synthetic files of each format are written to ``--tmp`` (default /tmp/atebm_scale_input): a Tiny Images
binary (memory-mapped, 32 px), CIFAR-10 python batches, IDX (gzip, 28 px), a folder of 256x256 PNGs (the
CelebA-HQ/AFHQ/LSUN exports, ``folder:...?size=256``) and a folder of 384x320 JPEGs read at 256 px with a centre
crop (the ImageNet p_0, ``imagenet:...?size=256``). Each is opened with :func:`atebm.data.open_source` as the
presets name them and read in batches of the preset's batch size in the trainer's order (its seeded epoch stream):
in the training process (``fetch_batch``, ``num_workers=0``) and through :class:`atebm.data.loader.BatchLoader`
with 1 and 2 worker processes (steady state: the first batch, which pays the worker start, is not timed).

The trainer's consumption is ``2 x batch / (s per iteration)`` (a data and a p_0 batch per iteration), with s per
iteration at K = k_max from benchmarks/results/scale/presets.json (this CPU, one thread). A run is input-bound when
the in-process reader delivers fewer images per second than the trainer consumes; ``break_even_s_per_iteration``
is the iteration time below which it would be (compare a GPU's s/iteration with it).

Run: ``nice -n 10 python benchmarks/scale_input.py`` (writes benchmarks/results/scale/input.json).
"""
from __future__ import annotations

import argparse
import gzip
import json
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from _timing import environment
from atebm.data import open_source
from atebm.data.loader import BatchLoader
from atebm.training.trainer import _EpochStream, fetch_batch

RESULTS = Path(__file__).with_name("results") / "scale"


def write_files(root: Path, seed: int = 0) -> dict[str, str]:
    """Writes the synthetic files once; returns the source string of each format."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    tiny = root / "tiny_images.bin"
    if not tiny.exists():
        tiny.write_bytes(rng.integers(0, 256, size=(20000, 3072), dtype=np.uint8).tobytes())
    cifar = root / "cifar-10-batches-py"
    if not cifar.exists():
        cifar.mkdir()
        for b in range(1, 6):
            batch = {b"data": rng.integers(0, 256, size=(2000, 3072), dtype=np.uint8),
                     b"labels": rng.integers(0, 10, size=2000).tolist()}
            (cifar / f"data_batch_{b}").write_bytes(pickle.dumps(batch))
    idx = root / "train-images-idx3-ubyte.gz"
    if not idx.exists():
        n = 10000
        header = np.array([0x00000803, n, 28, 28], dtype=">i4").tobytes()
        idx.write_bytes(gzip.compress(header + rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8).tobytes()))
    for name, (w, h, suffix) in {"png256": (256, 256, "png"), "jpeg384x320": (384, 320, "jpg")}.items():
        folder = root / name
        if not folder.exists():
            folder.mkdir()
            for i in range(160):
                # smooth random images (a noise image would not compress like a photo)
                small = rng.integers(0, 256, size=(h // 16, w // 16, 3), dtype=np.uint8)
                Image.fromarray(small).resize((w, h), Image.BICUBIC).save(folder / f"{i:04d}.{suffix}")
    return {"tinyimages": f"tinyimages:{tiny}", "cifar10": f"cifar10:{cifar}?split=train",
            "idx": f"idx:{idx}?labels=none", "folder_png256": f"folder:{root / 'png256'}?size=256",
            "imagenet_jpeg": f"imagenet:{root / 'jpeg384x320'}?size=256"}


def reader_rate(source: Any, batch: int, batches: int, workers: int) -> dict[str, float]:
    stream = _EpochStream(len(source), seed=0)
    if workers == 0:
        fetch_batch(source, stream.next(batch))
        start_cpu, start = time.process_time(), time.perf_counter()
        for _ in range(batches):
            fetch_batch(source, stream.next(batch))
        return {"images_per_s_wall": batch * batches / (time.perf_counter() - start),
                "images_per_s_cpu": batch * batches / max(time.process_time() - start_cpu, 1e-9)}
    loader = BatchLoader(source, stream, batch, read=fetch_batch, num_workers=workers)
    try:
        loader.next()
        start = time.perf_counter()
        for _ in range(batches):
            loader.next()
        return {"images_per_s_wall": batch * batches / (time.perf_counter() - start)}
    finally:
        loader.close()


#: which sources each preset reads (data, p_0), in the formats written above
PRESET_SOURCES = {"mnist": ("embedded_mnist", "embedded_mnist"),  # p_0 photos: also an in-memory ImageSet
                  "cifar10": ("cifar10", "tinyimages"),
                  "celebahq256": ("folder_png256", "imagenet_jpeg"),
                  "afhqcat256": ("folder_png256", "imagenet_jpeg"),
                  "church256": ("folder_png256", "imagenet_jpeg")}
PRESET_BATCH = {"mnist": 32, "cifar10": 32, "celebahq256": 40, "afhqcat256": 40, "church256": 32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", default="/tmp/atebm_scale_input")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    specs = {"embedded_mnist": "mnist?split=train", **write_files(Path(args.tmp))}
    readers: dict[str, Any] = {}
    for name, spec in specs.items():
        start = time.perf_counter()
        source = open_source(spec)
        opened = time.perf_counter() - start
        batch = 40 if "256" in name or "jpeg" in name else 32
        rates = {f"workers_{w}": reader_rate(source, batch, args.batches, w) for w in args.workers}
        readers[name] = {"source": spec.replace(args.tmp, "<tmp>"), "items": len(source), "batch": batch,
                         "open_s": opened, "in_memory_after_open": not hasattr(source, "path") or name == "idx",
                         **rates}
        print(name, json.dumps(readers[name]), flush=True)
    presets_file = RESULTS / "presets.json"
    timing = {row["preset"]: row for row in json.loads(presets_file.read_text())["presets"]} \
        if presets_file.exists() else {}
    table = []
    for preset, (data_name, p0_name) in PRESET_SOURCES.items():
        batch = PRESET_BATCH[preset]
        row: dict[str, Any] = {"preset": preset, "batch": batch, "data_reader": data_name, "p0_reader": p0_name}
        rates = [readers[n]["workers_0"]["images_per_s_wall"] for n in (data_name, p0_name) if n in readers]
        if rates:  # the two readers run one after the other: their times add
            row["reader_images_per_s_in_process"] = 2 * batch / sum(batch / r for r in rates)
            row["break_even_s_per_iteration"] = 2 * batch / row["reader_images_per_s_in_process"]
        if preset in timing:
            s_it = timing[preset]["s_per_iteration_cpu"]
            row["cpu_s_per_iteration"] = s_it
            row["trainer_images_per_s_cpu"] = 2 * batch / s_it
            if rates:
                row["input_bound_on_this_cpu"] = row["reader_images_per_s_in_process"] < row["trainer_images_per_s_cpu"]
        row["gpu"] = "not measured (no GPU lent)"
        table.append(row)
    out = {"command": "nice -n 10 python benchmarks/scale_input.py " + " ".join(sys.argv[1:]),
           "environment": environment(),
           "note": "one torch thread per process on a shared 2-core machine (load average ~8-10); reader rates are "
                   "wall-clock images/s (a worker process competes for the same 2 cores)",
           "readers": readers, "presets": table,
           "median_in_process_rate": statistics.median(r["workers_0"]["images_per_s_wall"] for r in readers.values())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "input.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
