"""The maximum-likelihood EBM baseline (SGLD + replay buffer) and the E Sec. 5.3 stability ablation."""
from __future__ import annotations

import math

import pytest
import torch

import atebm
from atebm.baselines import EBMConfig, EBMTrainer, ReplayBuffer, growth_summary, logit_gap_trace
from atebm.toy2d import energy_distance, get_dataset, mlp2d_spec, sample_p0

pytestmark = pytest.mark.usefixtures("one_thread")


def test_replay_buffer_reinitialises_five_percent_and_stores_back():
    p0 = torch.full((50, 2), 7.0)
    g = torch.Generator().manual_seed(0)
    buffer = ReplayBuffer(p0, 100, 0.05, g)
    buffer.samples.zero_()
    fresh_total = 0
    for _ in range(200):
        starts, slots, fresh = buffer.draw(100)
        assert torch.all(starts[fresh] == 7.0) and torch.all(starts[~fresh] == 0.0)
        fresh_total += int(fresh.sum())
    assert fresh_total / 20000 == pytest.approx(0.05, abs=0.006)
    starts, slots, _ = buffer.draw(10)
    buffer.store(slots, torch.full((10, 2), -1.0))
    assert torch.all(buffer.samples[slots] == -1.0)


def test_ebm_update_is_the_likelihood_gradient(linear_2d_spec):
    """With f linear, SGD and no regulariser, one step moves w by lr * (mean x_data - mean x_sgld) (E Eq. 2)."""
    data = torch.full((32, 2), 2.0)
    noise = torch.tensor([[-1.0, -3.0]]).repeat(32, 1)
    cfg = EBMConfig(model=linear_2d_spec, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.0, max_iters=1,
                    sgld_steps=0, buffer_size=16, l2_reg=0.0, reinit_prob=0.0, device="cpu", log_every=1)
    trainer = EBMTrainer(cfg, data, noise, extra={"clamp": None})
    layer = trainer.model.backbone.net[0]
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    trainer.fit()
    expected = torch.tensor([[2.0 - (-1.0), 2.0 - (-3.0)]]) * 0.1
    assert torch.allclose(layer.weight.detach() - w0, expected, atol=1e-6)
    assert torch.allclose(layer.bias.detach(), b0, atol=1e-6)  # the bias cancels in mean f(x+) - mean f(x-)
    rec = trainer.history[0]
    assert rec["gap"] == pytest.approx(rec["score_data"] - rec["score_adv"], abs=1e-5)


def test_l2_regulariser_pulls_scores_to_zero(linear_2d_spec):
    data = torch.zeros(16, 2)
    cfg = EBMConfig(model=linear_2d_spec, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.0, max_iters=1,
                    sgld_steps=0, buffer_size=16, l2_reg=1.0, reinit_prob=0.0, device="cpu", log_every=1)
    trainer = EBMTrainer(cfg, data, torch.zeros(16, 2), extra={"clamp": None})
    layer = trainer.model.backbone.net[0]
    with torch.no_grad():
        layer.bias.fill_(1.0)
    trainer.fit()
    # d/db [f+^2 + f-^2] = 2 b + 2 b = 4 at b = 1; the gap term cancels: b <- 1 - 0.1 * 4
    assert layer.bias.item() == pytest.approx(0.6, abs=1e-6)


def test_sgld_ebm_learns_a_2d_gaussian_and_checkpoints_load(tmp_path):
    ds = get_dataset("gaussian")
    g = torch.Generator().manual_seed(0)
    data, p0 = ds.sample(2000, g), sample_p0("uniform", 2000, generator=g)
    cfg = EBMConfig(model=mlp2d_spec(hidden=32), batch_size=128, lr=1e-3, max_iters=150, sgld_steps=20,
                    sgld_step_size=0.02, sgld_noise_std=None, buffer_size=1000, l2_reg=0.01, log_every=50,
                    device="cpu", seed=0)
    trainer = EBMTrainer(cfg, data, p0, out_dir=tmp_path, extra={"clamp": (-4.0, 4.0)})
    history = trainer.fit()
    assert [h["step"] for h in history] == [50, 100, 150]
    assert all(h["fresh_fraction"] < 0.15 for h in history)
    ref = ds.sample(1000, g)
    before = energy_distance(p0[:1000], ref)
    assert energy_distance(trainer.buffer.samples, ref) < 0.1 * before
    samples = trainer.sample(300, steps=100)
    assert samples.abs().max() <= 4.0
    assert energy_distance(samples, ref[:300]) < 0.2 * before
    model = atebm.load(tmp_path / "checkpoint.pt")
    x = torch.randn(9, 2)
    with torch.no_grad():
        assert torch.allclose(model(x), trainer.model.eval()(x), atol=1e-6)
    assert model.meta["ebm"]["sgld_steps"] == 20 and model.meta["selection"]["by"] == "last"


