"""End-to-end runs of the application commands (atebm restore/translate/interpolate/compose) on tiny inputs."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from atebm import TrainConfig, build_score_model, load
from atebm.apps import generate
from atebm.cli import main
from atebm.training import save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread; several threads spin against each other on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _checkpoint(path, seed, channels=1, extra=None):
    torch.manual_seed(seed)
    model = build_score_model({"arch": "convnet", "kwargs": {"in_channels": channels, "width": 4},
                               "mean": 0.5, "std": 0.5})
    config = TrainConfig(model=model.spec, step_size=0.5, max_iters=1).to_dict()
    save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict(), "config": config,
                           "extra": extra or {}})
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("apps_cli")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 16, 16, generator=g)
    np.savez(root / "x.npz", x=x.numpy())
    np.save(root / "b.npy", torch.rand(6, 1, 16, 16, generator=g).numpy())
    faces = root / "faces"
    faces.mkdir()
    for i in range(3):  # an RGB image folder of another size: translate must convert it
        Image.fromarray((np.random.default_rng(i).random((20, 20, 3)) * 255).astype(np.uint8)).save(faces / f"{i}.png")
    hole = np.zeros((16, 16), dtype=np.uint8)
    hole[4:9, 4:12] = 255
    Image.fromarray(hole).save(root / "mask.png")
    return {"root": root, "x": str(root / "x.npz"), "b": str(root / "b.npy"), "faces": str(faces),
            "mask": str(root / "mask.png"), "ckpt1": _checkpoint(root / "m1.pt", 1),
            "ckpt2": _checkpoint(root / "m2.pt", 2),
            "ckpt_gen": _checkpoint(root / "m3.pt", 3, extra={"generate": {"steps": 5, "step_size": 0.3, "blur": 1.0}})}


def _report_keys(out):
    return [s["key"] for s in json.loads((out / "report.json").read_text())["sections"]]


def _npz(path):
    with np.load(path) as f:
        return f["x"]


def test_denoise_with_synthetic_noise_writes_images_metrics_trajectory_and_report(files, tmp_path):
    out = tmp_path / "run"
    rc = main(["restore", "denoise", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", str(out),
               "--noise", "gaussian", "--sigma", "0.2", "--steps", "3", "--trajectory", "0,1,3", "--eps", "2.0"])
    assert rc == 0
    for name in ("denoise.npz", "denoise.png", "noisy.npz", "noisy.png", "denoise_comparison.png", "denoise.json",
                 "denoise_trajectory.png", "denoise_trajectory.gif", "denoise_trajectory.npz", "report.html"):
        assert (out / name).is_file(), name
    restored, noisy = _npz(out / "denoise.npz"), _npz(out / "noisy.npz")
    assert restored.shape == (6, 1, 16, 16) and restored.dtype == np.float32
    assert (np.linalg.norm((restored - noisy).reshape(6, -1), axis=1) <= 2.0 + 1e-4).all()
    summary = json.loads((out / "denoise.json").read_text())
    assert summary["protocol"]["step_size"] == 0.5  # the checkpoint's training step size
    assert summary["metrics"]["ssim_noisy"]["n"] == 6
    assert {"apps/denoise/quality", "apps/denoise/comparison", "apps/denoise/trajectory"} <= set(_report_keys(out))


def test_inpaint_with_a_user_mask_keeps_visible_pixels(files, tmp_path):
    out = tmp_path / "run"
    assert main(["restore", "inpaint", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", str(out),
                 "--mask", "file", "--mask-file", files["mask"], "--fill", "noise", "--steps", "4"]) == 0
    x, restored = _npz(files["x"]), _npz(out / "inpaint.npz")
    mask = _npz(out / "mask.npz").astype(bool)
    assert mask.shape == (6, 1, 16, 16) and mask[:, 0, 4:9, 4:12].all() and mask.sum() == 6 * 40
    np.testing.assert_array_equal(restored[~mask], x[~mask])
    assert (out / "occluded.npz").is_file() and "apps/inpaint/quality" in _report_keys(out)


def test_inpaint_an_already_occluded_input_with_random_pixels(files, tmp_path):
    out = tmp_path / "run"
    assert main(["restore", "inpaint", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", str(out),
                 "--mask", "pixels", "--fraction", "0.3", "--occluded", "--steps", "2", "--n", "4"]) == 0
    assert _npz(out / "inpaint.npz").shape == (4, 1, 16, 16)
    assert not (out / "occluded.npz").exists() and "apps/inpaint/quality" not in _report_keys(out)


def test_translate_converts_an_rgb_folder_and_saves_the_path(files, tmp_path):
    out = tmp_path / "run"
    assert main(["translate", "--checkpoint", files["ckpt1"], "--input", files["faces"], "--out", str(out),
                 "--size", "16", "--steps", "4", "--trajectory", "every:2"]) == 0
    assert _npz(out / "translate.npz").shape == (3, 1, 16, 16)
    assert _npz(out / "translate_source.npz").shape == (3, 1, 16, 16)
    with np.load(out / "translate_trajectory.npz") as f:
        assert f["steps"].tolist() == [0, 2, 4] and f["x"].shape == (9, 1, 16, 16)
    assert json.loads((out / "translate.json").read_text())["metrics"]["score_translated"]["n"] == 3


def test_translate_from_an_embedded_data_set(files, tmp_path):
    out = tmp_path / "run"
    assert main(["translate", "--checkpoint", files["ckpt1"], "--data", "lfw", "--n", "3", "--size", "16",
                 "--steps", "2", "--out", str(out)]) == 0
    assert _npz(out / "translate.npz").shape == (3, 1, 16, 16)
    assert json.loads((out / "translate.json").read_text())["protocol"]["input"] == "atebm.data lfw (test)"


def test_interpolate_pairs_from_two_inputs(files, tmp_path):
    out = tmp_path / "run"
    assert main(["interpolate", "--checkpoint", files["ckpt1"], "--input", files["x"], "--input-b", files["b"],
                 "--out", str(out), "--num", "4", "--steps", "3", "--n", "2"]) == 0
    samples = _npz(out / "interpolate.npz")
    assert samples.shape == (8, 1, 16, 16)
    model = load(files["ckpt1"])
    a = torch.from_numpy(_npz(files["x"])[:2])
    expected = generate(model, a, 3, 0.5).numpy()
    np.testing.assert_allclose(samples[[0, 4]], expected, atol=1e-5)


def test_compose_two_checkpoints_with_weights_and_singles(files, tmp_path):
    out = tmp_path / "run"
    assert main(["compose", "--checkpoint", files["ckpt1"], files["ckpt2"], "--weights", "1", "0",
                 "--input", files["x"], "--out", str(out), "--n", "3"]) == 0
    composed, single = _npz(out / "compose.npz"), _npz(out / "compose_single0.npz")
    np.testing.assert_array_equal(composed, single)  # weight 0 on the second model: the first alone
    protocol = json.loads((out / "compose.json").read_text())["protocol"]
    assert protocol["steps"] == 16 and protocol["weights"] == [1.0, 0.0]  # default steps: the training K
    assert (out / "compose_single1.npz").is_file() and (out / "compose_comparison.png").is_file()
    assert "apps/compose/comparison" in _report_keys(out)


def test_stored_generation_settings_are_the_defaults_of_generation_commands_only(files, tmp_path):
    out = tmp_path / "run"
    assert main(["interpolate", "--checkpoint", files["ckpt_gen"], "--input", files["x"], "--n", "2",
                 "--num", "3", "--out", str(out)]) == 0
    protocol = json.loads((out / "interpolate.json").read_text())["protocol"]
    assert (protocol["steps"], protocol["step_size"], protocol["blur_sigma"]) == (5, 0.3, 1.0)
    assert main(["restore", "denoise", "--checkpoint", files["ckpt_gen"], "--input", files["x"], "--n", "2",
                 "--out", str(out)]) == 0
    protocol = json.loads((out / "denoise.json").read_text())["protocol"]
    assert (protocol["steps"], protocol["step_size"]) == (10, 0.5)  # restoration: its own default, training step
    assert main(["compose", "--checkpoint", files["ckpt_gen"], files["ckpt1"], "--input", files["x"],
                 "--out", str(out)]) == 1  # 0.3 vs 0.5: the user must choose


def test_bad_arguments_fail_with_a_message(files, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["compose", "--checkpoint", files["ckpt1"], files["ckpt2"], "--weights", "1",
                 "--input", files["x"], "--out", out]) == 1
    assert "--weights has 1 values for 2 checkpoints" in capsys.readouterr().err
    assert main(["restore", "inpaint", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", out,
                 "--mask", "file"]) == 1
    assert "--mask-file" in capsys.readouterr().err
    assert main(["translate", "--checkpoint", str(tmp_path / "nope.pt"), "--input", files["x"], "--out", out]) == 1
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["restore", "denoise", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", out,
              "--sigma", "-1"])
