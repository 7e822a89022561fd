import json

import numpy as np
import pytest

import atebm
from atebm.cli import main


@pytest.mark.slow
def test_smoke_demo_writes_every_promised_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out), "--device", "cpu"]) == 0
    for name in ("checkpoint.pt", "config.json", "log.jsonl", "metrics.json", "ood.json", "report.html",
                 "samples.npz", "samples.png", "samples_blurred_seeds.npz", "samples_blurred_seeds.png",
                 "seeds.png", "trajectory.png", "nearest_neighbours.png", "outlier-exposure/checkpoint.pt"):
        assert (out / name).exists(), name
    assert not atebm.load(out).training
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["generation"]["rows"]
    assert {"held-out real digits", "unmodified seeds (photo patches)", "samples (photo seeds)"} <= set(rows)
    assert rows["held-out real digits"]["fd"] < rows["unmodified seeds (photo patches)"]["fd"]
    assert metrics["monitor"]["status"] in ("healthy", "warned", "stopped")
    with np.load(out / "samples.npz") as archive:
        assert archive["x"].dtype == np.float32 and archive["x"].ndim == 4
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "<table" in html
    printed = capsys.readouterr().out
    assert "Generation quality" in printed and "Failure-mode monitor" in printed
    # a second demo into the same folder refuses instead of mixing runs
    assert main(["demo", "--smoke", "--out", str(out)]) == 1