def test_ebm_trainer_runs_on_images_in_the_box():
    g = torch.Generator().manual_seed(0)
    data = torch.rand(20, 1, 16, 16, generator=g) * 0.5
    noise = torch.rand(20, 1, 16, 16, generator=g)
    cfg = EBMConfig(model={"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}, "mean": 0.5, "std": 0.5},
                    batch_size=4, max_iters=3, sgld_steps=3, buffer_size=8, log_every=1, device="cpu")
    trainer = EBMTrainer(cfg, data, noise)
    history = trainer.fit()
    assert len(history) == 3 and all(math.isfinite(h["loss"]) for h in history)
    x = trainer.sample(5)
    assert x.shape == (5, 1, 16, 16) and x.min() >= 0 and x.max() <= 1
    assert trainer.buffer.samples.min() >= 0 and trainer.buffer.samples.max() <= 1


def test_ebm_config_validation():
    with pytest.raises(ValueError, match="reinit_prob"):
        EBMConfig(reinit_prob=1.5)
    with pytest.raises(ValueError, match="buffer_size"):
        EBMConfig(buffer_size=8, batch_size=16)
    with pytest.raises(ValueError, match="budget"):
        EBMConfig(max_iters=None)
    with pytest.raises(ValueError, match="unknown EBMConfig key"):
        EBMConfig.from_dict({"sgld_step": 1})


# ------------------------------------------------------------------------------------------- stability (E Sec. 5.3)
def _stability_config(loss: str, lr: float) -> atebm.TrainConfig:
    return atebm.TrainConfig(model=mlp2d_spec(hidden=32), batch_size=64, lr=lr, k_start=5, k_max=5, final_iters=300,
                             step_size=0.3, loss=loss, log_every=20, seed=0, device="cpu", progress=False)


def test_ebm_loss_gap_runs_away_while_bce_stays_bounded():
    ds = get_dataset("gaussian")
    g = torch.Generator().manual_seed(0)
    data, p0 = ds.sample(2000, g), sample_p0("uniform", 2000, generator=g)
    extra = {"clamp": (-4.0, 4.0)}
    ebm = logit_gap_trace(_stability_config("ebm", 1e-2), data, p0, extra=extra, overflow=200.0)
    bce = logit_gap_trace(_stability_config("bce", 1e-2), data, p0, extra=extra, overflow=200.0)
    assert ebm["diverged"] and ebm["diverged_at"] <= 300
    assert ebm["stop_reason"].startswith("stopped")
    assert not bce["diverged"] and bce["iters"] == 300
    assert bce["growth"]["max"] < 50


def test_growth_summary():
    steps = list(range(0, 100, 10))
    out = growth_summary(steps, [2.0 * s for s in steps])
    assert out["slope_second_half_per_1k"] == pytest.approx(2000.0)
    flat = growth_summary(steps, [3.0] * 10)
    assert flat["slope_second_half_per_1k"] == pytest.approx(0.0, abs=1e-9) and flat["max"] == 3.0


def test_ebm_resume_continues_exactly_with_the_replay_buffer(tmp_path):
    """The EBM baseline runs in atebm.Trainer: stopping after 4 iterations and resuming to 8 gives the weights and
    the replay buffer of an uninterrupted 8-iteration run."""
    g = torch.Generator().manual_seed(0)
    data, noise = torch.rand(24, 1, 8, 8, generator=g) * 0.5, torch.rand(24, 1, 8, 8, generator=g)
    spec = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}, "mean": 0.5, "std": 0.5}
    cfg = EBMConfig(model=spec, batch_size=4, max_iters=8, sgld_steps=2, buffer_size=8, log_every=2, ckpt_every=4,
                    device="cpu")
    whole = EBMTrainer(cfg, data, noise, out_dir=tmp_path / "whole")
    whole.fit()
    first = EBMTrainer(EBMConfig.from_dict({**cfg.to_dict(), "max_iters": 4}), data, noise, out_dir=tmp_path / "cut")
    first.fit()
    resumed = EBMTrainer.resume(tmp_path / "cut" / "checkpoint.pt", data, noise, overrides={"max_iters": 8})
    resumed.fit()
    assert resumed.step == 8
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert torch.equal(whole.buffer.samples, resumed.buffer.samples)
    with pytest.raises(ValueError, match="sgld_steps"):
        EBMTrainer.resume(tmp_path / "cut" / "checkpoint.pt", data, noise, overrides={"sgld_steps": 3})
