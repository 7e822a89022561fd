"""The trainer (E Alg. 1-2): loss and K schedule, budgets, R1, in-distribution AT, frozen BatchNorm, augmentation,
exact resume, checkpoints and DDP against the one-process run of the same global batch."""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import atebm
from atebm import TrainConfig, Trainer
from atebm.training import CheckpointError, load_checkpoint, save_checkpoint
from atebm.training.trainer import augment, batch_auc


def test_batch_auc_hand_cases():
    assert batch_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert batch_auc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    assert batch_auc(torch.tensor([1.0, 1.0]), torch.tensor([1.0])) == 0.5


def test_loss_falls_and_k_advances_on_a_2d_gaussian(tmp_path, toy2d, config_2d, box_2d):
    data, p0 = toy2d()
    trainer = Trainer(config_2d(), data, p0, out_dir=tmp_path, extra=box_2d)
    history = trainer.fit()
    assert history[0]["k"] == 0 and trainer.k > 0
    ks = [r["k"] for r in history]
    assert ks == sorted(ks)
    with torch.no_grad():
        model = atebm.load_model(tmp_path)
        assert model(data).sigmoid().mean() > model(p0[(p0.norm(dim=1) > 2.5)]).sigmoid().mean() + 0.2
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == len(history)
    for key in ("loss", "auc_adv", "auc_clean", "k", "perturbation_l2", "iters_per_s"):
        assert key in json.loads(lines[-1])
    assert json.loads((tmp_path / "config.json").read_text())["train"]["k_max"] == 4


def test_loss_falls_from_chance_at_fixed_k(toy2d, config_2d, box_2d):
    data, p0 = toy2d()
    history = Trainer(config_2d(k_max=0, max_iters=80), data, p0, extra=box_2d).fit()
    assert history[0]["loss"] > history[-1]["loss"] + 0.3
    assert history[-1]["loss"] < math.log(4) - 0.5  # BCE at chance is log 4


def test_auc_gate_advances_k_before_the_epoch_limit(toy2d, config_2d, box_2d):
    data, p0 = toy2d()
    gated = Trainer(config_2d(epochs_per_k=100, auc_threshold=0.6, max_iters=60), data, p0, extra=box_2d)
    gated.fit()
    assert gated.k > 0  # the epoch limit (100 epochs) was never reached: the AUC gate moved K
    never = Trainer(config_2d(epochs_per_k=100, auc_threshold=1.0, max_iters=60), data, p0, extra=box_2d)
    never.fit()
    assert never.k == 0


def test_final_stage_ends_on_its_budget(toy2d, config_2d, box_2d):
    data, p0 = toy2d()
    trainer = Trainer(config_2d(k_max=1, epochs_per_k=0.5, final_iters=7, max_iters=None), data, p0, extra=box_2d)
    trainer.fit()
    assert trainer.k == 1 and trainer.k_iters == 7
    assert trainer.stop_reason == "final-stage budget reached"


def test_time_budget_stops_training(toy2d, config_2d, box_2d):
    data, p0 = toy2d(256)
    budget, cap = 1.0, 1_000_000
    trainer = Trainer(config_2d(max_iters=cap, time_budget_s=budget), data, p0, extra=box_2d)
    start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - start
    assert trainer.stop_reason == "time budget reached"
    assert 0 < trainer.step < cap
    assert trainer.elapsed_s >= budget
    assert wall < budget + 30, "training went on long after its time budget"


def test_config_requires_a_budget_and_rejects_bad_values():
    with pytest.raises(ValueError, match="budget"):
        TrainConfig(max_iters=None, final_iters=None)
    with pytest.raises(ValueError, match="k_start"):
        TrainConfig(k_start=5, k_max=2, max_iters=1)
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) \['lr_typo'\]"):
        TrainConfig.from_dict({"max_iters": 1, "lr_typo": 0.1})


# ------------------------------------------------------------------------------------------------ R1 (E Sec. 4.4)
def _one_sgd_step_on_a_linear_score(spec: dict, r1: float) -> tuple[Trainer, torch.Tensor, float]:
    """f(x) = w.x + b, p_data = the point (2, 2), p_0 = the point (-1, -3), K = 0, plain SGD, one iteration."""
    data, p0 = torch.full((16, 2), 2.0), torch.tensor([[-1.0, -3.0]]).repeat(16, 1)
    config = TrainConfig(model=spec, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.0, k_max=0, max_iters=1,
                         r1=r1, log_every=1, ckpt_every=1000, progress=False, device="cpu")
    trainer = Trainer(config, data, p0, extra={"clamp": None})
    layer = trainer.model.backbone.net[0]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.25]]))
        layer.bias.fill_(0.1)
    trainer.fit()
    return trainer, layer.weight.detach().clone().view(-1), float(layer.bias.detach())


