"""DSGAN (S): the Eq. 10 batch composition, losses on hand-built values, the WGAN-GP penalty, the p_dbar
constructors, a 2D run whose samples leave p_d's support, exact resume, checkpoints, the CLI and the
semi-supervised objective. Every model here is tiny."""
from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pytest
import torch

import atebm
from atebm.cli import main
from atebm.data import ImageSet
from atebm.dsgan import (
    CASES,
    DSGAN,
    Case,
    DSGANConfig,
    DSGANTrainer,
    InterpolationSource,
    NoisySource,
    SSLConfig,
    case_config,
    class_subset,
    discriminator_loss,
    fake_weights,
    generator_loss,
    gradient_penalty,
    labelled_subset,
    load_generator,
    mixture_sizes,
    parse_pbar,
    sample_generator,
    train_ssl,
)
from atebm.dsgan.low_density_at import RobustSettings, entropy, train_low_density_classifier, worst_case_grid
from atebm.dsgan.networks import FeatureHeadClassifier
from atebm.dsgan.toy import low_centre_disc, swissroll_mixture
from atebm.training import save_checkpoint

POINTS_D = {"arch": "mlp2d", "kwargs": {"hidden": 16, "depth": 2, "activation": "relu"}}
POINTS_G = {"arch": "mlp", "kwargs": {"latent_dim": 2, "out_dim": 2, "hidden": 16, "depth": 2}}


def _points_config(**changes: Any) -> DSGANConfig:
    base: dict[str, Any] = dict(model=POINTS_D, generator=POINTS_G, batch_size=32, lr=1e-3, g_lr=1e-3, max_iters=8,
                                log_every=2, ckpt_every=4, progress=False, device="cpu")
    base.update(changes)
    return DSGANConfig(**base)


def _blob(n: int = 256, std: float = 0.3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * std


# ------------------------------------------------------------------------------------------------ Eq. 10
@pytest.mark.parametrize("m, alpha, expected", [(64, 0.8, (13, 51)), (100, 0.8, (20, 80)), (64, 0.0, (64, 0)),
                                                (5, 0.9, (1, 4)), (10, 0.5, (5, 5))])
def test_mixture_sizes_follow_eq10(m, alpha, expected):
    assert mixture_sizes(m, alpha) == expected


def test_fake_batch_holds_generator_rows_then_pd_rows_in_eq10_proportion():
    trainer = DSGANTrainer(_points_config(batch_size=40), NoisySource(_blob(), "gaussian", 1.0), _blob(seed=1))
    x0 = torch.arange(80, dtype=torch.float32).view(40, 2) + 100  # recognisable p_d rows
    fake = trainer.dsgan.negatives(trainer, x0)
    n_gen, n_data = mixture_sizes(40, 0.8)
    assert (n_gen, n_data) == (8, 32) and fake.shape == (40, 2)
    assert torch.equal(fake[n_gen:], x0[:n_data])
    assert (fake[:n_gen] < 50).all()  # generator outputs, not p_d rows
    assert torch.allclose(trainer.dsgan.weights(), torch.full((40,), 1 / 40))

    no_trick = DSGANTrainer(_points_config(batch_size=40, sampling_trick=False), NoisySource(_blob(), "gaussian", 1.0),
                            _blob(seed=1))
    fake = no_trick.dsgan.negatives(no_trick, x0)
    assert fake.shape == (80, 2) and torch.equal(fake[40:], x0)
    weights = no_trick.dsgan.weights()
    assert torch.allclose(weights[:40].sum(), torch.tensor(0.2)) and torch.allclose(weights[40:].sum(),
                                                                                     torch.tensor(0.8))


def test_fake_weights_sum_to_one_and_weigh_alpha():
    w = fake_weights(3, 7, 0.8, trick=False)
    assert torch.allclose(w[:3], torch.full((3,), 0.2 / 3)) and torch.allclose(w[3:], torch.full((7,), 0.8 / 7))
    assert torch.allclose(fake_weights(3, 7, 0.8, trick=True), torch.full((10,), 0.1))


TINY_IMAGE_D = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}}
TINY_IMAGE_G = {"arch": "image", "kwargs": {"latent_dim": 4, "size": 8, "hidden": 8}}
TINY_CONV_G = {"arch": "conv", "kwargs": {"latent_dim": 4, "size": 8, "width": 4}}


def _batch_norm_rows(module: torch.nn.Module) -> list[int]:
    """Records the number of rows that reach each batch norm layer of ``module`` on every forward pass."""
    rows: list[int] = []
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.register_forward_pre_hook(lambda _, inputs: rows.append(int(inputs[0].shape[0])))
    return rows


@pytest.mark.parametrize("generator", [TINY_IMAGE_G, TINY_CONV_G], ids=["image", "conv"])
def test_the_generators_batch_norm_sees_the_training_batch_in_both_steps_and_at_sampling(generator, one_thread):
    """With the sampling trick only 4 of the 20 fake rows are G's; they still come from a forward pass of m = 20
    latents, like the generator step's, and so do the samples of generate() (no running averages), whatever n."""
    p_d = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    config = DSGANConfig(model=TINY_IMAGE_D, generator=generator, batch_size=20, max_iters=2, log_every=1,
                         ckpt_every=10, progress=False, device="cpu")
    trainer = DSGANTrainer(config, NoisySource(p_d, "gaussian", 0.3, clamp=(0.0, 1.0)), p_d)
    assert trainer.dsgan.fake_layout(20) == (4, 16)
    rows = _batch_norm_rows(trainer.generator)
    trainer.fit()
    assert rows and set(rows) == {20}, rows
    rows.clear()
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    few, many = trainer.generate(7), trainer.generate(30)
    assert rows and set(rows) == {20}, rows
    assert torch.equal(few, many[:7])
    unchanged = [torch.equal(before[k], v) for k, v in trainer.generator.state_dict().items()]
    assert all(unchanged) and not any("running" in k for k in before)


