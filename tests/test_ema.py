"""The trainer's exponential moving average of the weights (``ema_decay``): the update rule against a hand
computation, buffers copied, exact resume, what ``model.pt`` holds, and config validation."""
from __future__ import annotations

import pytest
import torch

import atebm
from atebm import TrainConfig, Trainer
from atebm.training import check_resume_overrides, load_checkpoint


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().double() for k, v in trainer.model.named_parameters()}


def test_update_rule_is_the_bias_corrected_weighted_mean_of_the_iterates(toy2d, config_2d, box_2d, linear_2d_spec):
    data, p0 = toy2d(256)
    decay = 0.5
    trainer = Trainer(config_2d(model=linear_2d_spec, ema_decay=decay, k_max=1), data, p0, extra=box_2d)
    iterates = []
    for _ in range(3):
        trainer.train_step()
        iterates.append(_params(trainer))
    assert trainer.ema_steps == 3
    # by hand, d = 1/2: w_i = (1 - d) d^(3 - i) / (1 - d^3) = (1/8) * (1, 2, 4) / (7/8) = (1, 2, 4) / 7
    for name in iterates[0]:
        expected = (iterates[0][name] + 2 * iterates[1][name] + 4 * iterates[2][name]) / 7
        assert torch.allclose(trainer.ema[name].double(), expected, atol=1e-6), name
    # the raw weights moved, so the average differs from the last iterate (the test would pass trivially otherwise)
    assert any(not torch.allclose(trainer.ema[n].double(), iterates[-1][n]) for n in iterates[0])


def test_first_step_average_is_the_first_iterate_and_buffers_are_copied(tiny_images, image_config):
    data, p0 = tiny_images()
    spec = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4, "batchnorm": True}}
    trainer = Trainer(image_config(model=spec, ema_decay=0.99), data, p0)
    trainer.train_step()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(trainer.ema[name], value), name  # c_1 = 1: no pull towards the initial weights
    trainer.train_step()
    buffers = {name for name, _ in trainer.model.named_buffers()}
    assert any("running_mean" in b for b in buffers)
    for name, value in trainer.model.state_dict().items():
        if name in buffers:
            assert torch.equal(trainer.ema[name], value), f"buffer {name} is copied, not averaged"
    raw = trainer.model.state_dict()
    moved = [n for n, _ in trainer.model.named_parameters() if not torch.equal(trainer.ema[n], raw[n])]
    assert moved, "after two steps with d = 0.99 the averaged parameters lag the raw ones"


def test_resume_with_ema_equals_an_uninterrupted_run(tmp_path, tiny_images, image_config, assert_same_state):
    data, p0 = tiny_images()
    cfg = image_config(ema_decay=0.9, augment_crop_scale=(0.8, 1.0))
    full = Trainer(cfg, data, p0, out_dir=tmp_path / "full")
    full.fit()
    part = Trainer(cfg.replace(max_iters=12), data, p0, out_dir=tmp_path / "part")
    part.fit()
    del part
    resumed = Trainer.resume(tmp_path / "part" / "checkpoint.pt", data, p0, overrides={"max_iters": 24})
    assert resumed.step == 12 and resumed.ema_steps == 12
    resumed.fit()
    assert resumed.ema_steps == full.ema_steps == 24
    assert_same_state(full.model.state_dict(), resumed.model.state_dict(), "raw weights")
    assert_same_state(full.ema, resumed.ema, "weight average")
    # model.pt (no selection) holds the average; checkpoint.pt the raw weights it resumes from
    exported = atebm.load_model(tmp_path / "part")
    assert exported.meta["selection"]["weights"] == "ema"
    assert_same_state(exported.state_dict(), full.ema, "model.pt vs the average")
    assert_same_state(load_checkpoint(tmp_path / "part")["model"], full.model.state_dict(), "checkpoint.pt raw")


def test_selection_can_choose_the_average_and_ema_model_draws_no_random_numbers(tiny_images, image_config):
    data, p0 = tiny_images()
    trainer = Trainer(image_config(ema_decay=0.9, max_iters=4), data, p0)
    trainer.fit()
    rng = torch.get_rng_state()
    averaged = trainer.ema_model()
    assert torch.equal(torch.get_rng_state(), rng)
    assert not averaged.training and averaged is not trainer.model
    for name, value in averaged.state_dict().items():
        assert torch.equal(value, trainer.ema[name])
    trainer.select_weights(by="val_fd", value=1.0, ema=True)
    weights, selection = trainer.model_weights()
    assert selection["weights"] == "ema" and all(torch.equal(weights[k], trainer.ema[k]) for k in weights)
    trainer.select_weights(by="val_fd", value=0.5)
    weights, selection = trainer.model_weights()
    assert selection["weights"] == "raw"
    assert all(torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items())

    plain = Trainer(image_config(max_iters=2), data, p0)
    assert plain.ema is None and plain.model_weights()[1]["weights"] == "raw"
    with pytest.raises(ValueError, match="no weight average"):
        plain.ema_model()
    with pytest.raises(ValueError, match="no weight average"):
        plain.select_weights(by="val_fd", value=1.0, ema=True)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, True, "0.9"])
def test_config_rejects_a_bad_decay(bad):
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(max_iters=1, ema_decay=bad)


def test_config_accepts_a_decay_and_a_resume_cannot_change_it():
    saved = TrainConfig(max_iters=1, ema_decay=0.99).to_dict()
    assert TrainConfig.from_dict(saved).ema_decay == 0.99
    with pytest.raises(ValueError, match="ema_decay"):
        check_resume_overrides(saved, {"ema_decay": 0.9}, TrainConfig.from_dict)
