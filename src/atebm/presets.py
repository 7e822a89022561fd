"""Training presets: the embedded CPU default and the published settings (METHOD Sec. 2; E supp. Tab. 3).

A preset names its data as source strings (see :data:`atebm.data.sources.SOURCE_GRAMMAR`), the training config,
the generation settings used by ``atebm sample``, and the hardware and wall-clock it was measured (or published)
with. The big presets read files the user supplies: pass ``data=...`` and ``p0=...`` on the command line.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from .training import TrainConfig

__all__ = ["Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    data: str
    p0: str
    seeds: str
    size: int
    channels: int
    train: dict[str, Any]
    generate: dict[str, Any]
    hardware: str
    wall_clock: str
    needs_files: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, **overrides: Any) -> TrainConfig:
        return TrainConfig.from_dict({**copy.deepcopy(self.train), **overrides})


def _published(name: str, *, arch: dict[str, Any], data: str, p0: str, seeds: str, size: int, batch: int,
               iters: int, lr: float, k_max: int, epochs_per_k: float, step: float, r1: float, gen_steps: int,
               gen_step: float, blur: float, needs: str, wall: str) -> Preset:
    return Preset(
        name=name, description=f"published {name} setting (E supp. Tab. 3)", data=data, p0=p0, seeds=seeds,
        size=size, channels=3,
        train=dict(model=arch, batch_size=batch, lr=lr, optimizer="adam", betas=(0.0, 0.99), k_start=0,
                   k_max=k_max, epochs_per_k=epochs_per_k, auc_window=100, auc_threshold=0.8, max_iters=iters,
                   step_size=step, pgd_norm="l2", pgd_eps=math.inf, r1=r1, augment_crop_scale=(0.9, 1.0),
                   augment_flip=True, freeze_bn=True, log_every=100, ckpt_every=2000,
                   # GPU defaults: bf16 autocast + NHWC (a device without bf16 runs fp32 and says so in the log)
                   precision="bf16", channels_last=True, num_workers=4),
        generate=dict(steps=gen_steps, step_size=gen_step, blur=blur, n=64),
        hardware="1 GPU (the papers name an RTX 2080 Ti, G Tab. 7)", wall_clock=wall, needs_files=needs)


_IMAGENET_NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

PRESETS: dict[str, Preset] = {
    "mnist": Preset(
        name="mnist",
        description="MNIST 5,000 vs natural-photo patches, small ConvNet; the CPU default and `atebm demo`",
        data="mnist?split=train", p0="photos?split=train&n=20000", seeds="photos?split=test&n=256",
        size=28, channels=1,
        train=dict(model={"arch": "convnet", "kwargs": {"in_channels": 1, "width": 16, "activation": "lrelu",
                                                         "downsample": "avgpool", "head": "flatten",
                                                         "input_size": 28, "head_hidden": 256},
                          "mean": 0.5, "std": 0.5},
                   batch_size=32, lr=1e-3, optimizer="adam", betas=(0.0, 0.99), k_start=0, k_max=16,
                   epochs_per_k=2.0, auc_window=10, auc_threshold=0.8, max_iters=2000, step_size=1.0,
                   pgd_norm="l2", pgd_eps=math.inf, r1=1.0, ema_decay=0.99, log_every=25, ckpt_every=200),
        generate=dict(steps=32, step_size=1.0, blur=0.0, n=256),
        hardware="2 CPU cores", wall_clock="see README (measured by `atebm demo`)"),
    "cifar10": _published(
        "cifar10", arch={"arch": "cifar_resnet", "kwargs": {"depth": 50, "in_channels": 3, "out_dim": 1},
                         "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
        data="cifar10:data/cifar-10-batches-py?split=train", p0="tinyimages:data/tiny_images.bin",
        seeds="tinyimages:data/tiny_images.bin?n=50000&seed=1", size=32, batch=32, iters=172_000, lr=5e-4,
        k_max=25, epochs_per_k=5, step=0.1, r1=0.01, gen_steps=32, gen_step=0.2, blur=0.0,
        needs="CIFAR-10 python batches (data=cifar10:PATH) and the 80M Tiny Images binary (p0=tinyimages:PATH)",
        wall="GPU not measured; one CPU thread: 43 s/iteration at K=25, ~86 days (benchmarks/results/scale)"),
    "celebahq256": _published(
        "celebahq256", arch={"arch": "discriminator", "kwargs": {"resolution": 256}, **_IMAGENET_NORM},
        data="folder:data/celeba_hq?size=256", p0="imagenet:data/imagenet/train?size=256",
        seeds="imagenet:data/imagenet/val?size=256&n=64", size=256, batch=40, iters=218_000, lr=5e-5,
        k_max=40, epochs_per_k=5, step=2.0, r1=30.0, gen_steps=20, gen_step=8.0, blur=10.0,
        needs="CelebA-HQ 256 images (data=folder:PATH) and an ImageNet folder (p0=imagenet:PATH)",
        wall="GPU not measured; one CPU thread: ~900 s/iteration at K=40 (benchmarks/results/scale)"),
    "afhqcat256": _published(
        "afhqcat256", arch={"arch": "discriminator", "kwargs": {"resolution": 256}, **_IMAGENET_NORM},
        data="folder:data/afhq/train/cat?size=256", p0="imagenet:data/imagenet/train?size=256",
        seeds="imagenet:data/imagenet/val?size=256&n=64", size=256, batch=40, iters=225_000, lr=5e-5,
        k_max=25, epochs_per_k=50, step=2.0, r1=100.0, gen_steps=14, gen_step=8.0, blur=10.0,
        needs="AFHQ cat images (data=folder:PATH) and an ImageNet folder (p0=imagenet:PATH)",
        wall="GPU not measured; one CPU thread: ~650 s/iteration at K=25 (benchmarks/results/scale)"),
    "church256": _published(
        "church256", arch={"arch": "discriminator", "kwargs": {"resolution": 256}, **_IMAGENET_NORM},
        data="folder:data/lsun_church?size=256", p0="imagenet:data/imagenet/train?size=256",
        seeds="imagenet:data/imagenet/val?size=256&n=64", size=256, batch=32, iters=215_000, lr=5e-5,
        k_max=35, epochs_per_k=1, step=2.0, r1=100.0, gen_steps=17, gen_step=8.0, blur=10.0,
        needs="LSUN church images exported to a folder (data=folder:PATH) and an ImageNet folder (p0=imagenet:PATH)",
        wall="GPU not measured; one CPU thread: ~650 s/iteration at K=35 (benchmarks/results/scale)"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)} (see `atebm presets`)")
    return PRESETS[name]