def test_the_conv_generator_makes_images_in_the_unit_range_and_refuses_sides_it_cannot_make():
    from atebm.dsgan import build_generator

    generator = build_generator({"arch": "conv", "kwargs": {"latent_dim": 8, "channels": 3, "size": 12, "width": 4}},
                                seed=0)
    with torch.no_grad():
        x = generator.draw(5, torch.Generator().manual_seed(0), batch=16)
    assert x.shape == (5, 3, 12, 12) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x.std(0).mean()) > 1e-3, "different latents give different images"
    with pytest.raises(ValueError, match="multiple of 4"):
        build_generator({"arch": "conv", "kwargs": {"size": 30}})


def test_a_generator_checkpoint_with_running_statistics_still_loads():
    """Generators saved while their batch norm kept running averages load; the averages are dropped."""
    from atebm.dsgan import build_generator

    generator = build_generator(TINY_IMAGE_G, seed=0)
    legacy = dict(generator.state_dict())
    for name in ("net.1", "net.4"):
        legacy |= {f"{name}.running_mean": torch.zeros(8), f"{name}.running_var": torch.ones(8),
                   f"{name}.num_batches_tracked": torch.tensor(5)}
    fresh = build_generator(TINY_IMAGE_G, seed=1)
    fresh.load_state_dict(legacy)
    z = fresh.sample_latent(6, torch.Generator().manual_seed(0))
    assert torch.equal(fresh(z), generator(z))


# ------------------------------------------------------------------------------------------------ losses
def test_discriminator_loss_on_hand_built_scores():
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    s_real, s_fake, w = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 3.0]), torch.tensor([0.2, 0.8])
    expected = (softplus(-2.0) + softplus(0.0)) / 2 + 0.2 * softplus(-1.0) + 0.8 * softplus(3.0)
    assert float(discriminator_loss(s_real, s_fake, w, "gan")) == pytest.approx(expected, rel=1e-6)
    assert float(discriminator_loss(s_real, s_fake, w, "wgan-gp")) == pytest.approx(0.2 * -1 + 0.8 * 3 - 1.0)
    # D = 1/2 everywhere is the optimum when the fake mixture equals p_dbar: -2 log(1/2) = log 4 (S Thm. 1)
    zeros = torch.zeros(4)
    assert float(discriminator_loss(zeros, zeros, torch.full((4,), 0.25))) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="weights"):
        discriminator_loss(s_real, s_fake, torch.ones(3) / 3)


def test_generator_losses_on_hand_built_scores():
    s = torch.tensor([0.0, 2.0])
    log_d = [math.log(0.5), math.log(1 / (1 + math.exp(-2.0)))]
    log_1md = [math.log(0.5), math.log(1 / (1 + math.exp(2.0)))]
    assert float(generator_loss(s, "minimax")) == pytest.approx(np.mean(log_1md), rel=1e-6)
    assert float(generator_loss(s, "non-saturating")) == pytest.approx(-np.mean(log_d), rel=1e-6)
    assert float(generator_loss(s, "wgan")) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="generator loss"):
        generator_loss(s, "hinge")


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_gap():
    """f(x) = w.x + b has grad f = w everywhere, so the penalty is (||w|| - 1)^2 whatever the interpolates, and
    its gradient with respect to w is 2 (||w|| - 1) w / ||w||."""
    critic = torch.nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 2.0, 2.0]]))  # ||w|| = 3
    real, fake = torch.randn(5, 3), torch.randn(5, 3)
    gp = gradient_penalty(lambda x: critic(x).view(-1), real, fake, torch.full((5,), 0.2))
    assert float(gp.detach()) == pytest.approx(4.0, rel=1e-5)
    gp.backward()
    assert torch.allclose(critic.weight.grad, 2 * 2 * torch.tensor([[1.0, 2.0, 2.0]]) / 3, atol=1e-5)


# ------------------------------------------------------------------------------------------------ p_dbar
def test_noisy_source_adds_gaussian_or_uniform_noise_of_the_given_scale():
    base = torch.zeros(4000, 2)
    torch.manual_seed(0)
    gaussian = NoisySource(base, "gaussian", 0.5).get_batch(torch.arange(4000))
    assert float(gaussian.std()) == pytest.approx(0.5, abs=0.02) and abs(float(gaussian.mean())) < 0.02
    uniform = NoisySource(base, "uniform", 0.1).get_batch(torch.arange(4000))
    assert float(uniform.abs().max()) <= 0.1 and float(uniform.abs().max()) > 0.099
    assert float(uniform.std()) == pytest.approx(0.1 / math.sqrt(3), abs=0.003)
    images = NoisySource(torch.full((10, 1, 4, 4), 0.95), "gaussian", 0.3, clamp=(0.0, 1.0)).get_batch(torch.arange(10))
    assert images.max() <= 1.0 and images.min() >= 0.0 and images.shape == (10, 1, 4, 4)
    with pytest.raises(ValueError, match="scale"):
        NoisySource(base, "gaussian", 0.0)
    with pytest.raises(ValueError, match="noise must be"):
        NoisySource(base, "laplace", 1.0)


def test_interpolation_source_draws_weights_in_the_range():
    ones, zeros = torch.ones(500, 3), torch.zeros(200, 3)
    x = InterpolationSource(ones, zeros, (0.1, 0.3)).get_batch(torch.arange(500))
    assert torch.allclose(x, x[:, :1].expand_as(x))  # one weight per row
    assert float(x.min()) >= 0.1 and float(x.max()) <= 0.3 and float(x.max() - x.min()) > 0.15
    with pytest.raises(ValueError, match="0 <= low <= high <= 1"):
        InterpolationSource(ones, zeros, (0.5, 0.2))


def test_class_subset_builds_the_superset_and_rejects_missing_classes():
    images = ImageSet(torch.rand(12, 1, 4, 4), torch.tensor([0, 1, 7, 2] * 3), "toy")
    sub = class_subset(images, (1, 7))
    assert len(sub) == 6 and set(sub.y.tolist()) == {1, 7}
    with pytest.raises(ValueError, match="no images of class"):
        class_subset(images, (1, 9))
    with pytest.raises(ValueError, match="no labels"):
        class_subset(ImageSet(torch.rand(3, 1, 4, 4)), (1,))


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("change, message", [({"alpha": 1.0}, "alpha"), ({"alpha": -0.1}, "alpha"),
                                             ({"critic_steps": 0}, "critic_steps"),
                                             ({"critic_steps": 1.5}, "critic_steps"),
                                             ({"loss": "hinge"}, "loss must be"),
                                             ({"loss": "wgan-gp", "generator_loss": "minimax"}, "does not go with"),
                                             ({"max_iters": None}, "budget"),
                                             ({"g_ema_decay": 1.0}, "g_ema_decay")])
