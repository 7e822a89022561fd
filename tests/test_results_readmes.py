"""The numbers a results README quotes from its committed JSON match the JSON (issue 27: READMEs that agree).

Each test parses one README table (or sentence) and names the JSON keys every quoted number comes from; a number
regenerated in the JSON but not in the README (or edited by hand in the README) fails here. Numbers are compared
at the precision the README prints them."""
from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
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


# A number as a README prints it: not part of a name (``p_0``, ``r1``, ``d_k``) and not a unit-suffixed word (``2x``,
# ``1k``), thousands separated by commas, a sign only where it is not a range dash (``0.03-0.04``), ``1e-6`` whole.
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e-?\d+)?(?![\w])")

Quote = tuple[str, float, int]  # what the number is, its JSON value, the decimals the README prints (see fmt)


def numbers_in(text: str) -> list[str]:
    """Every number of ``text`` as printed, commas removed."""
    return [n.replace(",", "") for n in NUMBER.findall(text)]


def fmt(value: float, decimals: int) -> str:
    """``value`` as a README prints it at ``decimals`` (negative: rounded to tens, hundreds, ...)."""
    return f"{value:.{decimals}f}" if decimals >= 0 else str(int(round(value, decimals)))


def assert_quotes(cell: str, quoted: list[Quote], others: list[str], where: str) -> None:
    """The numbers of ``cell`` are exactly the JSON values of ``quoted`` (at their printed precision) plus
    ``others`` (settings, bounds and paper numbers the cell names, which are not measurements): a changed, added or
    dropped number fails."""
    expected = Counter([fmt(value, decimals) for _, value, decimals in quoted] + others)
    found = Counter(numbers_in(cell))
    if found != expected:
        missing = expected - found
        named = [f"{what} = {fmt(value, d)}" for what, value, d in quoted if fmt(value, d) in missing]
        raise AssertionError(f"{where}: README numbers {sorted((found - expected).elements())} are not in the JSON; "
                             f"JSON values not printed: {named or sorted(missing.elements())}")


def assert_printed_all(values: list[float], cell: str, where: str) -> None:
    """``cell`` prints exactly ``values``, in order, each at the precision it is printed with."""
    printed_numbers = numbers_in(cell)
    assert len(printed_numbers) == len(values), f"{where}: README {cell!r}, JSON {values}"
    for value, number in zip(values, printed_numbers):
        assert printed(value, number), f"{where}: README {number}, JSON {value:.5g} (cell {cell!r})"


def rows_by_label(table: list[list[str]], labels: dict[str, Any], where: str) -> dict[str, list[str]]:
    """The table's rows keyed by the ``labels`` key their first cell starts with; every row and label must match."""
    found: dict[str, list[str]] = {}
    for row in table:
        label = max((key for key in labels if row[0].startswith(key)), key=len, default=None)
        assert label is not None, f"{where}: row {row[0]!r} has no JSON key in the test; add it"
        found[label] = row
    assert set(found) == set(labels), f"{where}: rows {sorted(set(labels) - set(found))} are missing from the README"
    return found


def table_rows(text: str, heading: str, labels: dict[str, Any], where: str) -> dict[str, list[str]]:
    """The rows of the table after ``heading``, keyed by their ``labels``."""
    return rows_by_label(table_after(text, heading), labels, where)


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


def test_the_readme_sgld_table_and_paragraph_are_the_seed_files():
    """AT vs the SGLD EBM on three seeds at two SGLD step sizes (issue 25 item 3): the README's table is the six
    files of benchmarks/results/sgld_vs_at/, and the paragraph's ranges are their minima and maxima."""
    runs = {(step, seed): _load(RESULTS / "sgld_vs_at" / f"step{step}_seed{seed}.json")
            for step in ("10", "0.5") for seed in (0, 1, 2)}
    for (step, _), data in runs.items():
        assert data["sgld_ebm"]["train"]["config"]["sgld_step_size"] == float(step)
        assert data["budget_passes_per_method"] == 6000
    text = (REPO / "README.md").read_text()
    table = table_after(text, "| seed | AT: 32 PGD steps from photo seeds |")
    assert [row[0] for row in table] == ["0", "1", "2"]
    kinds = ("short_run_from_noise", "long_run_from_noise", "replay_buffer")
    for row in table:
        seed = int(row[0])
        at = runs[("10", seed)]["at"]["samples"]["pgd_from_photo_patches"]["fd"]
        assert runs[("0.5", seed)]["at"]["samples"]["pgd_from_photo_patches"]["fd"] == at, "one AT run per seed"
        values = [at] + [runs[(step, seed)]["sgld_ebm"]["samples"][k]["fd"] for step in ("10", "0.5") for k in kinds]
        assert_printed_all(values, " ".join(row[1:]), f"README SGLD table, seed {seed}")
    flat = " ".join(text.split())
    sentence = flat[flat.index("At equal passes neither wins"):flat.index("The papers' claim (AT better")]

    def fds(step: str, who: str, kind: str) -> list[float]:
        return [runs[(step, s)][who]["samples"][kind]["fd"] for s in (0, 1, 2)]

    at_fd = fds("10", "at", "pgd_from_photo_patches")
    gaps = [runs[("0.5", s)]["sgld_ebm"]["train"]["final_gap"] for s in (0, 1, 2)]
    gaps10 = [runs[("10", s)]["sgld_ebm"]["train"]["final_gap"] for s in (0, 1, 2)]
    noise = [runs[("0.5", s)]["reference"]["uniform_noise"]["fd"] for s in (0, 1, 2)]
    entropy = [runs[("0.5", s)]["sgld_ebm"]["samples"]["short_run_from_noise"]["label_entropy"] for s in (0, 1, 2)]
    assert max(abs(e) for e in entropy) < 0.005, entropy
    quoted = [("AT min", min(at_fd), 1), ("AT max", max(at_fd), 1),
              ("SGLD 20 min", min(fds("10", "sgld_ebm", kinds[0])), 1),
              ("SGLD 20 max", max(fds("10", "sgld_ebm", kinds[0])), 1),
              ("buffer min", min(fds("10", "sgld_ebm", kinds[2])), 1),
              ("buffer max", max(fds("10", "sgld_ebm", kinds[2])), 1),
              ("step 0.5 min", min(fds("0.5", "sgld_ebm", kinds[0])), 1),
              ("step 0.5 max", max(fds("0.5", "sgld_ebm", kinds[0])), 1),
              ("noise min", min(noise), 0), ("noise max", max(noise), 0),
              ("gap min", min(gaps), 1), ("gap max", max(gaps), 1),
              ("gap 10 min", min(gaps10), 3), ("gap 10 max", max(gaps10), 3)]
    assert_quotes(sentence, quoted, ["10", "10", "10", "20", "0.005", "0.5", "20", "0", "0"], "README SGLD paragraph")


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


