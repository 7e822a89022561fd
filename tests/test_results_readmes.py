"""The numbers a results README quotes from its committed JSON match the JSON (issue 27: READMEs that agree).

Each test parses one README table (or sentence) and names the JSON keys every quoted number comes from; a number
regenerated in the JSON but not in the README (or edited by hand in the README) fails here. Numbers are compared
at the precision the README prints them."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def table_after(text: str, heading: str) -> list[list[str]]:
    """The data rows of the first markdown table that starts at or after the line that starts with ``heading``
    (header and separator rows dropped; ``**bold**`` and backticks removed from the cells)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    assert start is not None, f"no line starts with {heading!r}"
    rows: list[list[str]] = []
    for line in lines[start:]:
        if line.startswith("|"):
            rows.append([re.sub(r"[*`]", "", cell).strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"no table after {heading!r}"
    return rows[2:]


def printed(value: float, like: float | str) -> bool:
    """``value`` rounds to the number printed as ``like`` (at the printed number of decimals)."""
    text = str(like)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(round(value, decimals) - float(text.replace(",", ""))) <= 10 ** -decimals / 2 + 1e-12


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------ README.md: demo
DEMO_ROWS = {  # README row label (start) -> metrics.json generation row
    "held-out real digits": "held-out real digits",
    "blurred held-out digits": "blurred held-out digits (sigma 1.0)",
    "unmodified seeds": "unmodified seeds (photo patches)",
    "samples: 32 PGD steps": "samples (photo seeds)",
    "samples from blurred seeds": "samples (seeds blurred, sigma 1.0)",
    "samples from out-of-family seeds": "samples (out-of-family seeds)",
}


def test_the_readme_demo_fd_table_is_metrics_json():
    rows = _load(RESULTS / "demo" / "metrics.json")["generation"]["rows"]
    table = table_after((REPO / "README.md").read_text(), "## What the demo measured")
    quoted = {row[0]: row for row in table}
    for label, key in DEMO_ROWS.items():
        row = next(r for name, r in quoted.items() if name.startswith(label))
        fd, classes = row[1], row[2]
        assert printed(rows[key]["fd"], fd), f"README FD of {label!r} is {fd}, metrics.json {rows[key]['fd']:.2f}"
        assert int(classes) == rows[key]["classes_covered"], label
    assert len(quoted) == len(DEMO_ROWS), "a README row has no metrics.json key here: add it to DEMO_ROWS"


def test_the_readme_ood_table_is_the_demo_ood_json():
    models = _load(RESULTS / "demo" / "ood.json")["models"]
    table = table_after((REPO / "README.md").read_text(), "| eps | 0 | 1 | 2 | 3 | 5 | 8 |")
    eps = ["0", "1", "2", "3", "5", "8"]
    for row, model in zip(table, ("AT", "OE (K=0)")):
        for e, cell in zip(eps, row[1:]):
            value = models[model]["mean_auroc_by_eps"][e]
            assert printed(value, cell), f"README {row[0]} at eps {e}: {cell}, ood.json {value:.4f}"


def test_the_readme_sgld_paragraph_is_sgld_vs_at_json():
    data = _load(RESULTS / "sgld_vs_at.json")
    text = " ".join((REPO / "README.md").read_text().split())
    sentence = text[text.index("Against the SGLD EBM"):text.index("compare with these")]
    sgld, at = data["sgld_ebm"], data["at"]
    quoted = {"SGLD FD": sgld["samples"]["short_run_from_noise"]["fd"],
              "from its replay buffer": sgld["samples"]["replay_buffer"]["fd"],
              "against AT's": at["samples"]["pgd_from_photo_patches"]["fd"],
              "FD 294.4 with 100 steps": sgld["samples"]["long_run_from_noise"]["fd"]}
    for words, value in quoted.items():
        assert f"{value:.1f}" in sentence, f"{words}: README lacks {value:.1f}"
    assert f"AT made {at['train']['iterations']} parameter updates" in sentence
    assert f"the SGLD EBM {sgld['train']['iterations']}" in sentence
    assert f"{data['budget_passes_per_method']:,} forward+backward passes" in sentence


# ------------------------------------------------------------------------------------------------ GAT committees
COMMITTEES = {"Linf 0.3": "linf 0.3", "Linf 0.5": "linf 0.5", "L2 2.5": "l2 2.5", "L2 5.0": "l2 5"}


def _auc(committee: dict[str, Any], table: str, detector: int, attack: str) -> float:
    rows = [r for r in committee["auc"] if r["table"] == table and r["detector"] == detector
            and r["attack"].startswith(attack)]
    assert len(rows) == 1, (committee["name"], table, detector, attack, rows)
    return float(rows[0]["auc"])


def test_the_gat_readme_own_ball_table_is_committees_json():
    committees = {c["name"]: c for c in _load(RESULTS / "gat" / "committees.json")["committees"]}
    readme = (RESULTS / "gat" / "README.md").read_text()
    table = table_after(readme, "| committee | clean AUC | one random start | 50 random restarts | Adam 200 steps |")
    assert [row[0].split(" (")[0] for row in table] == list(COMMITTEES)
    for row in table:
        c = committees[COMMITTEES[row[0].split(" (")[0]]]
        for detector in (0, 1):
            expected = {"clean AUC": c["clean"]["detector_auc"][detector],
                        "one random start": _auc(c, "steps", detector, "pgd 200 "),
                        "50 random restarts": _auc(c, "restarts", detector, "pgd 200 "),
                        "Adam 200 steps": _auc(c, "steps", detector, "adam 200 ")}
            for cell, (column, value) in zip(row[1:], expected.items()):
                ours = cell.split(" (")[0].split(" / ")          # "d_0 / d_1 (thesis ...)"
                assert printed(value, ours[detector]), (f"{row[0]} {column} d_{detector}: README {ours[detector]}, "
                                                        f"committees.json {value:.4f}")


@pytest.mark.parametrize("cell,value,ok", [("0.9961", 0.99614, True), ("0.9961", 0.99606, True),
                                           ("0.9961", 0.9966, False), ("146.3", 146.2669, True),
                                           ("1,264.4", 1264.43, True), ("5", 5.4, True), ("5", 5.6, False)])
def test_printed_compares_at_the_printed_precision(cell, value, ok):
    assert printed(value, cell) is ok