def test_bad_config_gives_a_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        _points_config(**change)


def test_empty_data_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        DSGANTrainer(_points_config(), torch.zeros(0, 2), _blob())


# ------------------------------------------------------------------------------------------------ training
def _outside_fractions(radius: float, alpha: float = 0.8, n: int = 200_000) -> tuple[float, float]:
    """Mass outside ``radius`` of p_dbar = N(0, 1.09 I) and of the DSGAN target (p_dbar - alpha p_d)+ / Z with
    p_d = N(0, 0.09 I) (S Eq. 1), by importance sampling from p_dbar."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(1)) * math.sqrt(1.09)
    r2 = z.pow(2).sum(1)
    log_pbar, log_pd = -r2 / (2 * 1.09) - math.log(1.09), -r2 / (2 * 0.09) - math.log(0.09)
    weight = (1 - alpha * torch.exp(log_pd - log_pbar)).clamp_min(0)    # (p_dbar - alpha p_d)+ / p_dbar
    outside = (r2.sqrt() > radius).float()
    return float(outside.mean()), float((weight * outside).sum() / weight.sum())


def test_a_2d_run_puts_its_samples_off_the_data_support_where_an_alpha_0_gan_does_not(one_thread):
    """p_d = N(0, 0.3^2 I), p_dbar = p_d * N(0, 1): the target (p_dbar - 0.8 p_d)+ has far more of its mass
    outside the 3-sigma disc of p_d (radius 0.9) than p_dbar itself (0.91 vs 0.69). The same training with
    alpha = 0 (an ordinary GAN of p_dbar, what the generator learns if the alpha p_d term is ignored) is the
    control: it stays near p_dbar's fraction, below the midpoint, while DSGAN's samples lie above it and well
    above the control's."""
    p_d = _blob(2000)
    config = _points_config(model={"arch": "mlp2d", "kwargs": {"hidden": 64, "depth": 2, "activation": "relu"}},
                            generator={"arch": "mlp", "kwargs": {"latent_dim": 4, "out_dim": 2, "hidden": 64,
                                                                 "depth": 2}},
                            batch_size=128, lr=2e-3, g_lr=2e-3, max_iters=400, log_every=100, ckpt_every=1000)
    outside: dict[float, float] = {}
    for alpha in (0.8, 0.0):
        trainer = DSGANTrainer(config.replace(alpha=alpha), NoisySource(p_d, "gaussian", 1.0), p_d)
        trainer.fit()
        outside[alpha] = float((trainer.generate(1000).norm(dim=1) > 0.9).float().mean())
    of_pbar, of_target = _outside_fractions(0.9)
    assert of_target > of_pbar + 0.15, (of_pbar, of_target)       # the test can tell the two apart
    midpoint = (of_pbar + of_target) / 2
    assert outside[0.0] < midpoint, (outside, of_pbar, of_target)  # the control fails the DSGAN criterion
    assert outside[0.8] > midpoint and outside[0.8] > outside[0.0] + 0.15, (outside, of_pbar, of_target)


@pytest.mark.parametrize("changes", [{}, {"loss": "wgan-gp", "critic_steps": 2, "sampling_trick": False},
                                     {"g_ema_decay": 0.9}])
def test_resume_equals_an_uninterrupted_run(tmp_path, changes, assert_same_state):
    p_d = _blob()
    p_dbar = NoisySource(p_d, "gaussian", 0.5)
    config = _points_config(**changes)
    whole = DSGANTrainer(config, p_dbar, p_d, out_dir=tmp_path / "whole")
    whole.fit()
    cut = DSGANTrainer(config.replace(max_iters=4), p_dbar, p_d, out_dir=tmp_path / "cut")
    cut.fit()
    with pytest.raises(ValueError, match="alpha"):
        DSGANTrainer.resume(tmp_path / "cut" / "checkpoint.pt", p_dbar, p_d, overrides={"alpha": 0.5})
    resumed = DSGANTrainer.resume(tmp_path / "cut" / "checkpoint.pt", p_dbar, p_d, overrides={"max_iters": 8})
    resumed.fit()
    assert resumed.step == whole.step == 8
    assert_same_state(whole.model.state_dict(), resumed.model.state_dict(), "discriminator")
    assert_same_state(whole.generator.state_dict(), resumed.generator.state_dict(), "generator")
    assert_same_state(whole.dsgan.state_dict()["optimizer"]["state"][0], resumed.dsgan.state_dict()["optimizer"]
                      ["state"][0], "generator optimiser")
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]
    if "loss" in changes:
        assert "gp" in whole.history[-1] and "loss_g" in whole.history[-1]
    if "g_ema_decay" in changes:
        assert_same_state(whole.dsgan.g_ema, resumed.dsgan.g_ema, "generator average")
        assert torch.equal(whole.generate(50), resumed.generate(50))


def test_the_generator_average_is_what_is_sampled_and_the_raw_generator_what_trains():
    p_d = _blob()
    trainer = DSGANTrainer(_points_config(g_ema_decay=0.5), NoisySource(p_d, "gaussian", 0.5), p_d)
    raw_before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    trainer.fit()
    dsgan = trainer.dsgan
    assert dsgan.g_ema_steps == 8                                   # one generator step per discriminator step
    raw = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    assert any(not torch.equal(raw[k], raw_before[k]) for k in raw), "the raw generator trained"
    assert any(not torch.equal(raw[k], dsgan.g_ema[k]) for k in raw), "the average is not the last iterate"
    samples = trainer.generate(40)
    for k, v in trainer.generator.state_dict().items():
        assert torch.equal(v, raw[k]), "sampling leaves the raw weights in place"
    averaged = copy.deepcopy(dsgan.generator)
    averaged.load_state_dict(dsgan.g_ema)
    expected = averaged.draw(40, torch.Generator().manual_seed(dsgan.seed + 12345), batch=dsgan.batch_size)
    assert torch.equal(samples, expected)
    raw_samples = dsgan.generator.draw(40, torch.Generator().manual_seed(dsgan.seed + 12345), batch=dsgan.batch_size)
    assert not torch.equal(samples, raw_samples)


