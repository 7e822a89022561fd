"""End-to-end runs of the application commands, through the CLI (atebm restore/translate/interpolate/compose) and
through the library pipelines behind it (atebm.apps.run_*), on tiny checkpoints written here."""
from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from PIL import Image

from atebm import TrainConfig, build_score_model, load
from atebm.apps import generate, run_denoise, run_inpaint, run_translate
from atebm.cli import build_parser, main
from atebm.training import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _checkpoint(path, seed, channels=1, size=16, extra=None):
    """A width-4 ConvNet checkpoint that records its input format as `atebm train` does (``size=None``: none)."""
    torch.manual_seed(seed)
    model = build_score_model({"arch": "convnet", "kwargs": {"in_channels": channels, "width": 4},
                               "mean": 0.5, "std": 0.5})
    config = TrainConfig(model=model.spec, step_size=0.5, max_iters=1).to_dict()
    recorded = {"channels": channels, **({"size": size} if size is not None else {})}
    save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict(), "config": config,
                           "extra": {**recorded, **(extra or {})}})
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
            "ckpt_gen": _checkpoint(root / "m3.pt", 3, extra={"generate": {"steps": 5, "step_size": 0.3, "blur": 1.0}}),
            "ckpt_rgb32": _checkpoint(root / "rgb32.pt", 4, channels=3, size=32),
            "ckpt_rgb32b": _checkpoint(root / "rgb32b.pt", 5, channels=3, size=32),
            "ckpt_nosize": _checkpoint(root / "nosize.pt", 6, size=None)}


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
    assert not np.array_equal(restored[mask], _npz(out / "occluded.npz")[mask])  # the hole moved
    assert "apps/inpaint/quality" in _report_keys(out)


def test_inpaint_an_already_occluded_input_with_random_pixels(files, tmp_path):
    out = tmp_path / "run"
    assert main(["restore", "inpaint", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", str(out),
                 "--mask", "pixels", "--fraction", "0.3", "--occluded", "--steps", "2", "--n", "4"]) == 0
    assert _npz(out / "inpaint.npz").shape == (4, 1, 16, 16)
    assert not (out / "occluded.npz").exists() and "apps/inpaint/quality" not in _report_keys(out)


def test_translate_converts_an_rgb_folder_to_the_checkpoint_format_and_saves_the_path(files, tmp_path):
    out = tmp_path / "run"
    assert main(["translate", "--checkpoint", files["ckpt1"], "--input", files["faces"], "--out", str(out),
                 "--steps", "4", "--trajectory", "every:2"]) == 0
    assert _npz(out / "translate.npz").shape == (3, 1, 16, 16)  # 20x20 RGB -> the checkpoint's 16x16 grey
    assert _npz(out / "translate_source.npz").shape == (3, 1, 16, 16)
    with np.load(out / "translate_trajectory.npz") as f:
        assert f["steps"].tolist() == [0, 2, 4] and f["x"].shape == (9, 1, 16, 16)
    assert json.loads((out / "translate.json").read_text())["metrics"]["score_translated"]["n"] == 3


def test_translate_from_an_embedded_data_set(files, tmp_path):
    out = tmp_path / "run"
    assert main(["translate", "--checkpoint", files["ckpt1"], "--data", "lfw", "--n", "3", "--steps", "2",
                 "--out", str(out)]) == 0
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
    assert not np.array_equal(composed, _npz(out / "compose_single1.npz"))
    protocol = json.loads((out / "compose.json").read_text())["protocol"]
    assert protocol["steps"] == 16 and protocol["weights"] == [1.0, 0.0]  # default steps: the training K
    assert (out / "compose_comparison.png").is_file() and "apps/compose/comparison" in _report_keys(out)


def test_stored_generation_settings_are_the_defaults_of_generation_commands_only(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["interpolate", "--checkpoint", files["ckpt_gen"], "--input", files["x"], "--n", "2",
                 "--num", "3", "--out", str(out)]) == 0
    protocol = json.loads((out / "interpolate.json").read_text())["protocol"]
    assert (protocol["steps"], protocol["step_size"], protocol["blur_sigma"]) == (5, 0.3, 1.0)
    assert main(["restore", "denoise", "--checkpoint", files["ckpt_gen"], "--input", files["x"], "--n", "2",
                 "--out", str(out)]) == 0
    protocol = json.loads((out / "denoise.json").read_text())["protocol"]
    assert (protocol["steps"], protocol["step_size"]) == (10, 0.5)  # restoration: its own default, training step
    capsys.readouterr()
    assert main(["compose", "--checkpoint", files["ckpt_gen"], files["ckpt1"], "--input", files["x"],
                 "--out", str(out)]) == 1  # 0.3 vs 0.5: the user must choose
    assert "disagree on the default steps [5.0, 16.0]; choose steps" in capsys.readouterr().err


def test_a_32px_rgb_checkpoint_works_through_every_command(files, tmp_path):
    """Size and channels come from the checkpoint: 28 px grey MNIST digits become 32 px RGB inputs."""
    rgb, rgb_b = files["ckpt_rgb32"], files["ckpt_rgb32b"]
    common = ["--data", "mnist", "--n", "2", "--steps", "1"]
    runs = {"denoise": ["restore", "denoise", "--checkpoint", rgb, "--noise", "gaussian"],
            "inpaint": ["restore", "inpaint", "--checkpoint", rgb],
            "translate": ["translate", "--checkpoint", rgb],
            "interpolate": ["interpolate", "--checkpoint", rgb, "--num", "3"],
            "compose": ["compose", "--checkpoint", rgb, rgb_b]}
    expected = {"denoise": (2, 3, 32, 32), "inpaint": (2, 3, 32, 32), "translate": (2, 3, 32, 32),
                "interpolate": (3, 3, 32, 32), "compose": (2, 3, 32, 32)}
    for name, argv in runs.items():
        out = tmp_path / name
        assert main(argv + common + ["--out", str(out)]) == 0, name
        assert _npz(out / f"{name}.npz").shape == expected[name], name
        assert json.loads((out / f"{name}.json").read_text())["protocol"]["image_shape"] == [3, 32, 32]