def test_r1_value_and_gradient_on_a_linear_score(linear_2d_spec):
    """R1 = gamma/2 E_data ||grad_x f||^2 (E Sec. 4.4); for f(x) = w.x + b it is gamma/2 ||w||^2, whose gradient
    gamma w is added to the BCE gradient and leaves the bias alone."""
    gamma, lr = 2.0, 0.1
    w, b = torch.tensor([0.5, -0.25]), 0.1
    x, x0 = torch.tensor([2.0, 2.0]), torch.tensor([-1.0, -3.0])
    f, f0 = float(w @ x + b), float(w @ x0 + b)
    sig = lambda v: 1 / (1 + math.exp(-v))
    grad_w = -(1 - sig(f)) * x + sig(f0) * x0 + gamma * w
    grad_b = -(1 - sig(f)) + sig(f0)
    r1_value = 0.5 * float(w @ w)

    trainer, w_after, b_after = _one_sgd_step_on_a_linear_score(linear_2d_spec, gamma)
    record = trainer.history[0]
    assert record["r1"] == pytest.approx(r1_value, rel=1e-6)
    bce = math.log1p(math.exp(-f)) + math.log1p(math.exp(f0))
    assert record["loss"] == pytest.approx(bce + gamma * r1_value, rel=1e-6)
    assert torch.allclose(w_after, w - lr * grad_w, atol=1e-6)
    assert b_after == pytest.approx(b - lr * grad_b, abs=1e-6)

    _, w_plain, b_plain = _one_sgd_step_on_a_linear_score(linear_2d_spec, 0.0)
    assert torch.allclose(w_after - w_plain, -lr * gamma * w, atol=1e-6)
    assert b_after == pytest.approx(b_plain, abs=1e-7)


def test_r1_is_measured_on_the_data_batch_not_on_p0(toy2d, config_2d, box_2d):
    data, p0 = toy2d(256)
    trainer = Trainer(config_2d(r1=1.0, k_max=0), data, p0, extra=box_2d)
    model = copy.deepcopy(trainer.model).eval()
    data_index = copy.deepcopy(trainer.data_stream).next(trainer.local_batch)
    p0_index = copy.deepcopy(trainer.p0_stream).next(trainer.local_batch)

    def half_mean_squared_gradient(x):
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).sum(), x)
        return float(0.5 * grad.pow(2).sum(1).mean())

    on_data, on_p0 = half_mean_squared_gradient(data[data_index]), half_mean_squared_gradient(p0[p0_index])
    assert abs(on_data - on_p0) > 0.1 * on_data, "the check needs a score whose gradient differs on the two sets"
    assert trainer.train_step()["r1"] == pytest.approx(on_data, rel=1e-5)


def _sgd_step_with_r1(model, x, x0, r1, lr, *, apart=False):
    """One SGD step of binary AT with R1 (E Sec. 4.4) computed by hand: one forward of the whole batch, R1 =
    0.5 mean_data ||grad_x f||^2 through that pass (``apart=True``: the data and x* scored by two forwards).
    Returns the parameters after the step."""
    model = copy.deepcopy(model).train()
    m = x.shape[0]
    if apart:
        inputs = x.clone().requires_grad_(True)
        s_data, s_adv = model(inputs), model(x0)
    else:
        inputs = torch.cat([x, x0]).requires_grad_(True)
        scores = model(inputs)
        s_data, s_adv = scores[:m], scores[m:]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    loss = bce(s_data, torch.ones_like(s_data)) + bce(s_adv, torch.zeros_like(s_adv))
    (grad_x,) = torch.autograd.grad(s_data.sum(), inputs, create_graph=True)
    loss = loss + r1 * 0.5 * grad_x[:m].pow(2).flatten(1).sum(1).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return [(p - lr * g).detach() for p, g in zip(model.parameters(), grads)]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_r1_step_equals_the_penalty_through_one_pass_of_the_whole_batch(tiny_images, image_config, batchnorm):
    """The trainer scores the data apart from x* when the network scores each sample on its own (R1's passes then
    skip the p_0 half) and in one pass when BatchNorm's batch statistics couple the samples; either way a step
    equals the hand-computed step of one joint pass, up to the summation order of floating point."""
    data, p0 = tiny_images(64)
    data = 0.2 + 0.3 * data  # batch statistics unlike p_0's, so that scoring the halves apart would show
    spec = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4, "batchnorm": batchnorm}}
    lr, r1 = 0.05, 1.0
    trainer = Trainer(image_config(model=spec, optimizer="sgd", lr=lr, r1=r1, k_start=0, k_max=0), data, p0)
    x = data[copy.deepcopy(trainer.data_stream).next(trainer.local_batch)]
    x0 = p0[copy.deepcopy(trainer.p0_stream).next(trainer.local_batch)]
    expected = _sgd_step_with_r1(trainer.model, x, x0, r1, lr)
    apart = _sgd_step_with_r1(trainer.model, x, x0, r1, lr, apart=True)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step()
    names = [name for name, _ in trainer.model.named_parameters()]
    for name, after, want, start in zip(names, [p.detach() for p in trainer.model.parameters()], expected, before):
        assert not torch.equal(after, start), f"{name} did not move"
        assert torch.allclose(after, want, atol=1e-6, rtol=1e-5), f"{name}: {float((after - want).abs().max()):.2e}"
    if batchnorm:  # the tolerance separates right from wrong: with BatchNorm, two passes give another step
        assert max(float((a - b).abs().max()) for a, b in zip(apart, expected)) > 1e-4


