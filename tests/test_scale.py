"""Speed switches (mixed precision, channels-last, torch.compile) and the worker-process input pipeline.

Tolerances (bf16 keeps 8 bits of mantissa, a relative rounding of 2^-9 ~ 0.2 % per operation):
- one PGD direction (the unit-L2 input gradient, E Eq. 8) under bf16 autocast vs fp32: cosine >= 0.98 per sample;
- the training loss (BCE + R1) on a fixed batch: relative difference <= 2 %.
"""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import atebm
from atebm import Trainer
from atebm.data.loader import BatchLoader
from atebm.models.performance import AutocastScore, compile_score, resolve_precision
from atebm.presets import PRESETS
from atebm.sampling import autocast, input_gradient, pgd
from atebm.training.checkpoint import load_checkpoint
from atebm.training.trainer import _EpochStream, fetch_batch

MNIST_SPEC = PRESETS["mnist"].train["model"]
BF16_ON_CPU = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
COSINE_MIN = 0.98
LOSS_RTOL = 0.02


@pytest.fixture
def mnist_net_and_batch():
    torch.manual_seed(0)
    model = atebm.build_score_model(MNIST_SPEC)
    x = 0.25 + 0.5 * torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    return model, x


def test_bf16_pgd_directions_agree_with_fp32(mnist_net_and_batch, one_thread):
    model, x = mnist_net_and_batch
    step = 0.05  # small enough that no pixel reaches the [0, 1] box: x1 - x is step times the direction
    d32 = (pgd(model, x, steps=1, step_size=step) - x) / step
    d16 = (pgd(model, x, steps=1, step_size=step, precision="bf16") - x) / step
    assert torch.allclose(d32.flatten(1).norm(dim=1), torch.ones(16), atol=1e-4)
    cosine = F.cosine_similarity(d32.flatten(1), d16.flatten(1))
    assert float(cosine.min()) >= COSINE_MIN, f"bf16 directions deviate: min cosine {float(cosine.min()):.4f}"
    assert not torch.equal(d32, d16), "precision='bf16' left the passes in fp32"
    with autocast("bf16", "cpu"):
        scores, grad = input_gradient(model, x)
    assert scores.dtype == torch.bfloat16 and grad.dtype == torch.float32  # the iterate itself stays fp32


def test_bf16_loss_agrees_with_fp32_on_a_fixed_batch(mnist_net_and_batch, one_thread):
    model, x = mnist_net_and_batch
    x0 = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))

    def loss_and_r1(network):
        inputs = torch.cat([x, x0]).requires_grad_(True)
        scores = network(inputs)
        bce = F.binary_cross_entropy_with_logits(scores[:16], torch.ones(16)) + \
            F.binary_cross_entropy_with_logits(scores[16:], torch.zeros(16))
        (grad,) = torch.autograd.grad(scores[:16].sum(), inputs, create_graph=True)
        return float(bce.detach()), float(0.5 * grad[:16].detach().pow(2).flatten(1).sum(1).mean()), scores.dtype

    bce32, r1_32, _ = loss_and_r1(model)
    bce16, r1_16, dtype = loss_and_r1(AutocastScore(model, "bf16"))
    assert dtype == torch.float32  # the wrapper hands float32 scores to the loss
    assert abs(bce16 - bce32) <= LOSS_RTOL * abs(bce32)
    assert abs(r1_16 - r1_32) <= LOSS_RTOL * abs(r1_32)


def test_a_bf16_trainer_step_matches_fp32(monkeypatch, tiny_images, image_config, one_thread):
    # this CPU may lack native bf16, where the trainer falls back to fp32 and the comparison would be fp32 with fp32:
    # force the bf16 path (torch.autocast emulates bf16 on such a CPU; slower, same rounding)
    monkeypatch.setattr("atebm.training.trainer.resolve_precision", lambda precision, device: precision)
    data, p0 = tiny_images()
    config = image_config(k_start=2, k_max=2)
    fp32, fp32_again = Trainer(config, data, p0), Trainer(config, data, p0)
    bf16 = Trainer(config.replace(precision="bf16"), data, p0)
    assert bf16.precision == "bf16" and isinstance(bf16.network, AutocastScore)
    a, a_again, b = fp32.train_step(), fp32_again.train_step(), bf16.train_step()
    # near initialisation the BCE loss sits at 2 log 2 whatever the scores do, so the mean scores and R1 (the
    # quantities bf16 rounds) are held to the loss's tolerance as well
    for key in ("loss", "r1", "score_data", "score_adv"):
        assert a[key] == a_again[key], f"the fp32 step is not deterministic ({key}): the comparison means nothing"
        assert abs(a[key] - b[key]) <= LOSS_RTOL * abs(a[key]), f"{key}: bf16 {b[key]:.6g} vs fp32 {a[key]:.6g}"
    assert a["score_data"] != b["score_data"], "precision='bf16' left the trainer's forward pass in fp32"


