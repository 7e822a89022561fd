import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import atebm
from atebm import TrainConfig, Trainer
from atebm.training import CheckpointError, load_checkpoint, save_checkpoint
from atebm.training.trainer import augment, batch_auc

BOX = {"clamp": (-4.0, 4.0)}


def gaussian_vs_uniform(n=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * 0.5, torch.rand(n, 2, generator=g) * 8 - 4


def config_2d(**changes):
    base = dict(model={"arch": "mlp2d", "kwargs": {"hidden": 32, "depth": 2}}, batch_size=64, lr=2e-3, k_max=4,
                epochs_per_k=2, auc_window=10, step_size=0.3, max_iters=200, log_every=10, ckpt_every=50,
                progress=False)
    base.update(changes)
    return TrainConfig(**base)


def test_batch_auc_hand_cases():
    assert batch_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert batch_auc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    assert batch_auc(torch.tensor([1.0, 1.0]), torch.tensor([1.0])) == 0.5


def test_loss_falls_and_k_advances_on_a_2d_gaussian(tmp_path):
    data, p0 = gaussian_vs_uniform()
    trainer = Trainer(config_2d(), data, p0, out_dir=tmp_path, extra=BOX)
    history = trainer.fit()
    assert history[0]["k"] == 0 and trainer.k > 0
    ks = [r["k"] for r in history]
    assert ks == sorted(ks)
    with torch.no_grad():
        model = atebm.load(tmp_path)
        assert model(data).sigmoid().mean() > model(p0[(p0.norm(dim=1) > 2.5)]).sigmoid().mean() + 0.2
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == len(history)
    for key in ("loss", "auc_adv", "auc_clean", "k", "perturbation_l2", "iters_per_s"):
        assert key in json.loads(lines[-1])
    assert json.loads((tmp_path / "config.json").read_text())["train"]["k_max"] == 4


def test_loss_falls_from_chance_at_fixed_k():
    data, p0 = gaussian_vs_uniform()
    history = Trainer(config_2d(k_max=0, max_iters=80), data, p0, extra=BOX).fit()
    assert history[0]["loss"] > history[-1]["loss"] + 0.3
    assert history[-1]["loss"] < math.log(4) - 0.5  # BCE at chance is log 4


def test_auc_gate_advances_k_before_the_epoch_limit():
    data, p0 = gaussian_vs_uniform()
    gated = Trainer(config_2d(epochs_per_k=100, auc_threshold=0.6, max_iters=60), data, p0, extra=BOX)
    gated.fit()
    assert gated.k > 0  # the epoch limit (100 epochs) was never reached: the AUC gate moved K
    never = Trainer(config_2d(epochs_per_k=100, auc_threshold=1.0, max_iters=60), data, p0, extra=BOX)
    never.fit()
    assert never.k == 0


def test_final_stage_ends_on_its_budget():
    data, p0 = gaussian_vs_uniform()
    trainer = Trainer(config_2d(k_max=1, epochs_per_k=0.5, final_iters=7, max_iters=None), data, p0, extra=BOX)
    trainer.fit()
    assert trainer.k == 1 and trainer.k_iters == 7
    assert trainer.stop_reason == "final-stage budget reached"


def test_config_requires_a_budget_and_rejects_bad_values():
    with pytest.raises(ValueError, match="budget"):
        TrainConfig(max_iters=None, final_iters=None)
    with pytest.raises(ValueError, match="k_start"):
        TrainConfig(k_start=5, k_max=2, max_iters=1)
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"max_iters": 1, "lr_typo": 0.1})


@pytest.mark.parametrize("kind", ["2d", "images"])
def test_resume_equals_an_uninterrupted_run(tmp_path, kind):
    if kind == "2d":
        data, p0 = gaussian_vs_uniform(256)
        cfg = config_2d(max_iters=24, ckpt_every=12, r1=0.1)
        extra = BOX
    else:
        g = torch.Generator().manual_seed(0)
        data, p0 = torch.rand(96, 1, 12, 12, generator=g), torch.rand(96, 1, 12, 12, generator=g)
        cfg = TrainConfig(model={"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}}, batch_size=16,
                          k_max=3, epochs_per_k=1, auc_window=3, step_size=0.5, r1=0.1, max_iters=24,
                          ckpt_every=12, log_every=6, augment_crop_scale=(0.8, 1.0), augment_flip=True,
                          progress=False)
        extra = None
    full = Trainer(cfg, data, p0, out_dir=tmp_path / "full", extra=extra)
    full.fit()

    part = Trainer(cfg.replace(max_iters=12), data, p0, out_dir=tmp_path / "part", extra=extra)
    part.fit()
    del part
    resumed = Trainer.resume(tmp_path / "part" / "checkpoint.pt", data, p0, overrides={"max_iters": 24})
    assert resumed.step == 12
    resumed.fit()
    assert resumed.step == full.step and resumed.k == full.k
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_truncated_or_corrupt_checkpoint_gives_a_clear_error_and_keeps_the_previous(tmp_path):
    data, p0 = gaussian_vs_uniform(256)
    trainer = Trainer(config_2d(max_iters=20, ckpt_every=10), data, p0, out_dir=tmp_path, extra=BOX)
    trainer.fit()
    path = tmp_path / "checkpoint.pt"
    prev = tmp_path / "checkpoint.pt.prev"
    assert load_checkpoint(path)["trainer"]["step"] == 20
    assert load_checkpoint(prev)["trainer"]["step"] == 10
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*previous good checkpoint"):
        atebm.load(path)
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        Trainer.resume(path, data, p0)
    assert atebm.load(prev) is not None
    with pytest.raises(CheckpointError, match="not found"):
        atebm.load(tmp_path / "missing.pt")


def test_a_crash_while_writing_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    model = atebm.build_score_model({"arch": "mlp2d"})
    save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict(), "config": {}, "trainer": None})
    good = path.read_bytes()

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict()})
    assert path.read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_augment_keeps_shape_range_and_is_identity_when_off():
    x = torch.rand(8, 1, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, None, False, g), x)
    y = augment(x, (0.9, 1.0), True, g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    flipped = augment(x, None, True, torch.Generator().manual_seed(3))
    per_sample = [torch.allclose(f, s, atol=1e-5) or torch.allclose(f, s.flip(-1), atol=1e-5)
                  for f, s in zip(flipped, x)]
    assert all(per_sample)


def test_two_process_ddp_run_trains(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
         str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("DDP-RESULT "))
    info = json.loads(line[len("DDP-RESULT "):])
    assert info["world"] == 2 and info["same_params"] and info["step"] == 40 and info["k"] > 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["world"] == 2
