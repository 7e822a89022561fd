"""``atebm demo --smoke``: every promised file, the monitor wired into training, and the run folder's model is the
weights the validation-FD selection chose."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import atebm
from atebm.cli import main
from atebm.demo import SMOKE_OVERRIDES
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
    last = load_checkpoint(out / "checkpoint.pt")["model"]
    same_as_last = all(torch.equal(v, last[k]) for k, v in model.state_dict().items())
    assert same_as_last == (best["step"] == iterations), \
        "model.pt equals the last weights exactly when the last step had the lowest validation FD"

    with np.load(out / "samples.npz") as archive:
        assert archive["x"].dtype == np.float32 and archive["x"].ndim == 4
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "<table" in html
    printed = capsys.readouterr().out
    assert "Generation quality" in printed and "Failure-mode monitor: healthy" in printed
    # a second demo into the same folder refuses instead of mixing runs
    assert main(["demo", "--smoke", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