def test_run_folder_loads_the_discriminator_and_the_generator(tmp_path):
    p_d = _blob()
    trainer = DSGANTrainer(_points_config(), NoisySource(p_d, "gaussian", 0.5), p_d, out_dir=tmp_path)
    trainer.fit()
    model = atebm.load_model(tmp_path)
    assert model(torch.zeros(3, 2)).shape == (3,) and model.meta["kind"] == "dsgan"
    objective, extra = load_generator(tmp_path)
    assert isinstance(objective, DSGAN) and extra["kind"] == "dsgan"
    assert torch.equal(objective.generate(20), trainer.generate(20))
    protocol = sample_generator(tmp_path, tmp_path / "s", n=10)
    with np.load(tmp_path / "s" / "samples.npz") as npz:
        assert npz["x"].shape == (10, 2) and npz["x"].dtype == np.float32
    assert protocol["shape"] == [10, 2] and (tmp_path / "s" / "samples.png").exists()
    save_checkpoint(tmp_path / "other.pt", {"model_spec": model.spec, "model": model.state_dict(),
                                            "objective": {"kind": "binary-at"}})
    with pytest.raises(ValueError, match="no DSGAN generator"):
        load_generator(tmp_path / "other.pt")


def _sampled(run: Any, out: Any, device: str) -> tuple[dict[str, Any], np.ndarray]:
    protocol = sample_generator(run, out, n=10, seed=3, device=device)
    with np.load(out / "samples.npz") as npz:
        return protocol, npz["x"]


