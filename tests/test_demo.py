"""``atebm demo --smoke``: every promised file, the monitor wired into training, and the run folder's model is the
weights the validation-FD selection chose."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import atebm
from atebm.cli import main
from atebm.demo import SMOKE_OVERRIDES, out_of_family_seeds
from atebm.training import load_checkpoint


@pytest.mark.slow
def test_smoke_demo_writes_every_promised_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out), "--device", "cpu"]) == 0
    for name in ("model.pt", "checkpoint.pt", "config.json", "log.jsonl", "metrics.json", "ood.json",
                 "report.html", "samples.npz", "samples.png", "samples_blurred_seeds.npz",
                 "samples_blurred_seeds.png", "seeds.png", "trajectory.png", "nearest_neighbours.png",
                 "outlier-exposure/model.pt", "outlier-exposure/checkpoint.pt"):
        assert (out / name).exists(), name
    model = atebm.load_model(out)
    assert not model.training
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["generation"]["rows"]
    assert {"held-out real digits", "unmodified seeds (photo patches)", "samples (photo seeds)"} <= set(rows)
    assert rows["held-out real digits"]["fd"] < rows["unmodified seeds (photo patches)"]["fd"]

    # the monitor saw every log line of the AT run (a monitor not passed to the trainer sees none) and, in six
    # iterations at K <= 2, found no failure signature
    iterations = metrics["training"]["at"]["iterations"]
    assert iterations == SMOKE_OVERRIDES["max_iters"]
    monitor = metrics["monitor"]
    assert monitor["log_lines"] == iterations // SMOKE_OVERRIDES["log_every"]
    assert monitor["status"] == "healthy" and monitor["events"] == [] and monitor["stopped"] is None
    assert monitor["last_good_step"] == iterations

    # model.pt holds the weights of the step with the lowest validation FD; checkpoint.pt the last weights
    selection = metrics["model_selection"]
    trace = selection["trace"]
    assert trace and [r["step"] for r in trace] == list(range(2, iterations + 1, 2))
    best = min(trace, key=lambda r: r["val_fd"])
    assert selection["best_step"] == best["step"] and selection["best_val_fd"] == pytest.approx(best["val_fd"])
    assert model.meta["selection"]["by"] == "val_fd" and model.meta["selection"]["step"] == best["step"]
    # (the last weights of the kind the run exports: the weight average when the preset keeps one)
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    last = checkpoint["trainer"]["ema"] if checkpoint["config"].get("ema_decay") else checkpoint["model"]
    same_as_last = all(torch.equal(v, last[k]) for k, v in model.state_dict().items())
    assert same_as_last == (best["step"] == iterations), \
        "model.pt equals the last weights exactly when the last step had the lowest validation FD"

    # raw and (when the preset keeps one) averaged weights are both traced; the selection picks the exported kind
    ema = metrics["training"]["at"]["config_ema_decay"]
    assert all("val_fd_raw" in r for r in trace)
    assert all(("val_fd_ema" in r) == (ema is not None) for r in trace)
    assert all(r["val_fd"] == r["val_fd_ema" if ema is not None else "val_fd_raw"] for r in trace)
    assert model.meta["selection"]["weights"] == selection["weights"] == ("ema" if ema is not None else "raw")
    assert selection["last_over_best"] == pytest.approx(trace[-1]["val_fd"] / best["val_fd"])

    # the out-of-family gap: FD of the samples from out-of-family seeds over that of the held-out photo seeds
    oof = metrics["generation"]["out_of_family"]
    assert oof["fd"] == rows["samples (out-of-family seeds)"]["fd"]
    assert oof["gap"] == pytest.approx(oof["fd"] / rows["samples (photo seeds)"]["fd"])
    assert (out / "samples_out_of_family.png").exists() and (out / "seeds_out_of_family.png").exists()

    with np.load(out / "samples.npz") as archive:
        assert archive["x"].dtype == np.float32 and archive["x"].ndim == 4
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "<table" in html
    printed = capsys.readouterr().out
    assert "Generation quality" in printed and "Failure-mode monitor: healthy" in printed
    # a second demo into the same folder refuses instead of mixing runs
    assert main(["demo", "--smoke", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_out_of_family_seeds_are_deterministic_images_unlike_the_held_out_seeds():
    from atebm.data import load_dataset

    a, b = out_of_family_seeds(40, seed=1), out_of_family_seeds(40, seed=1)
    assert a.shape == (40, 1, 28, 28) and torch.equal(a, b)
    assert 0.0 <= float(a.min()) < 0.05 and 0.95 < float(a.max()) <= 1.0  # [0, 1] images that use the range
    assert not torch.equal(a, out_of_family_seeds(40, seed=2))
    held_out = load_dataset("photos", split="test", n=40, seed=1).x
    distances = torch.cdist(a.flatten(1), held_out.flatten(1))
    assert float(distances.min()) > 0, "no out-of-family seed is one of the demo's held-out seeds"
    # magnified patches are smoother than the held-out patches: lower mean absolute horizontal gradient
    def roughness(x: torch.Tensor) -> float:
        return float((x[..., 1:] - x[..., :-1]).abs().mean())
    assert roughness(a) < roughness(held_out)


def test_a_demo_cut_short_by_its_time_budget_says_so():
    """On a busy machine the time cap stops training early and the samples are worse (newcomer-check: FD 200 after
    807 of 2,000 iterations): the demo warns, naming the iterations done and planned; a run that reached its
    iterations, or stopped for another reason, gets no warning."""
    from types import SimpleNamespace

    from atebm.demo import time_budget_warning

    def trainer(step, stop):
        return SimpleNamespace(step=step, stop_reason=stop, config=SimpleNamespace(max_iters=2000))

    message = time_budget_warning(trainer(807, "time budget reached"), 420)
    assert message is not None and "420 s time budget stopped training after 807 of 2000 iterations" in message
    assert time_budget_warning(trainer(2000, "max_iters reached"), 420) is None
    assert time_budget_warning(trainer(2000, "time budget reached"), 420) is None
    assert time_budget_warning(trainer(300, "failure monitor"), 420) is None