def test_fp16_runs_with_a_gradient_scaler_whose_state_is_checkpointed(tmp_path, monkeypatch, tiny_images,
                                                                       image_config, one_thread):
    # this CPU may lack native fp16 (the trainer would fall back to fp32): force the fp16 path to exercise the scaler
    monkeypatch.setattr("atebm.training.trainer.resolve_precision", lambda precision, device: precision)
    data, p0 = tiny_images()
    config = image_config(k_start=2, k_max=2, max_iters=4, ckpt_every=2, grad_clip=1.0)
    fp32 = Trainer(config, data, p0)
    fp16 = Trainer(config.replace(precision="fp16"), data, p0, out_dir=tmp_path / "run")
    assert fp16.grad_scaler.is_enabled() and not fp32.grad_scaler.is_enabled()
    a, b = fp32.train_step(), fp16.train_step()
    assert abs(a["loss"] - b["loss"]) <= LOSS_RTOL * abs(a["loss"])
    fp16.fit()
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["trainer"]["grad_scaler"]
    assert saved["scale"] == fp16.grad_scaler.get_scale() > 0
    resumed = Trainer.resume(tmp_path / "run" / "checkpoint.pt", data, p0)
    assert resumed.grad_scaler.get_scale() == fp16.grad_scaler.get_scale()


def test_precision_a_device_lacks_falls_back_to_fp32_with_a_log_line(caplog):
    fp16_native = bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    with caplog.at_level(logging.WARNING, logger="atebm.performance"):
        resolved = resolve_precision("fp16", "cpu")
    assert resolved == ("fp16" if fp16_native else "fp32")
    assert fp16_native or "precision fp16 ignored" in caplog.text
    assert resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        atebm.TrainConfig(precision="half", max_iters=1)


def test_channels_last_trains_the_same_up_to_rounding(tiny_images, image_config, one_thread):
    data, p0 = tiny_images()
    config = image_config(k_start=2, k_max=2, max_iters=3)
    nchw, nhwc = Trainer(config, data, p0), Trainer(config.replace(channels_last=True), data, p0)
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        a, b = nchw.train_step(), nhwc.train_step()
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    for (name, p), q in zip(nchw.model.named_parameters(), nhwc.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")),
                    reason="torch.compile (inductor) needs a C compiler on the PATH")
def test_compile_gives_the_scores_and_gradients_of_eager(one_thread):
    torch.manual_seed(0)
    model = atebm.build_score_model({"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}})
    compiled = compile_score(model)
    assert compile_score(model, enabled=False) is model
    x = torch.rand(4, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    s_eager, g_eager = input_gradient(model, x)
    s_comp, g_comp = input_gradient(compiled, x)
    assert torch.allclose(s_comp, s_eager, rtol=1e-4, atol=1e-5)
    assert torch.allclose(g_comp, g_eager, rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------------------------------------ input pipeline
class _FileLike:
    """A source read row by row (as the file readers are), not a tensor: the trainer hands it to workers."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[torch.as_tensor(indices)].clone()


def test_batch_loader_delivers_the_streams_batches_in_order():
    images = torch.rand(50, 1, 4, 4)
    stream, reference = _EpochStream(50, seed=3), _EpochStream(50, seed=3)
    loader = BatchLoader(_FileLike(images), stream, 8, read=fetch_batch, num_workers=2)
    try:
        for _ in range(15):  # crosses two epoch boundaries
            indices, x = loader.next()
            expected = reference.next(8)
            assert torch.equal(indices, expected) and torch.equal(x, images[expected])
    finally:
        loader.close()
    assert stream.state() == {"epoch": 0, "position": 0}, "the loader must not advance the trainer's stream"
    with pytest.raises(ValueError, match="num_workers >= 1"):
        BatchLoader(images, stream, 8, read=fetch_batch, num_workers=0)


def test_workers_train_exactly_as_in_process_and_resume_with_workers(tmp_path, tiny_images, image_config,
                                                                     assert_same_state, one_thread):
    data, p0 = (_FileLike(t) for t in tiny_images())
    config = image_config(augment_flip=True)
    plain = Trainer(config, data, p0, out_dir=tmp_path / "plain")
    plain.fit()
    with_workers = Trainer(config.replace(num_workers=2), data, p0)
    with_workers.fit()
    assert not with_workers._loaders, "fit() stops its workers"
    assert_same_state(plain.model.state_dict(), with_workers.model.state_dict(), "2 workers vs in-process")

    part = Trainer(config.replace(max_iters=12, num_workers=2), data, p0, out_dir=tmp_path / "part")
    part.fit()
    del part
    resumed = Trainer.resume(tmp_path / "part" / "checkpoint.pt", data, p0,
                             overrides={"max_iters": 24, "num_workers": 1})
    assert resumed.config.num_workers == 1 and resumed.step == 12
    resumed.fit()
    assert_same_state(plain.model.state_dict(), resumed.model.state_dict(), "resumed with workers vs uninterrupted")
    assert np.isclose(plain.history[-1]["loss"], resumed.history[-1]["loss"])