def test_sample_on_device_auto_without_cuda_is_the_cpu_run(tmp_path, monkeypatch):
    """``device="auto"`` (the default) is resolved before the generator moves: without CUDA it is the CPU run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    p_d = _blob()
    DSGANTrainer(_points_config(), NoisySource(p_d, "gaussian", 0.5), p_d, out_dir=tmp_path / "run").fit()
    (auto, x_auto), (cpu, x_cpu) = (_sampled(tmp_path / "run", tmp_path / device, device) for device in ("auto", "cpu"))
    assert auto == cpu and x_auto.shape == (10, 2)
    assert np.array_equal(x_auto, x_cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sample_on_cuda_draws_the_cpu_latents(tmp_path):
    """The latents come from the seed on the CPU whatever the device, so a CUDA run gives the CPU's samples up to
    float rounding, written from the CPU."""
    p_d = _blob()
    DSGANTrainer(_points_config(), NoisySource(p_d, "gaussian", 0.5), p_d, out_dir=tmp_path / "run").fit()
    (cuda, x_cuda), (cpu, x_cpu) = (_sampled(tmp_path / "run", tmp_path / device, device) for device in ("cuda", "cpu"))
    assert cuda == cpu
    assert np.allclose(x_cuda, x_cpu, atol=1e-4)


def test_failure_monitor_restores_the_generator_with_the_discriminator(tmp_path, assert_same_state):
    """On a stop the monitor puts back the last healthy discriminator *and* generator (in memory and in
    checkpoint_last_good.pt), not a healthy discriminator beside a generator trained on past it."""
    from atebm.monitor import FailureMonitor

    p_d = _blob()
    seen: dict[int, dict[str, Any]] = {}

    def record_states(trainer: DSGANTrainer, record: dict[str, Any]) -> None:
        seen[record["step"]] = {"generator": {k: v.clone() for k, v in trainer.generator.state_dict().items()},
                                "model": {k: v.clone() for k, v in trainer.model.state_dict().items()}}

    def poison_from_step_6(trainer: DSGANTrainer, record: dict[str, Any]) -> None:
        if record["step"] >= 6:
            record["score_data"] = float("inf")  # a divergence the monitor stops on at once

    monitor = FailureMonitor()
    trainer = DSGANTrainer(_points_config(), NoisySource(p_d, "gaussian", 0.5), p_d, out_dir=tmp_path,
                           callbacks=[record_states, poison_from_step_6, monitor])
    with pytest.warns(RuntimeWarning, match="non-finite score_data"):
        trainer.fit()
    assert trainer.step == 6 and monitor.status == "stopped" and monitor.last_good_step == 4
    assert any(not torch.equal(seen[4]["generator"][k], seen[6]["generator"][k]) for k in seen[4]["generator"])
    assert_same_state(seen[4]["model"], trainer.model.state_dict(), "discriminator")
    assert_same_state(seen[4]["generator"], trainer.generator.state_dict(), "generator")
    objective, _ = load_generator(tmp_path / "checkpoint_last_good.pt")
    assert_same_state(seen[4]["generator"], objective.generator.state_dict(), "generator in checkpoint_last_good.pt")
    assert torch.equal(objective.generate(5), trainer.generate(5))


def test_ssl_checkpoint_loads_without_importing_the_dsgan_package(tmp_path):
    """ssl_mlp is an architecture of atebm.models: atebm.load_model rebuilds an SSL classifier in a fresh process
    that never imports atebm.dsgan."""
    import subprocess
    import sys

    from atebm.models import ARCHITECTURES, build_score_model

    assert ARCHITECTURES["ssl_mlp"].__module__ == "atebm.models.ssl"
    model = build_score_model({"arch": "ssl_mlp", "kwargs": {"in_features": 16, "num_classes": 3, "hidden": [8]}})
    save_checkpoint(tmp_path / "model.pt", {"model_spec": model.spec, "model": model.state_dict()})
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(x).tolist()
    script = ("import sys, torch, atebm\n"
              f"m = atebm.load_model({str(tmp_path)!r})\n"
              "x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))\n"
              "print(m(x).tolist())\n"
              "assert 'atebm.dsgan' not in sys.modules, 'atebm.dsgan was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip()) == pytest.approx(expected, abs=1e-6)


def test_exact_2d_densities_and_target_sampler():
    disc = low_centre_disc()
    inner = disc.density(torch.zeros(1, 2))
    rim = disc.density(torch.tensor([[1.8, 0.0]]))
    assert float(inner) < 0.05 * float(rim)  # low in the centre
    g = torch.Generator().manual_seed(0)
    target = disc.target_sample(500, 0.3, 0.8, g)
    pd, pbar = disc.density(target), disc.density(target, extra_std=0.3)
    assert bool((pbar > 0.8 * pd).all())  # the target lives where p_dbar > alpha p_d
    roll = swissroll_mixture()
    points = roll.sample(200, g)
    assert float(roll.density(points).mean()) > float(roll.density(points, extra_std=0.3).mean())


def test_a_case_is_a_validated_config_and_refuses_what_cannot_run():
    case = CASES["disc-low-centre"]
    assert Case.from_dict(json.loads(json.dumps(case.to_dict()))) == case
    assert case.dsgan_config(max_iters=7).max_iters == 7 and case_config(case.name) == case.dsgan_config()
    with pytest.raises(ValueError, match="unknown Case key"):
        Case.from_dict({**case.to_dict(), "sigma": 0.1})
    with pytest.raises(ValueError, match="mixture must be one of"):
        case.replace(mixture="spiral")
    with pytest.raises(ValueError, match="a points case needs mixture"):
        case.replace(mixture=None)
    with pytest.raises(ValueError, match="config: .*alpha"):
        case.replace(config={**case.config, "alpha": 1.0})
    with pytest.raises(ValueError, match="kind must be one of"):
        case.replace(kind="audio")
    images = CASES["mnist-difference"]
    with pytest.raises(ValueError, match="a class p_d lacks"):
        images.replace(pbar_classes=(1,))


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("name", list(CASES))
def test_every_case_study_runs_s_alg1s_generator_loss(name, monkeypatch):
    """S Alg. 1 line 9 descends log(1 - D(G(z))) (``minimax``): every case study's generator steps use it, while
    the library's default elsewhere stays the non-saturating loss (DSGANConfig's docstring says why)."""
    assert case_config(name).generator_loss == "minimax"
    assert DSGAN(**case_config(name).objective_options()).generator_loss == "minimax"
    assert DSGAN().generator_loss == "non-saturating"
    seen: list[str] = []
    monkeypatch.setattr("atebm.dsgan.training.generator_loss",
                        lambda scores, kind: seen.append(kind) or generator_loss(scores, kind))
    p_d = _blob()
    config = case_config(name, model=POINTS_D, generator=POINTS_G, batch_size=16, max_iters=2, progress=False,
                         device="cpu")
    DSGANTrainer(config, NoisySource(p_d, "gaussian", 0.5), p_d).fit()
    assert seen == ["minimax", "minimax"]


def test_cli_trains_a_case_samples_it_and_rejects_bad_alpha(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["model={arch: mlp2d, kwargs: {hidden: 8, depth: 1}}",
            "generator={arch: mlp, kwargs: {latent_dim: 2, out_dim: 2, hidden: 8, depth: 1}}", "max_iters=4",
            "batch_size=16", "log_every=2", "ckpt_every=2", "progress=false"]
    assert main(["dsgan", "train", "--case", "swissroll-boundary", "--out", str(out), "--n-eval", "200",
                 "--device", "cpu", *tiny]) == 0
    case = json.loads((out / "case.json").read_text())
    assert case["iterations"] == 4 and set(case["evaluation"]) >= {"generated", "p_d", "p_dbar", "target"}
    assert (out / "report.html").exists() and (out / "model.pt").exists()
    assert main(["dsgan", "sample", "--checkpoint", str(out), "--n", "7", "--out", str(tmp_path / "s")]) == 0
    with np.load(tmp_path / "s" / "samples.npz") as npz:
        assert npz["x"].shape == (7, 2)
    capsys.readouterr()
    assert main(["dsgan", "train", "--case", "swissroll-boundary", "--out", str(tmp_path / "bad"), "alpha=1.5"]) == 1
    err = capsys.readouterr().err
    assert "alpha must lie in [0, 1)" in err and "Traceback" not in err


def test_the_clamp_of_a_noisy_p_dbar_is_named_where_the_run_is_recorded(tmp_path):
    """``--pbar gaussian:STD`` clamps p_d + noise to [0, 1], which puts point masses on the bounds (S convolves
    without a clamp): the source's description and ``run.json`` say so; an unclamped source says nothing."""
    images = ImageSet(torch.full((8, 1, 8, 8), 0.02), torch.arange(8) % 2, "toy")
    clamped = parse_pbar("gaussian:0.3", images, images)
    x = clamped.get_batch(torch.arange(8))
    assert float((x == 0).float().mean()) > 0.3  # the point mass at 0 the description names
    assert "clamped to [0, 1]" in clamped.describe() and "point masses" in clamped.describe()
    assert "clamp" not in NoisySource(images.x, "gaussian", 0.3).describe()
    out = tmp_path / "run"
    tiny = ["model={arch: convnet, kwargs: {in_channels: 1, width: 4}}",
            "generator={arch: image, kwargs: {latent_dim: 4, hidden: 8}}", "max_iters=1", "batch_size=8",
            "log_every=1", "ckpt_every=2", "progress=false"]
    assert main(["dsgan", "train", "--data", "mnist?split=train&n=16", "--pbar", "gaussian:0.3", "--n-eval", "2",
                 "--out", str(out), "--device", "cpu", *tiny]) == 0
    assert "clamped to [0, 1]" in json.loads((out / "run.json").read_text())["pbar_description"]