# ------------------------------------------------------------------------------------------------ in-distribution AT
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_in_distribution_at_moves_data_inside_its_ball_and_lowers_the_score(toy2d, config_2d, box_2d, norm):
    data, p0 = toy2d(256)
    eps = 0.25 if norm == "l2" else 0.1
    changes = dict(indist_at_eps=eps, indist_at_step_size=eps / 2, pgd_norm=norm, k_max=0, max_iters=10)
    trainer = Trainer(config_2d(indist_at_steps=4, **changes), data, p0, extra=box_2d)
    plain = Trainer(config_2d(indist_at_steps=0, **changes), data, p0, extra=box_2d)
    trainer.fit()  # a partly trained score has clear gradients

    def step_and_batch(t: Trainer) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
        before = copy.deepcopy(t.model).eval()
        index = copy.deepcopy(t.data_stream).next(t.local_batch)
        return before, data[index], t.train_step()["_x_data"]

    _, clean, used = step_and_batch(plain)
    assert torch.equal(used, clean), "without in-distribution AT the trainer uses the data batch as drawn"

    model, clean, used = step_and_batch(trainer)
    delta = (used - clean).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert (size <= eps + 1e-5).all(), f"moved outside the {norm} ball of radius {eps}: max {float(size.max())}"
    assert (size > 0.5 * eps).all(), "every data point is moved"
    with torch.no_grad():
        assert (model(used) < model(clean)).all(), "descent lowers the score of every data point"


# ------------------------------------------------------------------------------------------------ frozen BatchNorm
def _batchnorm_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_batchnorm_statistics_fixed(tiny_images, image_config, freeze):
    data, p0 = tiny_images(64)
    spec = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4, "batchnorm": True}}
    trainer = Trainer(image_config(model=spec, freeze_bn=freeze, max_iters=6, r1=0.0), data, p0)
    stats_before = _batchnorm_buffers(trainer.model)
    affine_before = trainer.model.backbone.features[1].weight.detach().clone()
    assert stats_before and isinstance(trainer.model.backbone.features[1], torch.nn.BatchNorm2d)
    trainer.fit()
    stats_after = _batchnorm_buffers(trainer.model)
    changed = [k for k in stats_before if not torch.equal(stats_before[k], stats_after[k])]
    if freeze:
        assert changed == [], f"freeze_bn=True moved the BatchNorm statistics {changed}"
        assert not torch.equal(affine_before, trainer.model.backbone.features[1].weight), \
            "BatchNorm's affine weights still train when its statistics are frozen"
    else:
        assert len(changed) == len(stats_before), "without freeze_bn every BatchNorm statistic is updated"


# ------------------------------------------------------------------------------------------------ resume, checkpoints
@pytest.mark.parametrize("kind", ["2d", "images"])
def test_resume_equals_an_uninterrupted_run(tmp_path, kind, toy2d, config_2d, box_2d, tiny_images, image_config,
                                            assert_same_state):
    if kind == "2d":
        data, p0 = toy2d(256)
        cfg, extra = config_2d(max_iters=24, ckpt_every=12, r1=0.1), box_2d
    else:
        data, p0 = tiny_images()
        cfg, extra = image_config(augment_crop_scale=(0.8, 1.0), augment_flip=True), None
    full = Trainer(cfg, data, p0, out_dir=tmp_path / "full", extra=extra)
    full.fit()

    part = Trainer(cfg.replace(max_iters=12), data, p0, out_dir=tmp_path / "part", extra=extra)
    part.fit()
    del part
    resumed = Trainer.resume(tmp_path / "part" / "checkpoint.pt", data, p0, overrides={"max_iters": 24})
    assert resumed.step == 12
    resumed.fit()
    assert resumed.step == full.step and resumed.k == full.k
    assert_same_state(full.model.state_dict(), resumed.model.state_dict(), "resumed vs uninterrupted model")
    assert_same_state(full.optimizer.state_dict()["state"][0], resumed.optimizer.state_dict()["state"][0],
                      "optimiser moments of the first parameter")


