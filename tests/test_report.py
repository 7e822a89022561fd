"""The run report: persistence, merging between writers, self-contained HTML, and rendering in a real browser."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atebm.io import save_grid
from atebm.report import Report, render
from atebm.report.html import format_cell


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine threads contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _history(n: int = 30) -> list[dict]:
    return [{"step": 10 * i, "k": i // 6, "loss": 1.35 - 0.02 * i, "auc_adv": 0.5 + 0.01 * i, "auc_clean": 0.95,
             "perturbation_l2": 0.2 * (i // 6), "r1": 0.0} for i in range(1, n + 1)]


def _full_report(run_dir: Path) -> Report:
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 28), torch.linspace(0, 1, 28), indexing="ij")
    digits = torch.stack([((xx - 0.2 * (i % 4) - 0.2) ** 2 + (yy - 0.5) ** 2 < 0.05 * (1 + i % 3)).float()
                          for i in range(16)])[:, None]
    save_grid(run_dir / "samples.png", digits, scale=3)
    report = Report.open(run_dir, title="unit-test run")
    report.add_curves("train/curves", "Training curves", _history(), events=[{"step": 150, "kind": "non_finite"}])
    report.add_image("train/samples", "Samples", "samples.png", caption="16 synthetic images")
    report.add_table("ood/table", "Worst-case AUROC", ["set", "eps=0", "eps=3"],
                     [["photos", 0.99123, 0.8], ["uniform", 1.0, float("nan")]],
                     protocol={"norm": "l2", "steps": [20, 50], "n_in": 64, "attackers": ["pgd", "apgd"]},
                     note="AT model, K=8")
    report.add_text("notes", "Notes", "first <b>paragraph</b>\n\nsecond paragraph")
    return report


def test_sections_persist_in_order_and_replace_in_place(tmp_path):
    report = _full_report(tmp_path)
    report.save()
    again = Report.open(tmp_path)
    assert again.title == "unit-test run"
    assert again.keys() == ["train/curves", "train/samples", "ood/table", "notes"]
    again.add_table("ood/table", "Worst-case AUROC (replaced)", ["set"], [["svhn"]])
    again.add_text("later", "Later", "added last")
    again.save()
    state = json.loads((tmp_path / "report.json").read_text())
    keys = [s["key"] for s in state["sections"]]
    assert keys == ["train/curves", "train/samples", "ood/table", "notes", "later"]
    table = state["sections"][2]
    assert table["heading"] == "Worst-case AUROC (replaced)" and table["rows"] == [["svhn"]]
    assert state["sections"][1]["path"] == "samples.png"


def test_two_writers_keep_each_others_sections(tmp_path):
    first, second = Report.open(tmp_path), Report.open(tmp_path)
    first.add_text("train", "Train", "from train")
    second.add_text("ood", "OOD", "from eval-ood")
    first.save()
    second.save()
    merged = Report.open(tmp_path)
    assert merged.keys() == ["train", "ood"]
    second.remove("train")
    second.save()
    assert Report.open(tmp_path).keys() == ["ood"]


def test_bad_input_is_refused_with_clear_errors(tmp_path):
    report = Report.open(tmp_path)
    with pytest.raises(ValueError, match="row 0 has 1 cells but there are 2 columns"):
        report.add_table("t", "T", ["a", "b"], [[1]])
    with pytest.raises(FileNotFoundError):
        report.add_image("i", "I", "nothing.png")
    outside = tmp_path.parent / "outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    with pytest.raises(ValueError, match="outside the run folder"):
        report.add_image("i", "I", outside)
    with pytest.raises(ValueError, match="history is empty"):
        report.add_curves("c", "C", [])
    with pytest.raises(ValueError, match="non-empty string key"):
        report.add_text("", "T", "x")
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable report"):
        Report.open(tmp_path)
    with pytest.raises(FileNotFoundError):
        render(tmp_path / "empty")


def test_html_is_self_contained_and_escaped(tmp_path):
    path = _full_report(tmp_path).save()
    page = path.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "first &lt;b&gt;paragraph&lt;/b&gt;" in page and "<b>paragraph" not in page
    assert page.count("<table class=\"data\">") == 1 and "protocol" in page and "attackers" in page
    # The embedded picture is the very file on disk.
    import base64
    embedded = base64.b64decode(sources[1].split(",", 1)[1])
    assert embedded == (tmp_path / "samples.png").read_bytes()
    # render() rebuilds the same page from report.json alone.
    (tmp_path / "report.html").unlink()
    assert render(tmp_path).read_text().count("<section") == 4


def test_cell_formatting():
    assert format_cell(0.991234) == ("0.9912", True)
    assert format_cell(1.0) == ("1.0000", True)
    assert format_cell(13.0712) == ("13.07", True)
    assert format_cell(None) == ("—", False)
    assert format_cell("nan") == ("nan", True)
    assert format_cell(3) == ("3", True)
    assert format_cell("photos") == ("photos", False)


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(tmp_path):
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the browser test")
        pytest.skip(message)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    html_path = _full_report(run_dir).save()

    shot = tmp_path / "shot.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=1200,1800", html_path.resolve().as_uri()],
                       tmp_path / "profile1")
    assert shot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1800, 1200)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 100, f"screenshot looks blank: {len(colours)} distinct colours"
    # the header band (dark blue) and the white section cards are both painted
    assert (pixels[:40].mean(axis=(0, 1)) < 120).all()
    assert (pixels == 255).all(axis=2).mean() > 0.05

    # Probe a copy of the page (the report itself carries no script): after load, record which images decoded.
    probe = run_dir / "probe.html"
    probe.write_text(html_path.read_text().replace(
        "</body>", "<script>window.addEventListener('load',()=>{document.body.setAttribute('data-probe',"
                   "JSON.stringify({imgs:[...document.images].map(i=>[i.complete,i.naturalWidth,i.naturalHeight,"
                   "i.getBoundingClientRect().width]),tables:document.querySelectorAll('table.data').length,"
                   "rows:document.querySelectorAll('table.data tbody tr').length}))});</script></body>"))
    result = _chromium(["--dump-dom", "--virtual-time-budget=5000", probe.resolve().as_uri()], tmp_path / "profile2")
    match = re.search(r'data-probe="([^"]+)"', result.stdout)
    assert match, result.stdout[-1000:] + result.stderr[-1000:]
    info = json.loads(match.group(1).replace("&quot;", '"'))
    assert info["tables"] == 1 and info["rows"] == 2
    assert len(info["imgs"]) == 2
    for complete, width, height, shown in info["imgs"]:
        assert complete and width > 50 and height > 50 and shown > 50


def test_report_command_rerenders(tmp_path, capsys):
    import argparse

    from atebm.cli.report import register

    _full_report(tmp_path).save()
    (tmp_path / "report.html").unlink()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(tmp_path)])
    assert args.func(args) == 0 and (tmp_path / "report.html").exists()
    assert "report written to" in capsys.readouterr().out