def test_an_image_case_reports_its_diversity_from_train_and_sample(tmp_path, capsys, one_thread):
    """``dsgan train --case mnist-difference`` and ``dsgan sample`` of its run give the Fréchet ratio to held-out
    sevens and the classes covered (case.json, sample.json, the printed line, the report)."""
    out = tmp_path / "run"
    tiny = ["model={arch: convnet, kwargs: {in_channels: 1, width: 4}}",
            "generator={arch: image, kwargs: {latent_dim: 4, hidden: 8}}", "max_iters=2", "batch_size=8",
            "log_every=1", "ckpt_every=2", "progress=false"]
    assert main(["dsgan", "train", "--case", "mnist-difference", "--n-eval", "30", "--out", str(out), "--device",
                 "cpu", *tiny]) == 0
    printed = capsys.readouterr().out
    evaluation = json.loads((out / "case.json").read_text())["evaluation"]
    d = evaluation["diversity"]
    assert d["n_per_fd"] == 30 and d["n_reference"] == 350 and d["n_held_out"] == 100   # sevens: train, test
    assert d["fd_ratio"] == pytest.approx(d["fd_samples"] / d["fd_held_out"])
    shares = [evaluation["class_fractions"][str(c)] for c in range(10)]
    assert d["class_shares"] == pytest.approx(shares)
    assert d["classes_covered"] == sum(v >= d["min_class_share"] for v in shares)
    assert f"Fréchet ratio {d['fd_ratio']:.2f} to held-out digit(s) [7]" in printed
    assert "dsgan/diversity" in [s["key"] for s in json.loads((out / "report.json").read_text())["sections"]]
    assert main(["dsgan", "sample", "--checkpoint", str(out), "--n", "12", "--out", str(tmp_path / "s")]) == 0
    sampled = json.loads((tmp_path / "s" / "sample.json").read_text())["diversity"]
    assert sampled["n_per_fd"] == 12 and sampled["target_classes"] == [7]
    assert sampled["fd_held_out"] != d["fd_held_out"]    # 12 held-out rows per distance, not 30
    assert "Fréchet ratio" in capsys.readouterr().out


def test_cli_data_run_uses_the_seed_and_writes_samples(tmp_path):
    """``atebm dsgan train --data ... --seed N`` trains with seed N (the p_0 benchmark's first step), and
    ``atebm dsgan sample`` writes (N, 1, 28, 28) float32 images in [0, 1]."""
    out = tmp_path / "run"
    tiny = ["model={arch: convnet, kwargs: {in_channels: 1, width: 4}}",
            "generator={arch: image, kwargs: {latent_dim: 4, hidden: 8}}", "max_iters=2", "batch_size=8",
            "log_every=1", "ckpt_every=2", "progress=false"]
    assert main(["dsgan", "train", "--data", "mnist?split=train&n=32", "--pbar", "gaussian:0.3", "--seed", "3",
                 "--n-eval", "4", "--out", str(out), "--device", "cpu", *tiny]) == 0
    assert json.loads((out / "run.json").read_text())["config"]["seed"] == 3
    assert main(["dsgan", "sample", "--checkpoint", str(out), "--n", "5", "--out", str(tmp_path / "s")]) == 0
    with np.load(tmp_path / "s" / "samples.npz") as npz:
        x = npz["x"]
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert len({row.tobytes() for row in x}) == 5  # one generated image per latent draw, not one image repeated


# ------------------------------------------------------------------------------------------------ SSL
@pytest.mark.parametrize("mode", ["dsgan", "feature-matching", "supervised"])
def test_semi_supervised_modes_train_the_classifier_and_their_generator(mode, one_thread):
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.rand(60, 1, 8, 8, generator=g), torch.arange(60) % 3, "toy")
    labelled = labelled_subset(images, 2, seed=0)
    assert len(labelled) == 6 and labelled.y.bincount().tolist() == [2, 2, 2]
    config = SSLConfig(mode=mode, model={"arch": "ssl_mlp", "kwargs": {"in_features": 64, "num_classes": 3,
                                                                       "hidden": [16, 8]}},
                       generator={"arch": "image", "kwargs": {"latent_dim": 4, "size": 8, "hidden": 16}},
                       feature_critic={"arch": "mlp2d", "kwargs": {"in_dim": 8, "hidden": 8, "depth": 1}},
                       batch_size=10, labelled_batch=6, max_iters=4, log_every=2, ckpt_every=100, progress=False,
                       device="cpu")
    objective = config.objective(labelled)
    before = None if objective.generator is None else [p.detach().clone() for p in objective.generator.parameters()]
    trainer, result = train_ssl(config, images, labelled, test=images)
    assert trainer.step == 4 and set(result["test"]) >= {"error_percent"}
    record = trainer.history[-1]
    assert math.isfinite(record["loss"]) and "loss_sup" in record
    assert ("loss_unl" in record) == (mode != "supervised")
    assert ("critic_loss" in record) == (mode == "dsgan")
    moved = trainer.objective.generator
    if before is None:
        assert moved is None
    else:
        assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, moved.parameters()))


# ------------------------------------------------------------------------------------------------ S Sec. 5.2
def test_entropy_of_uniform_and_confident_logits():
    assert float(entropy(torch.zeros(3, 4))) == pytest.approx(math.log(4), rel=1e-6)
    assert float(entropy(torch.tensor([[50.0, 0.0, 0.0]]))) == pytest.approx(0.0, abs=1e-6)