# ------------------------------------------------------------------------------------------------ README.md: open items
def test_the_readme_comparison_paragraphs_are_their_json():
    """The other OE run and the open items quote their files."""
    text = " ".join((REPO / "README.md").read_text().split())
    table = _load(RESULTS / "ood_table4" / "table.json")["table"]
    gap = _load(RESULTS / "ood_table4" / "attack-gap.json")
    small = max(r["gap"] for rows in gap["suites"].values() for e, r in rows.items() if float(e) <= 3)
    sentence = text[text.index("Against E Tab. 4's attack on this same model"):text.index("**Open, and one explained")]
    assert_quotes(sentence, [("default-attack gap up to eps 3", small, 3), ("largest gap", gap["max_gap"], 3),
                             ("AT mean at eps 8", table["AT"]["l2"]["mean_auroc_embedded"]["8"], 3),
                             ("OE mean at eps 8", table["OE (K=0)"]["l2"]["mean_auroc_embedded"]["8"], 3),
                             ("OE letters at eps 8", table["OE (K=0)"]["l2"]["sets"]["letters"]["8"], 1)],
                  ["4", "100", "5", "100", "5", "5000", "32", "3", "8", "5", "8", "2000", "8", "8"],
                  "README E Tab. 4 paragraph")
    sentence = text[text.index("- The SGLD EBM level with AT at equal passes"):text.index("- Explained: T Tab. 2.8")]
    assert_quotes(sentence, [("SGLD mean at eps 8", table["SGLD EBM"]["l2"]["mean_auroc_embedded"]["8"], 3),
                             ("AT mean at eps 8", table["AT"]["l2"]["mean_auroc_embedded"]["8"], 3)],
                  ["4", "8", "2.5", "21.2"], "README open item: SGLD under E Tab. 4's attack")
    restore = _load(RESULTS / "apps_restore.json")["inpaint"]
    centre, boxes = restore["centre square (1/2 side)"]["ssim"], restore["3 random boxes (15-35 % sides)"]["ssim"]
    sentence = text[text.index("Explained: T Tab. 2.8"):text.index("## What it is")]
    assert_quotes(sentence, [("NN image from original", centre["NN image from original (oracle)"]["mean"], 3),
                             ("ours, centre square", centre["restored (ours)"]["mean"], 3),
                             ("same NN value, repeated", centre["NN image from original (oracle)"]["mean"], 3),
                             ("occluded, centre square", centre["occluded"]["mean"], 3),
                             ("occluded, three boxes", boxes["occluded"]["mean"], 3),
                             ("ours, three boxes", boxes["restored (ours)"]["mean"], 3)],
                  ["2.8", "0.828", "0.311", "0.817"], "README T Tab. 2.8 item")  # the thesis's numbers
    rows = _load(RESULTS / "demo" / "metrics.json")["generation"]["rows"]
    sentence = text[text.index("Samples from blurred seeds"):text.index("No committed measurement says why")]
    assert_quotes(sentence, [("blurred seeds", rows["samples (seeds blurred, sigma 1.0)"]["fd"], 1),
                             ("photo seeds", rows["samples (photo seeds)"]["fd"], 1)], ["5"], "README blurred seeds")


# ------------------------------------------------------------------------------------------------ ablations README
ABLATION_FOLDERS = ("p0-diversity", "final-k", "step-size", "r1", "perturbation-2d", "progressive-vs-fixed",
                    "composition", "stability")
OUTCOME_LABELS = {"holds": "Holds", "partly": "Partly holds", "does not hold": "Does not hold", None: "Not decided"}
HOLDS = {"holds": True, "partly": None, "does not hold": False, None: None}