def test_truncated_or_corrupt_checkpoint_gives_a_clear_error_and_keeps_the_previous(tmp_path, toy2d, config_2d,
                                                                                      box_2d):
    data, p0 = toy2d(256)
    trainer = Trainer(config_2d(max_iters=20, ckpt_every=10), data, p0, out_dir=tmp_path, extra=box_2d)
    trainer.fit()
    path = tmp_path / "checkpoint.pt"
    prev = tmp_path / "checkpoint.pt.prev"
    assert load_checkpoint(path)["trainer"]["step"] == 20
    assert load_checkpoint(prev)["trainer"]["step"] == 10
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*previous good checkpoint"):
        atebm.load_model(path)
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        Trainer.resume(path, data, p0)
    assert atebm.load_model(prev) is not None
    with pytest.raises(CheckpointError, match="not found"):
        atebm.load_model(tmp_path / "missing.pt")


def test_a_crash_while_writing_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    model = atebm.build_score_model({"arch": "mlp2d"})
    save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict(), "config": {}, "trainer": None})
    good = path.read_bytes()

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises((CheckpointError, OSError)) as failure:
        save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict()})
    assert str(path) in str(failure.value) and "disk full" in str(failure.value)
    assert path.read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------ augmentation
def test_augment_keeps_shape_range_and_is_identity_when_off():
    x = torch.rand(8, 1, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, None, False, g), x)
    y = augment(x, (0.9, 1.0), True, g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(y, x, atol=1e-3), "a crop of 90-100 % of the area changes the images"


def test_flip_mirrors_some_samples_and_leaves_the_others():
    x = torch.rand(16, 3, 8, 8)  # random pixels: no image equals its own mirror
    out = augment(x, None, True, torch.Generator().manual_seed(3))
    same = torch.tensor([torch.allclose(o, s, atol=1e-5) for o, s in zip(out, x)])
    mirrored = torch.tensor([torch.allclose(o, s.flip(-1), atol=1e-5) for o, s in zip(out, x)])
    assert not (same & mirrored).any()
    assert (same | mirrored).all(), "a flip is an exact left-right mirror (or nothing)"
    assert mirrored.any() and same.any(), f"with this generator some samples flip and some do not: {mirrored}"
    again = augment(x, None, True, torch.Generator().manual_seed(3))
    assert torch.equal(again, out), "the same generator state gives the same flips"

    many = torch.rand(2000, 1, 4, 4)
    flipped = augment(many, None, True, torch.Generator().manual_seed(0))
    fraction = sum(torch.allclose(o, s.flip(-1), atol=1e-5) for o, s in zip(flipped, many)) / len(many)
    assert fraction == pytest.approx(0.5, abs=0.05), "each sample flips with probability 1/2"


# ------------------------------------------------------------------------------------------------ DDP
def _ddp_worker():
    path = Path(__file__).with_name("ddp_worker.py")
    spec = importlib.util.spec_from_file_location("atebm_ddp_worker", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


@pytest.mark.xdist_group("torchrun")
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path, one_thread):
    """2 gloo ranks x 32 samples and 1 process x 64 samples draw the same 64 indices per iteration (each rank
    takes an interleaved share of one seeded permutation), PGD is per sample, and DDP averages the two ranks'
    gradients of their batch means, which is the gradient of the mean over the 64. So the parameters agree up to
    the summation order of floating point."""
    worker, module = _ddp_worker()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
         str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("DDP-RESULT "))
    info = json.loads(line[len("DDP-RESULT "):])
    assert info["world"] == 2 and info["same_params"] and info["step"] == 40 and info["k"] == 3
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["world"] == 2

    config, data, p0, extra = module.setup()
    single = Trainer(config, data, p0, extra=extra)
    single.fit()
    assert single.world == 1 and single.step == 40 and single.k == 3
    ddp_state = torch.load(tmp_path / "ddp_final_state.pt", weights_only=True)
    start = Trainer(config, data, p0, extra=extra).model.state_dict()
    # measured: the runs differ by <= 2e-7 while training moved every tensor by about 0.1
    for name, value in single.model.state_dict().items():
        if name in ("mean", "std"):
            continue
        assert float((value - start[name]).abs().max()) > 0.01, f"{name} barely trained"
        gap = float((ddp_state[name] - value).abs().max())
        assert gap < 1e-5, f"{name}: the DDP and one-process runs differ by {gap:.2e}"
    # the tolerance separates right from wrong: one process on a rank's share (batch 32) ends far away
    half = Trainer(config.replace(batch_size=32), data, p0, extra=extra)
    half.fit()
    gaps = [float((ddp_state[k] - v).abs().max()) for k, v in half.model.state_dict().items()]
    assert max(gaps) > 1e-3