class _MeanClassifier(torch.nn.Module):
    """z = [0, 10 mean(x) - 6, -10 mean(x) - 4] on 1x16x16 images: a constant image v of class 0 is flipped
    exactly by perturbations that raise mean(x) above 0.6, so its minimal distance is 0.6 - v in L-infinity and
    16 (0.6 - v) in L2 (||1||_2 = 16 on 256 pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(256, 3)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[1], self.linear.weight[2] = 10 / 256, -10 / 256
            self.linear.bias.copy_(torch.tensor([0.0, -6.0, -4.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_the_worst_case_grid_matches_the_known_minimal_distances_of_a_linear_classifier(one_thread):
    values = [0.15, 0.35, 0.45, 0.52, 0.58, 0.7]      # L-inf distances 0.45, 0.25, 0.15, 0.08, 0.02; 0.7 is wrong
    x = torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, 16, 16).clone()
    y = torch.zeros(len(values), dtype=torch.long)
    settings = RobustSettings(eps_linf=(0.1, 0.2, 0.3), eps_l2=(1.0, 2.0, 3.0), attack_steps=10, attack_restarts=1,
                              apgd_steps=10, square_queries=50)
    result = worst_case_grid({"linear": _MeanClassifier().eval()}, x, y, settings)["linear"]
    assert result["clean"] == pytest.approx(5 / 6)
    # robust at eps exactly when correct and the minimal distance exceeds eps (L2 distances 7.2, 4, 2.4, 1.28, 0.32)
    assert result["linf"] == pytest.approx({"0.1": 3 / 6, "0.2": 2 / 6, "0.3": 1 / 6})
    assert result["l2"] == pytest.approx({"1": 4 / 6, "2": 3 / 6, "3": 2 / 6})
    row = result["grid"]["l2"][1]
    assert [a["kind"] for a in row["protocol"]["attackers"]] == ["margin", "apgd-ce", "apgd-dlr", "square"]
    assert row["attackers"]["margin"]["attacked"] == 5 and "robust" not in row
    with pytest.raises(ValueError, match="attack_steps must be >= 1, got 0"):
        RobustSettings(attack_steps=0)
    with pytest.raises(ValueError, match="eps_l2 must be"):
        RobustSettings(eps_l2=(0.0, 1.0))


@pytest.mark.parametrize("train_body", [False, True])
def test_low_density_fine_tuning_freezes_the_feature_body_by_default(one_thread, train_body):
    assert RobustSettings().finetune_body is False
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 16, 16, generator=g), torch.arange(12) % 10
    torch.manual_seed(0)
    net = FeatureHeadClassifier(width=4, feature_dim=16, head_depth=1)
    body, head = ([p.detach().clone() for p in part.parameters()] for part in (net.body, net.head))
    last = train_low_density_classifier(net, x, y, epochs=2, lr=1e-2, batch_size=6, seed=0, weight=1.0,
                                        generated=lambda m: torch.randn(m, 16, generator=g), train_body=train_body)
    assert set(last) == {"ce", "entropy_generated"}
    moved = [not torch.equal(a, b) for a, b in zip(body, net.body.parameters())]
    assert all(moved) if train_body else not any(moved)
    assert all(not torch.equal(a, b) for a, b in zip(head, net.head.parameters()))
    assert all(p.grad is None for p in net.body.parameters()) or train_body


def tiny_ssl(max_iters: int) -> tuple[ImageSet, ImageSet, SSLConfig]:
    """40 random 8x8 two-class images, 2 labelled per class, and an SSL config of tiny networks."""
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 2, "toy")
    labelled = labelled_subset(images, 2, seed=0)
    config = SSLConfig(model={"arch": "ssl_mlp", "kwargs": {"in_features": 64, "num_classes": 2, "hidden": [8]}},
                       generator={"arch": "image", "kwargs": {"latent_dim": 4, "size": 8, "hidden": 8}},
                       feature_critic={"arch": "mlp2d", "kwargs": {"in_dim": 8, "hidden": 8, "depth": 1}},
                       batch_size=8, labelled_batch=4, max_iters=max_iters, log_every=3, ckpt_every=3,
                       progress=False, device="cpu")
    return images, labelled, config


def test_semi_supervised_dsgan_resumes_exactly(tmp_path, assert_same_state):
    images, labelled, config = tiny_ssl(max_iters=6)
    whole, _ = train_ssl(config, images, labelled, out_dir=tmp_path / "whole")
    cut, _ = train_ssl(SSLConfig.from_dict({**config.to_dict(), "max_iters": 3}), images, labelled,
                       out_dir=tmp_path / "cut")
    resumed = atebm.Trainer.resume(tmp_path / "cut" / "checkpoint.pt", images, labelled, overrides={"max_iters": 6})
    resumed.fit()
    assert_same_state(whole.model.state_dict(), resumed.model.state_dict(), "classifier")
    assert_same_state(whole.objective.generator.state_dict(), resumed.objective.generator.state_dict(), "generator")
    assert_same_state(whole.objective.critic.state_dict(), resumed.objective.critic.state_dict(), "feature critic")
    assert atebm.load_model(tmp_path / "whole")(images.x[:3]).shape == (3,)  # the K+1 classifier as a score model


def test_ssl_config_reaches_every_trainer_option(one_thread):
    """SSLConfig holds the trainer's options (TrainerOptions): a weight average set there is kept by the trainer."""
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.rand(20, 1, 8, 8, generator=g), torch.arange(20) % 2, "toy")
    labelled = labelled_subset(images, 2, seed=0)
    config = SSLConfig(mode="supervised", model={"arch": "ssl_mlp", "kwargs": {"in_features": 64, "num_classes": 2,
                                                                               "hidden": [8]}},
                       batch_size=4, labelled_batch=4, max_iters=3, ema_decay=0.5, grad_clip=1.0, progress=False,
                       device="cpu")
    trainer, _ = train_ssl(config, images, labelled)
    assert trainer.config.ema_decay == 0.5 and trainer.config.grad_clip == 1.0
    assert trainer.ema is not None and trainer.ema_steps == 3
    assert SSLConfig.from_dict(trainer.extra["ssl"]) == config   # the run's record holds the option too