def _one_line(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def test_every_ablation_on_three_seeds_records_its_seeds_budget_interval_and_verdict():
    """No committed verdict rests on one seed (issue 27)."""
    folders = sorted(p.parent.name for p in (RESULTS / "ablations").glob("*/result.json"))
    assert folders == sorted(ABLATION_FOLDERS), folders
    for folder in folders:
        result = _load(RESULTS / "ablations" / folder / "result.json")
        assert len(set(result["seeds"])) >= 3, (folder, result["seeds"])
        assert f"({len(result['seeds'])} seeds" in result["budget_note"], (folder, result["budget_note"])
        assert result["statistics"]["min_seeds"] == 3 and "Student t" in result["statistics"]["interval"], folder
        assert result["outcome"] in OUTCOME_LABELS, (folder, result["outcome"])
        assert result["holds"] is HOLDS[result["outcome"]], (folder, result["holds"], result["outcome"])
        assert result["verdict"].startswith(OUTCOME_LABELS[result["outcome"]]), (folder, result["verdict"])


@pytest.mark.parametrize("folder", ABLATION_FOLDERS)
def test_the_ablations_readme_quotes_each_verdict_and_command(folder):
    result = _load(RESULTS / "ablations" / folder / "result.json")
    text = (RESULTS / "ablations" / "README.md").read_text()
    heading = next((line for line in text.splitlines() if line.startswith("### ") and f"({folder}/)" in line), None)
    assert heading is not None, f"ablations README: no '### ... ({folder}/)' section"
    label = OUTCOME_LABELS[result["outcome"]].lower()
    assert heading.endswith(label), (heading, label)
    section = text[text.index(heading):]
    section = section[:section.index("\n### ", 1)] if "\n### " in section[1:] else section
    flat = _one_line(section)
    assert _one_line(result["command"]) in flat, f"ablations README, {folder}: the command is not result.json's"
    assert _one_line(result["verdict"]) in flat, f"ablations README, {folder}: the verdict is not result.json's"


def test_the_ablations_open_items_are_their_json():
    """The "Open" section quotes final-k's clean AUROC per arm and suite (means over seeds), and the OE runs."""
    text = " ".join((RESULTS / "ablations" / "README.md").read_text().split())
    arms = _load(RESULTS / "ablations" / "final-k" / "result.json")["arms"]
    clean = {name: {suite: v["0"] for suite, v in arm["ood"]["per_suite"].items()} for name, arm in arms.items()}
    exception = clean["K=1"]["digits"]
    others = min(v["mean"] for name, suites in clean.items() for suite, v in suites.items()
                 if suite != "letters" and (name, suite) != ("K=1", "digits"))
    item = text[text.index("**Clean AUROC rises with K**"):text.index("**OE collapses in one run")]
    assert_quotes(item, [("K=0 mean clean AUROC", arms["K=0"]["ood"]["mean_by_eps"]["0"]["mean"], 3),
                         ("K_max 24 mean clean AUROC", arms["K=24"]["ood"]["mean_by_eps"]["0"]["mean"], 3),
                         ("K=0 letters", clean["K=0"]["letters"]["mean"], 3),
                         ("K_max 24 letters", clean["K=24"]["letters"]["mean"], 3),
                         ("K_max 1 sklearn digits", exception["mean"], 3),
                         ("K_max 1 sklearn digits, seed 2", exception["per_seed"][2], 3)],
                  ["0", "24", "3",  # K = 0, K_max = 24, 3 seeds
                   "2", "10", "0.974", "0", "0.860", "25",  # G Tab. 2 on CIFAR-10: 0.974 at K = 0, 0.860 at K = 25
                   "0", "24", "0.999", "3", "1", "2"],  # letters at K = 0 / 24; the bound below; K_max = 1; seed 2
                  "ablations, Open item 1")
    assert others >= 0.999, others  # "the other six suites score 0.999 or more clean (mean of 3 seeds)"
    assert min(exception["per_seed"]) < 0.999 and exception["mean"] < 0.999
    item = text[text.index("**OE collapses in one run"):text.index("## Compute")]
    table = _load(RESULTS / "ood_table4" / "table.json")["table"]
    oe, at = table["OE (K=0)"]["l2"], table["AT"]["l2"]
    assert_quotes(item, [("OE letters at L2 8", oe["sets"]["letters"]["8"], 1),
                         ("OE Fashion-MNIST at L2 8", oe["fashion"]["8"], 3),
                         ("OE mean at L2 8", oe["mean_auroc_embedded"]["8"], 3),
                         ("AT mean at L2 8", at["mean_auroc_embedded"]["8"], 3)],
                  ["4", "4", "2000", "8", "2e-5", "8"], "ablations, Open item 2")


# ------------------------------------------------------------------------------------------------ DSGAN README
def _dsgan_readme() -> str:
    return (RESULTS / "dsgan" / "README.md").read_text()


def _case_runs(case: str) -> list[dict[str, Any]]:
    runs = _load(RESULTS / "dsgan" / "cases.json")["runs"]
    return [runs[case], runs[f"{case}-seed1"], runs[f"{case}-seed2"]]


def _percent_range(values: list[float], what: str) -> list[Quote]:
    return [(f"{what}, lowest", 100 * min(values), 0), (f"{what}, highest", 100 * max(values), 0)]


def _dsgan_items() -> dict[str, tuple[list[Quote], list[str]]]:
    """The "ours" cell of each row of the issue-13 table that quotes a JSON file."""
    runs = _load(RESULTS / "dsgan" / "cases.json")["runs"]
    roll = [run["evaluation"] for run in _case_runs("swissroll-boundary")]
    assert {e["p_d"]["pbar_has_mass_and_pd_little"] for e in roll} == {0.05000000074505806}
    ssl, fashion = (_load(RESULTS / "dsgan" / f)["results"] for f in ("ssl.json", "ssl_fashion.json"))
    robust = _load(RESULTS / "dsgan" / "robust.json")
    results = robust["results"]
    weights = [f"{w:g}" for w in robust["settings"]["weights"]]
    dsgan_linf = [results[f"DSGAN low-density, w = {w}"]["linf"]["0.1"] for w in weights]
    most_robust = max(results, key=lambda name: results[name]["linf"]["0.1"])
    assert most_robust == "noise baseline U(-0.3, 0.3)", most_robust
    control = results["baseline + CE fine-tuning"]
    gaps = [abs(model[norm][eps] - control[norm][eps]) for w in weights
            for model in [results[f"DSGAN low-density, w = {w}"]] for norm in ("linf", "l2") for eps in control[norm]]
    gaps += [abs(results[f"DSGAN low-density, w = {w}"]["clean"] - control["clean"]) for w in weights]
    gan = _load(RESULTS / "dsgan" / "gan_baseline.json")
    p0 = _load(RESULTS / "dsgan" / "p0.json")
    mean, gen = p0["ood"]["mean_auroc_by_eps"], p0["generation"]["arms"]

    def ssl_row(res: dict[str, Any]) -> list[Quote]:
        return [q for mode in ("dsgan", "feature-matching", "supervised")
                for q in ((f"{mode} mean", res[mode]["error_percent_mean"], 2),
                          (f"{mode} sd", res[mode]["error_percent_std"], 2))]

    return {
        "3. MNIST difference set": ([(f"judged 7, {run}", 100 * runs[run]["evaluation"]["fraction_target"], 1)
                                     for run in MNIST_SEEDS]
                                    + [("samples", runs["mnist-difference"]["n_eval"], 0)]
                                    + [(f"Frechet ratio, {run}", runs[run]["evaluation"]["diversity"]["fd_ratio"], 2)
                                       for run in MNIST_SEEDS], ["7", "0", "1", "2"]),
        "3. swiss-roll boundary": (
            _percent_range([e["generated"]["in_target_support"] for e in roll], "in the target support")
            + [("p_dbar > alpha p_d", roll[0]["thresholds"]["alpha"], 1)]
            + _percent_range([e["generated"]["pbar_has_mass_and_pd_little"] for e in roll], "generated, off p_d")
            + _percent_range([e["target"]["pbar_has_mass_and_pd_little"] for e in roll], "exact target, off p_d")
            + [("p_d, off p_d", 100 * roll[0]["p_d"]["pbar_has_mass_and_pd_little"], 0)], []),
        "3. sampling trick": ([("no trick, judged 7 %",
                                100 * runs["mnist-difference-no-trick"]["evaluation"]["fraction_target"], 1),
                               ("trick, judged 7 %",
                                100 * runs["mnist-difference"]["evaluation"]["fraction_target"], 1)], ["0"]),
        "4. SSL, MNIST": (ssl_row(ssl), []),
        "4. SSL, Fashion-MNIST": (ssl_row(fashion), []),
        "5. AT with low-density samples": ([("largest DSGAN-vs-control gap", max(gaps), 3),
                                            ("U(-0.3, 0.3) noise, Linf 0.1", results["noise baseline U(-0.3, 0.3)"]
                                             ["linf"]["0.1"], 3), ("best DSGAN, Linf 0.1", max(dsgan_linf), 3)],
                                           weights + ["-0.3", "0.3", "0.1"]),
        "6. GAN baseline for free": ([("GAN FD", gan["gan"]["samples"]["fd"], 1),
                                      ("binary AT FD", gan["binary_at (benchmarks/results/sgld_vs_at.json)"]["samples"]
                                       ["fd"], 1)], ["0"]),
        "7. DSGAN samples as p_0": ([(f"{arm} mean AUROC at eps 5", mean[arm]["5"], 3)
                                     for arm in ("photos", "uniform", "dsgan")]
                                    + [(f"{arm} clean mean AUROC", mean[arm]["0"], 3) for arm in ("dsgan", "photos")]
                                    + [(f"{arm} FD", gen[arm]["photo seeds"]["fd"], 1)
                                       for arm in ("uniform", "photos", "dsgan")], ["5"]),
    }


def test_the_dsgan_items_table_is_its_json():
    table = table_after(_dsgan_readme(), "| item | what was measured (file) |")
    items = _dsgan_items()
    quoted_rows = {label: row for row in table for label in items if row[0].startswith(label)}
    assert set(quoted_rows) == set(items), sorted(set(items) - set(quoted_rows))
    for label, (quoted, others) in items.items():
        assert_quotes(quoted_rows[label][2], quoted, others, f"DSGAN README, {label}")


def test_the_dsgan_2d_cases_table_is_cases_json():
    table = table_after(_dsgan_readme(), "| 2D run (seed) |")
    runs = _load(RESULTS / "dsgan" / "cases.json")["runs"]
    assert len(table) == 6
    for row in table:
        match = re.fullmatch(r"(\S+) \((\d)\)", row[0])  # "swissroll-boundary (1)"
        assert match is not None, row[0]
        case, seed = match.groups()
        e = runs[case if seed == "0" else f"{case}-seed{seed}"]["evaluation"]
        columns = {"in the target support": [e[k]["in_target_support"] for k in ("generated", "p_d", "p_dbar")],
                   "p_dbar has mass, p_d little": [e[k]["pbar_has_mass_and_pd_little"]
                                                   for k in ("generated", "target", "p_d")],
                   "centre fraction": [e[k]["centre_fraction"] for k in ("generated", "target", "p_d")],
                   "energy distance": [e[k]["energy_distance_to_target"] for k in ("generated", "p_d")]}
        for cell, (column, values) in zip(row[1:], columns.items()):
            assert_printed_all(values, cell, f"DSGAN README 2D table, {row[0]}, {column}")


MNIST_SEEDS = ("mnist-difference", "mnist-difference-seed1", "mnist-difference-seed2")
DSGAN_MNIST_RUNS = {"mnist-difference, seed 0": "mnist-difference",
                    "mnist-difference, seed 1": "mnist-difference-seed1",
                    "mnist-difference, seed 2": "mnist-difference-seed2",
                    "control alpha = 0, minimax loss": "mnist-difference-alpha0",
                    "control alpha = 0, non-saturating loss": "mnist-difference-alpha0-non-saturating",
                    "alpha 0.8, non-saturating loss": "mnist-difference-non-saturating",
                    "control: no sampling trick": "mnist-difference-no-trick",
                    "S Tab. 4 generator": "mnist-difference-s-tab4-generator",
                    "pooled discriminator head": "mnist-difference-pooled-head",
                    "both as before issue 26": "mnist-difference-both-before"}


def test_the_dsgan_mnist_cases_table_is_cases_json():
    readme = _dsgan_readme()
    data = _load(RESULTS / "dsgan" / "cases.json")
    runs = data["runs"]
    header = next(line for line in readme.splitlines() if line.startswith("| MNIST run |"))
    held_out = {run["evaluation"]["held_out_target_nearest_train_l2_mean"] for run in runs.values()
                if "held_out_target_nearest_train_l2_mean" in run["evaluation"]}
    assert len(held_out) == 1 and f"held-out test 7s: {held_out.pop():.2f}" in header
    rows = table_rows(readme, "| MNIST run |", DSGAN_MNIST_RUNS, "DSGAN README MNIST table")
    for label, key in DSGAN_MNIST_RUNS.items():
        e = runs[key]["evaluation"]
        judged, judged_1, confidence, nearest_is_7, l2, diversity = rows[label][1:]
        counted = [e["n"]] if " of " in judged else []  # the first row says "of 2,000"
        assert_printed_all([e["fraction_target"], *counted], judged, f"{label}, judged 7")
        assert_printed_all([e["class_fractions"]["1"]], judged_1, f"{label}, judged 1")
        assert_printed_all([e["mean_confidence"]], confidence, f"{label}, mean confidence")
        assert_printed_all([e["nearest_train_is_target"]], nearest_is_7, f"{label}, nearest is a 7")
        assert_printed_all([e["nearest_train_l2_mean"]], l2, f"{label}, mean L2")
        assert_printed_all([e["diversity"]["fd_ratio"], e["diversity"]["classes_covered"]], diversity,
                           f"{label}, diversity")
    bar = data["summary_images"]["case_settings"]
    assert bar["seeds"] == [0, 1, 2] and bar["bar_met"], bar


SSL_MODES = {"DSGAN complements": "dsgan", "feature matching": "feature-matching", "the 100 labels alone": "supervised"}


@pytest.mark.parametrize("file,header", [("ssl.json", "| method | MNIST 5,000"),
                                         ("ssl_fashion.json", "| method | Fashion-MNIST")])
def test_the_dsgan_ssl_tables_are_their_json(file, header):
    data = _load(RESULTS / "dsgan" / file)
    rows = table_rows(_dsgan_readme(), header, SSL_MODES, f"DSGAN README {file}")
    paper = {"dsgan": data.get("paper_mnist_errors_of_10000", {}).get("DSGAN (S Tab. 1, with the sampling trick)"),
             "feature-matching": data.get("paper_mnist_errors_of_10000", {}).get(
                 "feature matching (Salimans et al. 2016, S Tab. 1)")}
    for label, mode in SSL_MODES.items():
        res = data["results"][mode]
        assert_printed_all([res["error_percent_mean"], res["error_percent_std"], *res["per_seed"]], rows[label][1],
                           f"{file}, {label}")
        if file == "ssl.json":  # S's column, from the file's record of the paper
            cited = paper.get(mode)
            if cited is None:
                assert rows[label][2] == "-", rows[label]
            else:
                assert_printed_all([cited["mean"], cited["std"], cited["mean"] / 100], rows[label][2],
                                   f"{file}, S's {label}")


ROBUST_MODELS = {"baseline + CE fine-tuning (control)": "baseline + CE fine-tuning", "baseline": "baseline",
                 **{f"noise U(-{r}, {r})": f"noise baseline U(-{r}, {r})" for r in ("0.1", "0.2", "0.3")},
                 **{f"DSGAN, w = {w}": f"DSGAN low-density, w = {w}" for w in (1, 3, 10)}}


def test_the_dsgan_robust_table_is_robust_json():
    results = _load(RESULTS / "dsgan" / "robust.json")["results"]
    rows = table_rows(_dsgan_readme(), "| model | clean | Linf 0.05 |", ROBUST_MODELS, "DSGAN README robust table")
    for label, key in ROBUST_MODELS.items():
        m = results[key]
        values = [m["clean"], *(m["linf"][eps] for eps in ("0.05", "0.1", "0.15")),
                  *(m["l2"][eps] for eps in ("0.5", "1", "1.5", "2"))]
        assert_printed_all(values, " ".join(rows[label][1:]), f"DSGAN robust table, {label}")
        beyond = [m["linf"][eps] for eps in ("0.2", "0.25", "0.3")] + [m["l2"][eps] for eps in ("2.5", "3")]
        assert max(beyond) <= 0.002, (label, beyond)  # "from Linf 0.2 and L2 2.5 every model is at 0.000-0.002"


def test_the_dsgan_gan_baseline_table_is_gan_baseline_json():
    data = _load(RESULTS / "dsgan" / "gan_baseline.json")
    gan, at = data["gan"]["samples"], data["binary_at (benchmarks/results/sgld_vs_at.json)"]["samples"]
    held_out = data["reference"]["held_out_test_digits"]
    expected = {"GAN": [gan["fd"], gan["label_entropy"], gan["nn_l2_to_train"]],
                "binary AT": [at["fd"], at["label_entropy"]],
                "held-out test digits": [held_out["fd"], held_out["label_entropy"], held_out["nn_l2_to_train"]]}
    rows = table_rows(_dsgan_readme(), "| model | FD | label entropy", expected, "GAN table")
    for label, values in expected.items():
        assert_printed_all(values, " ".join(c for c in rows[label][1:] if c != "-"), f"GAN table, {label}")


P0_ARMS = ("dsgan", "photos", "uniform")


def test_the_dsgan_p0_tables_are_p0_json():
    p0 = _load(RESULTS / "dsgan" / "p0.json")
    auroc, mean = p0["ood"]["worst_case_auroc"], p0["ood"]["mean_auroc_by_eps"]
    suites = {"digits (other fonts)": "digits", **{s: s for s in auroc["dsgan"] if s != "digits"}, "mean": "mean"}
    rows = table_rows(_dsgan_readme(), "| suite | p_0 = DSGAN", suites, "p0 AUROC table")
    for label, suite in suites.items():
        for cell, arm in zip(rows[label][1:], P0_ARMS):
            values = ([mean[arm][e] for e in ("0", "1", "2", "3", "5", "8")] if suite == "mean" else
                      [auroc[arm][suite]["clean"],
                       *(auroc[arm][suite]["worst_case"][e] for e in ("1", "2", "3", "5", "8"))])
            assert_printed_all(values, cell, f"p0 AUROC table, {label}, {arm}")
    seeds = {"held-out photo patches": "photo seeds", "held-out draws of the arm's own p_0": "own p0 seeds"}
    rows = table_rows(_dsgan_readme(), "| seeds | p_0 = DSGAN |", seeds, "p0 generation table")
    for label, key in seeds.items():
        for cell, arm in zip(rows[label][1:], P0_ARMS):
            g = p0["generation"]["arms"][arm][key]
            assert_printed_all([g["fd"], g["classes_covered"]], cell, f"p0 generation table, {label}, {arm}")


def test_the_dsgan_generator_loss_table_is_generator_loss_json():
    data = _load(RESULTS / "dsgan" / "generator_loss.json")
    summary = data["summary"]
    table = table_after(_dsgan_readme(), "| case | measure | minimax")
    assert len(table) == 6
    for case, measure, *cells in table:
        for cell, loss in zip(cells, ("minimax", "non-saturating")):
            s = summary[case][loss]
            where = f"generator-loss table, {case}, {measure}, {loss}"
            if measure.startswith("energy distance"):
                assert_printed_all([s["energy_distance_to_target"][k] for k in ("mean", "min", "max")], cell, where)
                assert_printed_all([s["p_d_energy_distance_to_target"]["mean"],
                                    s["p_dbar_energy_distance_to_target"]["mean"]], measure, where)
            elif measure == "in the target's support":
                assert_printed_all([s["in_target_support"][k] for k in ("mean", "min", "max")], cell, where)
            elif measure == "judged 7":
                seeds = [run["measured"]["fraction_target"] for run in data["runs"].values()
                         if run["case"] == case and run["generator_loss"] == loss]
                assert cell == f"{seeds.count(1.0)} of {len(seeds)} seeds 100 %, {seeds.count(0.0)} seed 0 %", where
            else:
                assert measure.startswith("Fréchet ratio"), where
                assert_printed_all([s["fd_ratio"]["mean"], s["fd_ratio"]["min"], s["fd_ratio"]["max"],
                                    s["classes_covered"]["mean"]], cell, where)


# ------------------------------------------------------------------------------------------------ GAT README_classify
def _classify_readme() -> str:
    return (RESULTS / "gat" / "README_classify.md").read_text()


def _grid_row(rows: list[dict[str, Any]], eps: float) -> dict[str, Any]:
    found = [row for row in rows if math.isclose(row["eps"], eps)]
    assert len(found) == 1, (eps, [row["eps"] for row in rows])
    return found[0]


GRID = [("linf", 0.0), ("linf", 0.1), ("linf", 0.2), ("linf", 0.3), ("linf", 0.4),
        ("l2", 1.0), ("l2", 2.0), ("l2", 3.0)]  # the attack-layer grid's columns, as the READMEs print them


#: README_classify grid row label (start) -> (model in classify_attack_layer.json, per-class attacker alone?)
CLASSIFY_GRID_ROWS = {
    "generative, mnist committee": ("generative_out", False),
    "generative, mnist-inout committee": ("generative_inout", False),
    "generative, 500-iteration mnist-inout committee": ("generative_inout_500", False),
    "robust softmax (Madry, Linf 0.3, 1,000": ("robust_softmax", False),
    "robust softmax at the committee's CPU": ("robust_softmax_equal", False),
    "robust softmax (Madry, L2 2.0": ("robust_softmax_l2", False),
    "plain softmax": ("plain_softmax", False),
    "per-class attack alone, mnist committee": ("generative_out", True),
    "per-class attack alone, mnist-inout committee": ("generative_inout", True),
    "per-class attack alone, 500-iteration mnist-inout committee": ("generative_inout_500", True),
}


def test_the_classify_attack_layer_grid_is_its_json():
    evaluation = _load(RESULTS / "gat" / "classify_attack_layer.json")["eval"]
    models = evaluation["models"]
    table = table_rows(_classify_readme(), "| worst-case accuracy | clean | Linf 0.1 |", CLASSIFY_GRID_ROWS,
                       "README_classify attack-layer grid")
    missing = set(evaluation.get("missing", []))
    for label, (key, per_class) in CLASSIFY_GRID_ROWS.items():
        for cell, (norm, eps) in zip(table[label][1:], GRID, strict=True):
            if f"{key}/{norm}/{eps:g}" in missing:
                assert cell == "-", f"attack-layer grid, {label}, {norm} {eps}: not measured, printed {cell}"
                continue
            row = _grid_row(models[key][norm], eps)
            assert row["protocol"]["n"] == evaluation["config"]["n"] and len(evaluation["subset"]) == row["n"]
            if per_class:
                if eps == 0:
                    assert cell == "", "the per-class row has no clean cell"
                    continue
                value = row["attackers"]["per_class"]["own_robust_accuracy"]
            else:
                value = row["robust_accuracy"]
            assert printed(value, cell), f"attack-layer grid, {label}, {norm} {eps}: README {cell}, JSON {value}"


def test_the_classify_recipe_search_table_is_its_jsonl():
    lines = [json.loads(s) for s in (RESULTS / "gat" / "inout_recipes.jsonl").read_text().splitlines()]
    table = table_after(_classify_readme(), "| in+out recipe (validation) |")
    assert [row[0] for row in table] == list(dict.fromkeys(line["arm"] for line in lines))
    for arm, _, *cells, cpu in table:
        mine = [line for line in lines if line["arm"] == arm]
        if not mine[0].get("trained", True):
            assert cells[0].startswith("stopped: d_") and f"d_{cells[0].split('d_')[1].split()[0]}" in mine[0]["error"]
            continue
        for cell, (norm, eps) in zip(cells, (("linf", 0.3), ("linf", 0.4), ("l2", 2.0)), strict=True):
            measured = [line for line in mine if line.get("norm", "linf") == norm and math.isclose(line["eps"], eps)]
            if not measured:
                assert cell == "-", f"recipe table, {arm}, {norm} {eps}: README {cell}, not in the jsonl"
                continue
            value = measured[-1]["robust_accuracy"]
            assert printed(value, cell.split()[0]), f"recipe table, {arm}, {norm} {eps}: README {cell}, jsonl {value}"
        assert cpu == f"{mine[0]['detector_cpu_seconds']:,.0f}"


def test_the_classify_studies_table_is_its_jsonl():
    """T Sec. 3.4's detector studies: every cell is the median [min, max] over the seeds of the jsonl's latest line
    per arm, detector and seed, and every arm has >= 3 seeds."""
    latest: dict[tuple[str, int, int], dict[str, Any]] = {}
    for s in (RESULTS / "gat" / "classify_studies.jsonl").read_text().splitlines():
        line = json.loads(s)
        latest[(line["arm"], line["detector"], line["seed"])] = line
    table = table_after(_classify_readme(), "| arm | study | what it changes |")
    assert {(row[0], row[3]) for row in table} == {(arm, f"d_{k}") for arm, k, _ in latest}
    for arm, _, _, detector, seeds, *cells, parameters, cpu in table:
        mine = [v for key, v in latest.items() if key[0] == arm and f"d_{key[1]}" == detector]
        assert int(seeds) == len(mine) >= 3, f"studies table, {arm}: {seeds} seeds"
        for cell, key in zip(cells, ("clean_auc", "adv_auc_0.3", "train_adv_auc_0.3"), strict=True):
            values = [m[key] for m in mine]
            median, low, high = re.fullmatch(r"([\d.]+) \[([\d.]+), ([\d.]+)\]", cell).groups()  # type: ignore[union-attr]
            for value, text in ((statistics.median(values), median), (min(values), low), (max(values), high)):
                assert printed(value, text), f"studies table, {arm}, {key}: README {cell}, jsonl {values}"
        assert parameters == f"{mine[0]['parameters']:,}"
        assert printed(statistics.median(m["train_cpu_seconds"] for m in mine), cpu)


def _signed(values: list[float]) -> str:
    return " ".join(f"{v:+.2f}" for v in values)


def test_the_classify_calibration_table_is_classify_json():
    data = _load(RESULTS / "gat" / "classify.json")
    attack_layer = _load(RESULTS / "gat" / "classify_attack_layer.json")
    records = {"generative_out": data["calibrate"]["generative_out"],
               "generative_inout_ft": data["inout"]["calibration"],
               "generative_inout": attack_layer["calibrate"]["generative_inout"],
               "generative_inout_500": attack_layer["calibrate"]["generative_inout_500"]}
    rows = table_rows(_classify_readme(), "| committee | val acc. c=0 |", records, "calibration table")
    for label, c in records.items():
        values = [c["fit"]["before"]["accuracy"], c["fit"]["after"]["accuracy"], c["eval"]["before"]["accuracy"],
                  c["eval"]["after"]["accuracy"]]
        for cell, value in zip(rows[label][1:5], values):
            assert printed(value, cell), f"calibration table, {label}: README {cell}, classify.json {value}"
        assert rows[label][5] == _signed(c["offsets"]), f"calibration table, {label}: offsets"


def test_the_classify_readme_prints_robust_accuracies_from_the_attack_layer_only():
    """Issue 12's pre-layer grids were removed (issue 21): classify.json holds no robust accuracy, and the tables of
    README_classify.md with eps columns are the attack-layer grid and the in+out recipe search (both tested above
    against their files, each measured by :func:`atebm.gat.classifier_robustness.robust_accuracy`) and the detector
    studies' AUCs (tested above; attacked through :func:`atebm.attacks.raise_score` / ``lower_score``)."""
    data = _load(RESULTS / "gat" / "classify.json")
    assert "models" not in data["eval"] and "eval_inout" not in data and "git show" in data["removed"]
    lines = _classify_readme().splitlines()
    headers = [line for line, below in zip(lines, lines[1:]) if below.startswith("|---")]
    assert [h for h in headers if "Linf" in h or "eps" in h] == [
        "| worst-case accuracy | clean | Linf 0.1 | 0.2 | 0.3 | 0.4 | L2 1.0 | 2.0 | 3.0 |",
        "| in+out recipe (validation) | what it changes | Linf 0.3 | Linf 0.4 | L2 2 | detector CPU s |",
        next(h for h in headers if h.startswith("| arm | study | what it changes |"))]


def test_the_classify_capacity_and_explain_tables_are_classify_json():
    data = _load(RESULTS / "gat" / "classify.json")
    readme = _classify_readme()
    capacity = data["eval"]["capacity"]
    for model, parameters, macs in table_after(readme, "| model | parameters | MACs per forward pass |"):
        assert (parameters, macs) == (f"{capacity[model]['parameters']:,}", f"{capacity[model]['macs_per_forward']:,}")
    explain = data["explain"]
    table = table_after(readme, "| model | samples FD |")
    assert [row[0] for row in table] == list(explain["models"])
    keys = ("samples_fd", "samples_digit_net_agrees", "counterfactual_fd", "counterfactual_success",
            "counterfactual_digit_net_target", "counterfactual_mean_l2", "ig_completeness_max_abs_gap")
    for model, *cells in table:
        for cell, key in zip(cells, keys, strict=True):
            value = explain["models"][model][key]
            assert printed(value, cell), f"explain table, {model}, {key}: README {cell}, classify.json {value}"
    methods = {m["ig_method"] for m in explain["models"].values()}
    assert (f"FD of the Gaussian seeds themselves: {explain['seeds_fd']:.1f}; IG method: {methods.pop()}" in readme
            and not methods)


def test_the_classify_inout_explanations_are_their_json():
    explain = _load(RESULTS / "gat" / "classify_explain_inout" / "explain.json")
    table = table_after(_classify_readme(), "| explained model (issue 23) | samples FD |")
    assert [row[0] for row in table] == ["generative_inout_500", "robust_softmax_equal"]
    keys = ("samples_fd", "samples_digit_net_agrees", "counterfactual_fd", "counterfactual_success",
            "counterfactual_digit_net_target", "counterfactual_mean_l2", "ig_completeness_max_abs_gap")
    for (_, *cells), model in zip(table, ("generative", "robust_softmax"), strict=True):
        for cell, key in zip(cells, keys, strict=True):
            value = explain["models"][model][key]
            assert printed(value, cell), f"in+out explain table, {model}, {key}: README {cell}, JSON {value}"


# ------------------------------------------------------------------------------------------------ GAT README.md
GAT_ATTACKS = {"classifier": "classifier", "detector": "detector", "combined": "combined", "switching": "switching",
               "acceptance": "acceptance", "ART APGD-CE": "apgd-ce", "ART APGD-DLR": "apgd-dlr",
               "ART Square": "square", "worst case of all": "worst"}


def test_the_gat_readme_attack_layer_tables_are_mnist_json():
    e = _load(RESULTS / "gat" / "mnist.json")["eval"]
    readme = (RESULTS / "gat" / "README.md").read_text()
    for tab, detectors, attack, ball, restarts, ours, thesis in table_after(readme, "| T Tab. | detector | attack"):
        assert detectors == "d_0 / d_1"
        method = "adam" if attack.startswith("Adam") else "pgd"
        steps = int(attack.split()[1])
        norm, eps = ball.split()
        matches = [[r for r in e["auc"] if r["detector"] == d and r["protocol"]["method"] == method
                    and r["protocol"]["steps"] == steps and r["protocol"]["norm"] == norm.lower()
                    and math.isclose(r["protocol"]["eps"], float(eps)) and r["protocol"]["restarts"] == int(restarts)]
                   for d in (0, 1)]
        assert all(len(m) == 1 for m in matches), (tab, attack, ball, matches)
        assert_printed_all([m[0]["auc"] for m in matches], ours, f"GAT README Tab. {tab}, {attack}, {ball}")
        if tab in ("3.2", "3.3"):
            cited = next(t for t in e["thesis"]["auc"] if t["attack"] == matches[0][0]["attack"])
        elif tab == "3.4":
            cited = next(t for t in e["thesis"]["cross_norm"] if t["norm"] == norm.lower()
                         and math.isclose(t["eps"], float(eps)))
        else:
            continue  # Tab. 3.5: the thesis reports restarts only for other models (the cell says so)
        assert_printed_all([cited["d_0"], cited["d_1"]], thesis, f"GAT README Tab. {tab} thesis, {attack}")
    runs = e["detection"]["runs"]
    rows = table_rows(readme, "| attack | integrated detection | generative detection |",
                      GAT_ATTACKS, "GAT README detection table")
    for label, attack in GAT_ATTACKS.items():
        for cell, rule in zip(rows[label][1:], ("integrated", "generative")):
            value = runs[f"{rule}/{attack}"]["at_tpr"]["fpr"]
            assert printed(value, cell), f"detection table, {label}, {rule}: README {cell}, mnist.json {value}"


def test_the_gat_readme_claims_table_is_mnist_json():
    """The "ours" column of the claims table: the `mnist` committee on the attack layer, nothing older."""
    e = _load(RESULTS / "gat" / "mnist.json")["eval"]

    def auc(table: str, method: str, norm: str, eps: float, restarts: int = 1) -> list[float]:
        return [next(r["auc"] for r in e["auc"] if r["detector"] == d and r["table"] == table
                     and r["protocol"]["method"] == method and r["protocol"]["norm"] == norm
                     and math.isclose(r["protocol"]["eps"], eps) and r["protocol"]["steps"] == 200
                     and r["protocol"]["restarts"] == restarts) for d in (0, 1)]

    runs, sign = e["detection"]["runs"], e["detection"]["sign_test"]
    expected = {
        "d_0 / d_1 AUC, sign PGD-200": auc("steps", "pgd", "linf", 0.3),
        "d_0 / d_1, 50 random restarts": auc("restarts", "pgd", "linf", 0.3, 50),
        "d_0 / d_1, Adam-step PGD-200": auc("steps", "adam", "linf", 0.3),
        "d_0 / d_1 under Linf 0.5": auc("cross_norm", "pgd", "linf", 0.5),
        "d_0 / d_1 under L2 2.5": auc("cross_norm", "pgd", "l2", 2.5),
        "d_0 / d_1 under L2 5.0": auc("cross_norm", "pgd", "l2", 5.0),
        "generative detection beats integrated": [runs["generative/worst"]["at_tpr"]["fpr"],
                                                  runs["integrated/worst"]["at_tpr"]["fpr"], sign["a_only"],
                                                  sign["b_only"], e["detection"]["protocol"]["n"], sign["p_value"]],
        "mean L2 distortion": [e["distortion"]["mean_l2"], e["distortion"]["n"] - e["distortion"]["failures"],
                               e["distortion"]["n"]],
    }
    rows = table_rows((RESULTS / "gat" / "README.md").read_text(), "| claim (T) | thesis (full MNIST) | ours |",
                      expected, "GAT README claims table")
    for label, values in expected.items():
        assert_printed_all(values, rows[label][2], f"GAT README claims, {label}")


def test_the_gat_readme_recipe_table_is_recipes_jsonl():
    """The recipe choice of the `mnist` preset, d_0 rows, is recipes.jsonl, which holds one line per recipe and
    detector (the search measured again through the attack layer; the superseded lines are in git history)."""
    lines = [json.loads(line) for line in (RESULTS / "gat" / "recipes.jsonl").read_text().splitlines() if line.strip()]
    pairs = [(line["recipe"], line["detector"]) for line in lines]
    assert len(pairs) == len(set(pairs)), "a recipe and detector measured twice: keep the latest line only"
    d0 = {line["recipe"]: line for line in lines if line["detector"] == 0}
    rows = table_rows((RESULTS / "gat" / "README.md").read_text(), "| recipe | d_0 AUC, val (50 vs 450) |",
                      {f"{name}:" if name != "k20" else "k20 (the preset before)": name for name in d0
                       if name != "crop"}, "GAT README recipe table")
    for label, row in rows.items():
        name = label.rstrip(":").split(" (")[0]
        r = d0[name]
        assert_printed_all([r["pgd200_auc_val_450"], r["pgd200_auc_test_100"], r["train_cpu_s"]],
                           " ".join(row[1:]), f"GAT README recipe table, {name}")


def test_the_gat_readme_fashion_table_is_fashion_json():
    e = _load(RESULTS / "gat" / "fashion.json")["eval"]
    readme = (RESULTS / "gat" / "README.md").read_text()
    clean, runs, sign, distortion = e["clean"], e["detection"]["runs"], e["detection"]["sign_test"], e["distortion"]
    auc = {(r["detector"], r["attack"], r["protocol"]["norm"], r["protocol"]["eps"]): r["auc"] for r in e["auc"]}
    detectors = clean["detector_auc"]
    expected = {
        "softmax classifier f / generative classifier": [clean["classifier_accuracy"], clean["generative_accuracy"],
                                                         clean["generative_accuracy_uncalibrated"]],
        "clean detector AUC, lowest / highest": [min(detectors), max(detectors)],
        "d_0 / d_1 AUC under sign PGD-200": [200, 0.01, 50]
        + [auc[(k, attack, "linf", 0.1)] for k in (0, 1) for attack in ("pgd 200 x 0.01", "pgd 200 x 0.01 r50")],
        "FPR at 0.95 TPR, per-image worst case": [0.95, runs["integrated/worst"]["at_tpr"]["fpr"],
                                                  runs["generative/worst"]["at_tpr"]["fpr"], sign["b_only"],
                                                  sign["a_only"], 0.001],
        "mean L2 distortion at 1.0 FPR": [1.0, distortion["mean_l2"], distortion["median_l2"],
                                          distortion["n"] - distortion["failures"], distortion["n"]],
    }
    rows = table_rows(readme, "| quantity | Fashion-MNIST, Linf 0.1 |", expected, "GAT README fashion table")
    for label, values in expected.items():
        assert_printed_all(values, " ".join(rows[label]), f"GAT README fashion table, {label}")
    assert sign["a"] == "generative" and sign["b"] == "integrated" and sign["p_value"] < 0.001
    lowest, highest = (detectors.index(v) for v in (min(detectors), max(detectors)))
    assert f"(d_{lowest}, shirt)" in rows["clean detector AUC, lowest / highest"][1] and lowest == 6
    assert f"(d_{highest}, trouser)" in rows["clean detector AUC, lowest / highest"][1] and highest == 1


# ------------------------------------------------------------------------------------------------ docs/commands/gat.md
def _gat_page_output() -> str:
    text = (REPO / "docs" / "commands" / "gat.md").read_text()
    return text[text.index("## Measured output"):]


def test_the_gat_page_measured_output_is_the_committed_json():
    page = _gat_page_output()
    mnist = _load(RESULTS / "gat" / "mnist.json")
    layer = _load(RESULTS / "gat" / "classify_attack_layer.json")
    assert mnist["eval"]["checkpoint"] in layer["calibrate"]["command"], "the two files measure the same committee"
    calibration = mnist["train"]["calibration"]
    rows = table_after(page, "| accuracy of the generative classifier |")
    for row, split in zip(rows, ("fit", "eval"), strict=True):
        assert_printed_all([calibration[split]["before"]["accuracy"], calibration[split]["after"]["accuracy"]],
                           " ".join(row[1:]), f"gat.md calibration, {row[0]}")
    assert f"offsets c_k: {', '.join(f'{c:+.3f}' for c in calibration['offsets'])}" in page
    e = mnist["eval"]
    restarts = [r["auc"] for r in e["auc"] if r["table"] == "restarts"]
    values = [[e["clean"]["classifier_accuracy"], e["clean"]["generative_accuracy"],
               e["clean"]["generative_accuracy_uncalibrated"]], restarts,
              [e["detection"]["runs"][f"{rule}/worst"]["at_tpr"]["fpr"] for rule in ("integrated", "generative")],
              [e["distortion"]["mean_l2"], e["distortion"]["failures"]]]
    table = table_after(page, "`atebm gat eval --checkpoint RUN")
    for row, expected in zip(table, values, strict=True):
        assert_printed_all(expected, row[1], f"gat.md eval, {row[0]}")
    meta = layer["softmax"]["meta"]
    validations = {v["iteration"]: v for v in meta["validations"]}
    for iteration, loss, clean, robust in table_after(page, "| iteration | loss | val clean | val robust |"):
        v = validations[int(iteration)]
        assert_printed_all([v["loss"], v["val_clean"], v["val_robust"]], f"{loss} {clean} {robust}",
                           f"gat.md robust-softmax, iteration {iteration}")
    assert (f"robust softmax: {meta['parameters']:,} parameters, test accuracy {meta['test_accuracy']:.4f}, val robust "
            f"{meta['val_robust_accuracy']:.3f} (iteration {meta['selected_iteration']}), {meta['cpu_seconds']:.0f} "
            "CPU-s") in page
    models = layer["eval"]["models"]
    rows = table_rows(page, "| model | clean | Linf 0.1 |",
                      {"generative": "generative_out", "robust softmax": "robust_softmax"}, "gat.md classify-eval")
    for label, key in (("generative", "generative_out"), ("robust softmax", "robust_softmax")):
        assert_printed_all([_grid_row(models[key][norm], eps)["robust_accuracy"] for norm, eps in GRID],
                           " ".join(rows[label][1:]), f"gat.md classify-eval, {label}")
    flat = " ".join(page.split())
    sentence = flat[flat.index("for the committee at Linf 0.2"):]
    attackers = _grid_row(models["generative_out"]["linf"], 0.2)["attackers"]
    listed = ", ".join(f"{name} {a['broke']} of {a['attacked']}" for name, a in attackers.items())
    assert listed + "." in sentence, f"gat.md classify-eval attackers at Linf 0.2: JSON says {listed}"


# ------------------------------------------------------------------------------------------------ the checker itself
def test_assert_quotes_fails_on_a_changed_or_extra_number():
    quoted: list[Quote] = [("FD", 353.97, 0), ("AUROC", 0.8053, 2)]
    assert_quotes("FD 354, AUROC 0.81 at eps 8", quoted, ["8"], "ok")
    for cell in ("FD 355, AUROC 0.81 at eps 8", "FD 354, AUROC 0.81 at eps 8 and 0.5", "FD 354 at eps 8",
                 "FD 354, AUROC 0.805 at eps 8"):
        with pytest.raises(AssertionError):
            assert_quotes(cell, quoted, ["8"], "changed")


def test_numbers_in_reads_numbers_as_a_readme_prints_them():
    assert numbers_in("p_0 K=0 r1 2x 1k 5,441 -0.94 0.03-0.04 1e-6 (0.285)") == [
        "0", "5441", "-0.94", "0.03", "0.04", "1e-6", "0.285"]


# ------------------------------------------------------------------------------------------------ fashion (issue 24)
def _fashion_readme() -> str:
    return (RESULTS / "fashion" / "README.md").read_text()


FASHION_CLEAN_ROWS = {  # README row label (start) -> eval-clean.json model
    "AT, fashion preset (ours)": "AT",
    "Outlier Exposure, same trainer at K = 0 (ours)": "OE (K=0)",
    "classifier, max softmax (ours)": "classifier (max softmax)",
    "SGLD EBM": "SGLD EBM",
}


def test_the_fashion_clean_table_is_eval_clean_json():
    models = _load(RESULTS / "fashion" / "eval-clean.json")["models"]
    table = [row for row in table_after(_fashion_readme(), "| method | AUROC |") if "(ours)" in row[0]]
    rows = rows_by_label(table, FASHION_CLEAN_ROWS, "fashion README clean table")
    for label, model in FASHION_CLEAN_ROWS.items():
        m = models[model]
        assert_printed_all([m["auroc"]], rows[label][1], f"fashion clean {label} AUROC")
        assert_printed_all([m["aupr_in"], m["aupr_out"]], rows[label][2], f"fashion clean {label} AUPRC")
        assert_printed_all([m["fpr80"], m["fpr80_ood_positive"]], rows[label][3], f"fashion clean {label} FPR80")


def test_the_fashion_by_class_table_is_eval_clean_json():
    by_class = _load(RESULTS / "fashion" / "eval-clean.json")["auroc_by_class"]
    rows = table_rows(_fashion_readme(), "| model | T-shirt |", {m: m for m in by_class},
                      "fashion README by-class table")
    for model, row in rows.items():
        digits = list(by_class[model]["all_fashion_vs_digit"].values())
        values = [*by_class[model]["garment_class_vs_all_mnist"].values(), min(digits), max(digits)]
        assert_printed_all(values, " ".join(row[1:]), f"fashion by-class {model}")


def test_the_fashion_stage_table_is_the_stage_jsons():
    rows = {row[0]: row for row in table_after(_fashion_readme(), "| stage | wall s |")}
    assert rows, "no stage rows"
    for stage, row in rows.items():
        record = _load(RESULTS / "fashion" / f"{stage}.json")
        assert_printed_all([record["wall_seconds"], record["cpu_seconds"]], f"{row[1]} {row[2]}", f"stage {stage}")


FASHION_WORST_ROWS = {"AT (ours)": "AT", "OE, K = 0 (ours)": "OE (K=0)",
                      "classifier, max softmax (ours)": "classifier (max softmax)"}


def test_the_fashion_worst_case_table_is_eval_worst_json():
    norms = _load(RESULTS / "fashion" / "eval-worst.json")["norms"]
    rows = table_rows(_fashion_readme(), "| model | clean | L2 1 |", FASHION_WORST_ROWS,
                      "fashion README worst-case table")
    for label, model in FASHION_WORST_ROWS.items():
        l2, linf = norms["l2"]["auroc_by_eps"][model], norms["linf"]["auroc_by_eps"][model]
        values = [l2["0"], l2["1"], l2["2"], l2["3"], l2["5"], linf["0.05"], linf["0.1"], linf["0.2"]]
        assert linf["0"] == l2["0"], "both norms score the same clean images"
        assert_printed_all(values, " ".join(rows[label][1:]), f"fashion worst case {label}")


def test_the_fashion_generation_table_is_generate_json():
    generated = _load(RESULTS / "fashion" / "generate.json")["rows"]
    readme_rows = table_rows(_fashion_readme(), "| images | FD, Fashion-MNIST", generated, "fashion generation table")
    for name, (_, fd, classes, shares) in readme_rows.items():
        shares_json = generated[name]["class_shares"]
        assert_printed_all([generated[name]["fd"], min(shares_json), max(shares_json)], f"{fd} {shares}", name)
        assert int(classes) == generated[name]["classes_covered"], name


# ------------------------------------------------------------------------------------------------ E Tab. 4 analogue
TABLE4_ROWS = {"AT": "AT", "OE (K=0)": "OE (K=0)", "SGLD EBM": "SGLD EBM", "softmax (max prob)": "softmax (max prob)",
               "Madry L2 2.0 (max prob)": "Madry L2 2.0 (max prob)"}


@pytest.mark.parametrize("heading,key", [("| mean over the seven suites |", "mean_auroc_embedded"),
                                         ("| Fashion-MNIST |", "fashion")])
def test_the_table4_readme_tables_are_table_json(heading, key):
    table = _load(RESULTS / "ood_table4" / "table.json")["table"]
    rows = table_rows((RESULTS / "ood_table4" / "README.md").read_text(), heading, TABLE4_ROWS, "ood_table4 README")
    for label, name in TABLE4_ROWS.items():
        cells = rows[label][1:]
        assert len(cells) == 7, (label, cells)
        for norm, eps, cell in [("l2", e, c) for e, c in zip(("0", "1", "2", "3", "5", "8"), cells[:6])] + [
                ("linf", "0.1", cells[6])]:
            measured = table.get(name, {}).get(norm)
            if measured is None:  # an evaluation that did not run is printed as "-", never as a number
                assert cell == "-", f"ood_table4 README, {label} {norm} {eps}: {cell!r} but table.json has no value"
            else:
                assert printed(measured[key][eps], cell), f"ood_table4 README, {label} {norm} {eps}: {cell}"


def test_the_table4_orderings_quote_table_json():
    table = _load(RESULTS / "ood_table4" / "table.json")["table"]
    text = " ".join((RESULTS / "ood_table4" / "README.md").read_text().split())
    section = text[text.index("## Which of the papers' orderings"):text.index("## How much the default attack")]

    def mean(name: str, norm: str, eps: str) -> float:
        return table[name][norm]["mean_auroc_embedded"][eps]

    at, oe, sgld, madry = "AT", "OE (K=0)", "SGLD EBM", "Madry L2 2.0 (max prob)"
    softmax = table["softmax (max prob)"]["linf"]
    clean = [v["0"] for v in softmax["sets"].values()]
    floors = {round(v[e], 6) for v in table["softmax (max prob)"]["l2"]["sets"].values() for e in ("5", "8")}
    assert len(floors) == 1, floors  # "from L2 5 on every set sits at" one value
    floor = floors.pop()
    assert_quotes(section, [
        ("AT L2 8", mean(at, "l2", "8"), 3), ("OE L2 8", mean(oe, "l2", "8"), 3),
        ("AT Linf", mean(at, "linf", "0.1"), 3), ("OE Linf", mean(oe, "linf", "0.1"), 3),
        ("AT Fashion L2 8", table[at]["l2"]["fashion"]["8"], 3),
        ("OE Fashion L2 8", table[oe]["l2"]["fashion"]["8"], 3),
        ("OE letters L2 8", table[oe]["l2"]["sets"]["letters"]["8"], 1),
        ("OE Fashion L2 8, again", table[oe]["l2"]["fashion"]["8"], 3),
        ("SGLD L2 8", mean(sgld, "l2", "8"), 3), ("AT L2 8, again", mean(at, "l2", "8"), 3),
        ("SGLD Linf", mean(sgld, "linf", "0.1"), 3), ("AT Linf, again", mean(at, "linf", "0.1"), 3),
        ("softmax Linf", softmax["mean_auroc_embedded"]["0.1"], 3),
        ("softmax Fashion Linf", softmax["fashion"]["0.1"], 3),
        ("softmax clean, lowest set", min(clean), 2), ("softmax clean, highest set", max(clean), 2),
        ("softmax L2 2", table["softmax (max prob)"]["l2"]["mean_auroc_embedded"]["2"], 3),
        ("softmax, every set from L2 5 on", floor, 3),
        ("Madry L2 3", mean(madry, "l2", "3"), 3), ("Madry L2 8", mean(madry, "l2", "8"), 3),
        ("AT L2 3", mean(at, "l2", "3"), 3), ("AT L2 8, third", mean(at, "l2", "8"), 3)],
        ["0.1", "0.1", "0.1", "8", "8", "8", "8", "8", "3",  # the radii named
         "4", "4", "4", "2", "5.2", "10", "10", "23",  # E Tab. 4, G Tab. 2, E Sec. 5.2, CIFAR-10, issue 23
         "0.6", "43.1", "2.5", "21.2", "73.0", "99.8", "70.6", "100",  # E Tab. 4's OE, JEM, RATIO, AT ranges (%)
         "2000", "20", "32", "2.0", "2", "5", "1"],  # OE's iterations, SGLD steps, images per set, radii, p = 1
        "ood_table4 README, orderings")