def test_a_checkpoint_without_a_recorded_size_keeps_the_array_size_and_refuses_a_data_set(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["translate", "--checkpoint", files["ckpt_nosize"], "--input", files["x"], "--steps", "1",
                 "--out", str(out)]) == 0
    assert _npz(out / "translate.npz").shape == (6, 1, 16, 16)
    capsys.readouterr()
    assert main(["translate", "--checkpoint", files["ckpt_nosize"], "--data", "mnist", "--out", str(out)]) == 1
    assert "does not record" in capsys.readouterr().err


def _bad_arrays():
    good = np.random.default_rng(0).random((4, 1, 16, 16)).astype(np.float32)
    nan, inf = good.copy(), good.copy()
    nan[1, 0, 3, 3] = np.nan
    inf[2, 0, 5, 5] = -np.inf
    return {"nan": (nan, "NaN"), "inf": (inf, "inf"), "range": (good * 2, "[0, 1]"),
            "shape": (good.reshape(4, 256), "shape"), "channels": (np.concatenate([good, good], 1), "channels"),
            "dtype": (good.astype(np.int64), "dtype"), "empty": (good[:0], "no images")}


@pytest.mark.parametrize("kind", list(_bad_arrays()))
def test_bad_input_arrays_fail_every_command_with_one_line_naming_the_problem(files, tmp_path, capsys, kind):
    array, problem = _bad_arrays()[kind]
    bad = tmp_path / f"{kind}.npy"
    np.save(bad, array)
    commands = [["restore", "denoise"], ["restore", "inpaint"], ["translate"], ["interpolate"], ["compose"]]
    for command in commands:
        capsys.readouterr()
        rc = main(command + ["--checkpoint", files["ckpt1"], "--input", str(bad), "--steps", "1",
                             "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 1, (command, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert problem in err and bad.name in err, err
    assert not (tmp_path / "out" / "report.html").exists()  # nothing was written


def test_bad_arguments_fail_with_a_message(files, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["compose", "--checkpoint", files["ckpt1"], files["ckpt2"], "--weights", "1",
                 "--input", files["x"], "--out", out]) == 1
    assert "weights has 1 values for 2 models" in capsys.readouterr().err
    assert main(["restore", "inpaint", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", out,
                 "--mask", "file"]) == 1
    assert "--mask-file" in capsys.readouterr().err
    assert main(["translate", "--checkpoint", str(tmp_path / "nope.pt"), "--input", files["x"], "--out", out]) == 1
    assert "not found" in capsys.readouterr().err
    for wrong in (["--sigma", "-1"], ["--device", "gpu"], ["--threads", "0"], ["--amount", "1.5"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["restore", "denoise", "--checkpoint", files["ckpt1"], "--input", files["x"], "--out", out] + wrong)
        assert exit_info.value.code == 2, wrong


def test_device_and_threads_are_the_shared_options(files, tmp_path):
    before = torch.get_num_threads()
    try:
        assert main(["translate", "--checkpoint", files["ckpt1"], "--input", files["x"], "--steps", "1", "--n", "1",
                     "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    finally:
        torch.set_num_threads(before)
    parser = build_parser()
    for argv in (["restore", "denoise"], ["restore", "inpaint"], ["translate"], ["interpolate"], ["compose"]):
        args = parser.parse_args(argv + ["--checkpoint", "m.pt", "--data", "mnist", "--out", "o"])
        assert args.device == "auto" and args.threads is None, argv


@pytest.mark.parametrize("argv, pipeline", [(["restore", "denoise"], run_denoise),
                                            (["restore", "inpaint"], run_inpaint), (["translate"], run_translate)])
def test_the_parser_defaults_are_the_pipeline_defaults(argv, pipeline):
    args = build_parser().parse_args(argv + ["--checkpoint", "m.pt", "--data", "mnist", "--out", "o"])
    for name, parameter in inspect.signature(pipeline).parameters.items():
        if parameter.default is not inspect.Parameter.empty and hasattr(args, name):
            assert getattr(args, name) == parameter.default, name


def test_the_pipelines_run_from_python_on_tensors_and_loaded_models(files, tmp_path):
    model = load(files["ckpt1"])
    x = torch.from_numpy(_npz(files["x"]))
    result = run_denoise(model, x, tmp_path / "run", noise="salt-pepper", amount=0.2, steps=2, trajectory=[0, 2])
    assert result.output.shape == (6, 1, 16, 16) and result.start.shape == (6, 1, 16, 16)
    assert result.record == [0, 2] and result.path.shape == (2, 6, 1, 16, 16)
    assert torch.equal(result.path[0], result.start) and torch.equal(result.path[-1], result.output)
    saved = json.loads((tmp_path / "run" / "denoise.json").read_text())
    assert saved["protocol"]["eps"] == "inf" and saved["protocol"]["step_size"] == 0.5
    assert saved["metrics"] == json.loads(json.dumps(result.metrics))
    assert (tmp_path / "run" / result.files["denoise"]).is_file()
    with pytest.raises(ValueError, match="non-finite|NaN"):
        run_denoise(model, x * float("nan"), tmp_path / "bad")
    with pytest.raises(ValueError, match="pass step_size"):  # a plain callable records no defaults
        run_translate(lambda t: t.flatten(1).sum(1), x, tmp_path / "bad", steps=1)