# ------------------------------------------------------------------------------------------------ names and rooms
def _penalty_as_it_was(critic: Any, real: torch.Tensor, fake: torch.Tensor, weights: torch.Tensor,
                       rng: torch.Generator) -> torch.Tensor:
    """The WGAN-GP penalty as dsgan/losses.py wrote it before it used the sampler's input gradient."""
    index = torch.arange(len(fake)) % len(real)
    e = torch.rand(len(fake), generator=rng).to(real).view(-1, *([1] * (real.dim() - 1)))
    x_hat = (e * real[index].detach() + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = (grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt()
    return (weights * (norms - 1).pow(2)).sum()


@pytest.mark.parametrize("spec, shape", [(POINTS_D, (2,)),
                                         ({"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}}, (1, 8, 8))])
def test_the_gradient_penalty_takes_its_input_gradient_from_the_sampler(spec, shape, one_thread):
    """The penalty goes through atebm.sampling.input_gradient(create_graph=True); its value and the gradients it
    sends to the critic's parameters are bit-identical to those of the formula it had (autograd on score(x_hat))."""
    from atebm.models import build_score_model
    from atebm.sampling import input_gradient

    torch.manual_seed(0)
    critic = build_score_model(spec)
    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(5, *shape, generator=g), torch.rand(7, *shape, generator=g)
    weights = torch.softmax(torch.randn(7, generator=g), 0)
    results = []
    for penalty in (_penalty_as_it_was, gradient_penalty):
        critic.zero_grad(set_to_none=True)
        value = penalty(critic, real, fake, weights, torch.Generator().manual_seed(3))
        value.backward()
        # None: a parameter the input gradient does not depend on (the last bias)
        results.append((value.detach(), [None if p.grad is None else p.grad.clone() for p in critic.parameters()]))
    (v0, g0), (v1, g1) = results
    assert torch.equal(v0, v1)
    assert all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
               for a, b in zip(g0, g1, strict=True))
    assert sum(float(t.abs().sum()) > 0 for t in g1 if t is not None) >= 2
    scores, grad = input_gradient(critic, real, create_graph=True)
    assert scores.requires_grad and grad.requires_grad  # the graph is kept for a loss on the gradient
    scores, grad = input_gradient(critic, real)
    assert not scores.requires_grad and not grad.requires_grad


def test_input_gradients_are_taken_only_in_the_sampler_and_the_trainer():
    from pathlib import Path

    src = Path(atebm.__file__).parent
    users = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if "autograd.grad" in p.read_text())
    assert set(users) <= {"sampling.py", "training/trainer.py"}, users


def test_gan_runs_log_their_own_quantities(tmp_path, one_thread):
    """A DSGAN run's log lines name the discriminator's quantities; binary AT's k, auc_adv, score_adv, auc_clean
    (and r1, always 0) are not among them."""
    p_d = _blob()
    config = _points_config(loss="wgan-gp", critic_steps=2)
    trainer = DSGANTrainer(config, NoisySource(p_d, "gaussian", 0.5), p_d, out_dir=tmp_path)
    trainer.fit()
    at_keys = {"k", "auc_adv", "score_adv", "auc_clean", "r1", "perturbation_l2"}
    for record in trainer.history:
        assert not at_keys & set(record), record
        assert {"loss", "score_data", "score_fake", "score_gen", "score_pd", "auc_fake", "auc_pd", "gp"} <= set(record)
    assert "loss_g" in trainer.history[-1] and "score_g" in trainer.history[-1]
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [set(r) for r in logged] == [set(r) for r in trainer.history]


@pytest.mark.parametrize("mode", ["dsgan", "supervised"])
def test_semi_supervised_runs_log_their_own_quantities(mode, one_thread):
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 2, "toy")
    labelled = labelled_subset(images, 2, seed=0)
    config = SSLConfig(mode=mode, model={"arch": "ssl_mlp", "kwargs": {"in_features": 64, "num_classes": 2,
                                                                       "hidden": [8]}},
                       generator={"arch": "image", "kwargs": {"latent_dim": 4, "size": 8, "hidden": 8}},
                       feature_critic={"arch": "mlp2d", "kwargs": {"in_dim": 8, "hidden": 8, "depth": 1}},
                       batch_size=8, labelled_batch=4, max_iters=4, log_every=2, ckpt_every=100, progress=False,
                       device="cpu")
    trainer, _ = train_ssl(config, images, labelled)
    record = trainer.history[-1]
    assert not {"k", "auc_adv", "score_adv", "auc_clean", "r1"} & set(record), record
    assert {"loss", "loss_sup", "acc_lab"} <= set(record)
    generated = {"score_unl", "score_gen", "auc_gen", "loss_g", "critic_loss"}
    assert generated <= set(record) if mode == "dsgan" else not generated & set(record)


def test_the_monitor_advises_a_gan_on_its_own_knobs(tmp_path):
    """A non-finite generator loss stops a DSGAN run; the suggestion names the GAN's learning rates, not PGD."""
    from atebm.monitor import NON_FINITE, FailureMonitor

    def poison_from_step_4(trainer: DSGANTrainer, record: dict[str, Any]) -> None:
        if record["step"] >= 4:
            record["loss_g"] = float("nan")

    monitor = FailureMonitor()
    p_d = _blob()
    trainer = DSGANTrainer(_points_config(), NoisySource(p_d, "gaussian", 0.5), p_d,
                           callbacks=[poison_from_step_4, monitor])
    with pytest.warns(RuntimeWarning, match="non-finite loss_g"):
        trainer.fit()
    assert trainer.step == 4 and monitor.stopped is not None and monitor.stopped["kind"] == NON_FINITE
    assert "g_lr" in monitor.stopped["suggestion"] and "PGD" not in monitor.stopped["suggestion"]


def test_objectives_that_own_networks_are_set_up_by_the_trainer(tmp_path, monkeypatch, assert_same_state):
    """Objective.setup(trainer) runs when the trainer is built and again after restore, so a resumed objective
    holds its optimiser state before its first step (no optimiser built lazily on first use)."""
    from atebm.dsgan.ssl import SemiSupervised

    calls: list[str] = []
    for cls in (DSGAN, SemiSupervised):
        original = cls.setup

        def recording(self, trainer, original=original):
            calls.append(self.kind)
            original(self, trainer)

        monkeypatch.setattr(cls, "setup", recording)
    p_d = _blob()
    p_dbar = NoisySource(p_d, "gaussian", 0.5)
    cut = DSGANTrainer(_points_config(max_iters=4), p_dbar, p_d, out_dir=tmp_path / "dsgan")
    assert calls == ["dsgan"]
    cut.fit()
    saved = cut.dsgan.state_dict()["optimizer"]
    resumed = DSGANTrainer.resume(tmp_path / "dsgan" / "checkpoint.pt", p_dbar, p_d, overrides={"max_iters": 8})
    assert calls == ["dsgan", "dsgan", "dsgan"]  # built, then restored
    assert_same_state(saved["state"][0], resumed.dsgan.optimizer.state_dict()["state"][0], "generator optimiser")

    images, labelled, config = tiny_ssl(max_iters=3)
    calls.clear()
    trained, _ = train_ssl(config, images, labelled, out_dir=tmp_path / "ssl")
    resumed_ssl = atebm.Trainer.resume(tmp_path / "ssl" / "checkpoint.pt", images, labelled)
    assert calls == ["dsgan-ssl", "dsgan-ssl", "dsgan-ssl"]
    for name in ("g_optimizer", "c_optimizer"):
        assert_same_state(getattr(trained.objective, name).state_dict()["state"][0],
                          getattr(resumed_ssl.objective, name).state_dict()["state"][0], name)
