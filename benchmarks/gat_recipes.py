"""Detector training recipes for the `mnist` GAT preset, compared on d_0 and d_1 (issue 11).

    python benchmarks/gat_recipes.py --recipe NAME [--classes 0 1] [--out /tmp/gat_recipes] [--threads 1]
    python benchmarks/gat_recipes.py --evaluate RUN_DIR --recipe NAME   # a trained run (e.g. the old preset's)
    python benchmarks/gat_recipes.py --recipe NAME --tables              # + the committed table's AUC rows
    python benchmarks/gat_recipes.py --report                           # recipes.jsonl -> recipes.md

Each recipe is the `mnist` preset with some fields replaced (:data:`RECIPES`). Every detector d_k is trained with
:func:`atebm.gat.train_detector` (best-validation weights) and scored under sign PGD-200 x 0.01, Linf 0.3 (T Tab.
3.3's row): on the test split as in the committed table (the 100 class-k test digits against 100 stratified
other-class test digits, the selection of :func:`atebm.gat.evaluate.auc_tables`), on 300 other-class test digits,
and on the validation split (50 against all 450 other-class digits); plus the clean test AUC (against all 900).
One JSON line per detector is appended to ``benchmarks/results/gat/recipes.jsonl`` with this command.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atebm.attacks import AttackSpec, ThreatModel, raise_score
from atebm.gat.attacks import SingleDetectorAttack
from atebm.gat.data import class_view, labelled_splits
from atebm.gat.evaluate import EVAL_PROTOCOLS, THESIS, auc_tables, class_view_tensors, stratified_subset
from atebm.gat.presets import DIGIT_JITTER, GatPreset, detector_model_spec, get_gat_preset
from atebm.gat.softmax_classifier import batched_logits
from atebm.gat.training import detector_dir, train_detector
from atebm.metrics import auroc
from atebm.training import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "gat" / "recipes.jsonl"
TABLES = RESULTS.with_name("recipe_tables.json")

#: The `mnist` preset's detector recipe before this search (10 x 0.075 training attack, 20 x 0.0375 validation).
_OLD_TRAIN = {"k_start": 10, "k_max": 10, "step_size": 0.075}
_OLD_VALIDATION = {"rule": "pgd", "steps": 20, "step_size": 0.0375, "negatives": None, "every": 100}
_JITTER = DIGIT_JITTER

#: name -> what changes, and the fields of the current `mnist` preset replaced ("train" entries are merged into its
#: train dict). "k20" is the `mnist` preset as of this search.
RECIPES: dict[str, dict[str, Any]] = {
    "old-preset": {"what": "the `mnist` preset before this search: training attack 10 sign steps x 0.075, "
                           "validation 20 x 0.0375 on all 450 other-class digits",
                   "train": _OLD_TRAIN, "validation": _OLD_VALIDATION},
    "crop": {"what": "old-preset + random resized crops of area 0.7-1 on both p_data and p_0",
             "train": {**_OLD_TRAIN, "augment_crop_scale": (0.7, 1.0)}, "validation": _OLD_VALIDATION},
    "k20": {"what": "training attack 20 sign steps x 0.025 (was 10 x 0.075); validation attack 50 x 0.02 from a "
                    "random start on 150 other-class digits (was 20 x 0.0375 on all 450)",
            "train": {"k_start": 20, "k_max": 20, "step_size": 0.025},
            "validation": {"rule": "pgd", "steps": 50, "step_size": 0.02, "negatives": 150, "every": 100}},
    "k20-jitter": {"what": "k20 + shape jitter of p_data and p_0: rotation +-10 deg, x/y scale +-15 %, shift +-2 px, "
                           "40 % of images dilated or eroded 3x3",
                   "train": {"k_start": 20, "k_max": 20, "step_size": 0.025},
                   "validation": {"rule": "pgd", "steps": 50, "step_size": 0.02, "negatives": 150, "every": 100},
                   "extra": {"jitter": _JITTER}},
    "k20-ema": {"what": "k20 + an exponential moving average of the weights (decay 0.99), the average being what the "
                        "validation scores and selects",
                "train": {"k_start": 20, "k_max": 20, "step_size": 0.025, "ema_decay": 0.99},
                "validation": {"rule": "pgd", "steps": 50, "step_size": 0.02, "negatives": 150, "every": 100}},
    "k20-jitter-ema": {"what": "k20-jitter + the weight average of k20-ema",
                       "train": {"k_start": 20, "k_max": 20, "step_size": 0.025, "ema_decay": 0.99},
                       "validation": {"rule": "pgd", "steps": 50, "step_size": 0.02, "negatives": 150, "every": 100},
                       "extra": {"jitter": _JITTER}},
    "k20-in0.1": {"what": "k20 + the class-k training images lowered inside Linf 0.1 by 5 sign-descent steps x 0.03 "
                          "(in-distribution AT, T Eq. 3.45's first term at a small radius): a margin around the "
                          "positives",
                  "train": {"k_start": 20, "k_max": 20, "step_size": 0.025, "indist_at_steps": 5,
                            "indist_at_eps": 0.1, "indist_at_step_size": 0.03},
                  "validation": {"rule": "pgd", "steps": 50, "step_size": 0.02, "negatives": 150, "every": 100}},
    "k20-wide": {"what": "k20 with the T Tab. 3.1 network at full width (conv 32 - conv 64 - fc 1024; the preset: "
                         "16 / 32 / 256), about 4x the cost",
                 "train": {"k_start": 20, "k_max": 20, "step_size": 0.025,
                           "model": detector_model_spec(widths=(32, 64), hidden=1024)},
                 "validation": {"rule": "pgd", "steps": 50, "step_size": 0.02, "negatives": 150, "every": 100}},
    "k10-long": {"what": "training attack 10 sign steps x 0.05 for 1,000 iterations (twice k20's passes over the "
                         "data at about its cost); k20's validation",
                 "train": {"k_start": 10, "k_max": 10, "step_size": 0.05, "max_iters": 1000},
                 "validation": {"rule": "pgd", "steps": 50, "step_size": 0.02, "negatives": 150, "every": 100}},
}


def recipe_preset(name: str) -> GatPreset:
    if name not in RECIPES:
        raise SystemExit(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    base = get_gat_preset("mnist")
    spec = RECIPES[name]
    changes: dict[str, Any] = {k: v for k, v in spec.items() if k not in ("what", "train")}
    # every recipe starts from the `mnist` preset's network, optimiser and budget without weight average or
    # in-distribution AT (the preset before this search's k20-in0.1 was adopted), so recipes stay comparable
    changes["train"] = {**base.train, "ema_decay": None, "indist_at_steps": 0, **spec["train"]}
    changes.setdefault("extra", {})
    return dataclasses.replace(base, name=f"mnist+{name}", **changes)


def attacked_scores(detector: torch.nn.Module, negatives: torch.Tensor) -> torch.Tensor:
    """Worst-case d_k of the negatives under sign PGD-200 x 0.01 in the Linf 0.3 ball (deterministic start, the
    best iterate kept), through the attack layer."""
    result, reference = raise_score(SingleDetectorAttack(detector), negatives, threat=ThreatModel("linf", 0.3),
                                    attackers=[AttackSpec("pgd", steps=200, step_size=0.01, random_start=False)])
    return result.margin + reference


def _table_order(labels: torch.Tensor, n: int) -> torch.Tensor:
    order = stratified_subset(labels, n, 0)
    return order[torch.randperm(len(order), generator=torch.Generator().manual_seed(0))]


def score_detector(detector: torch.nn.Module, splits: Any, k: int) -> dict[str, float]:
    x, y = splits.test.x, splits.test.y
    positives, negatives, labels = class_view_tensors(x, y, k)
    result: dict[str, float] = {"clean_auc_test": auroc(batched_logits(detector, positives, 250),
                                                        batched_logits(detector, negatives, 250))}
    s_pos = batched_logits(detector, positives, 250)
    order_300, order_100 = _table_order(labels, 300), _table_order(labels, 100)
    s_adv = attacked_scores(detector, negatives[order_300])  # the table's 100 are among these 300
    in_table = torch.isin(order_300, order_100)
    assert int(in_table.sum()) == len(order_100)
    result["pgd200_auc_test_100"] = auroc(s_pos, s_adv[in_table])
    result["pgd200_auc_test_300"] = auroc(s_pos, s_adv)
    val_pos, val_neg, _ = class_view(splits.val, k)
    result["pgd200_auc_val_450"] = auroc(batched_logits(detector, val_pos, 250), attacked_scores(detector, val_neg))
    return {key: round(value, 5) for key, value in result.items()}


class _Detectors(torch.nn.Module):
    """The part of a committee :func:`atebm.gat.evaluate.auc_tables` uses: ``detector(k)`` for the trained k."""

    def __init__(self, detectors: dict[int, torch.nn.Module]) -> None:
        super().__init__()
        self.detectors = torch.nn.ModuleDict({str(k): d for k, d in detectors.items()})

    def detector(self, k: int) -> torch.nn.Module:
        return self.detectors[str(k)]


def protocol_tables(run: Path, classes: list[int], splits: Any) -> list[dict[str, Any]]:
    """The AUC rows of the committed table (T Tab. 3.2-3.5, protocol ``mnist``) for the detectors of ``run``."""
    config = dataclasses.replace(EVAL_PROTOCOLS["mnist"], auc_detectors=tuple(classes))
    detectors = _Detectors({k: load_model(detector_dir(run, k)) for k in classes})
    return auc_tables(detectors, splits.test.x, splits.test.y, config, "linf", 0.3,
                      progress=lambda line: print(line, file=sys.stderr, flush=True))


def worst_positives(detector: torch.nn.Module, splits: Any, k: int, count: int = 5) -> dict[str, Any]:
    """Where the test AUC under PGD-200 is lost: per class-k test digit, the share of the 300 attacked other-class
    digits scored above it (the AUC is 1 minus the mean share); the ``count`` largest shares, and their sum
    against the total."""
    positives, negatives, labels = class_view_tensors(splits.test.x, splits.test.y, k)
    s_pos = batched_logits(detector, positives, 250)
    s_adv = attacked_scores(detector, negatives[_table_order(labels, 300)])
    share = (s_adv[None, :] > s_pos[:, None]).float().mean(1)
    worst = share.sort(descending=True).values[:count]
    return {"detector": k, "auc": round(1 - float(share.mean()), 5),
            "worst_shares": [round(float(v), 3) for v in worst],
            "worst_share_of_loss": round(float(worst.sum() / share.sum()), 3) if float(share.sum()) else 0.0,
            "lowest_test_positive_score": round(float(s_pos.min()), 2),
            "lowest_train_positive_score": round(float(batched_logits(detector, class_view(splits.train, k)[0],
                                                                      250).min()), 2)}


def recipes_markdown(lines: list[dict[str, Any]]) -> str:
    """The recipe table: one row per (recipe, detector), in the order measured (the last line of a pair wins)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for line in lines:
        rows[(line["recipe"], line["detector"])] = line
    out = ["# Detector training recipes for the `mnist` preset (generated by benchmarks/gat_recipes.py --report)", "",
           "MNIST 5,000 (350 train / 50 val / 100 test images per class), Linf 0.3. AUC of d_k: clean class-k test "
           "digits against other-class digits attacked by sign PGD, 200 steps x 0.01, from the clean image (T Tab. "
           "3.3's row; thesis 0.99962 / 0.99973 for d_0 / d_1 on full MNIST; target >= 0.995). `test 100`: the "
           "committed table's 100 negatives; `test 300`: 300 stratified negatives (the 100 among them); `val 450`: "
           "the 50 class-k validation digits against all 450 others (what a recipe may be chosen on). CPU s: "
           "training incl. validations, one thread, on a shared 2-core machine.", "",
           "What this table is: the record of the search that chose the `mnist` recipe (issue 11), one deterministic "
           "attack per row, not a robustness claim; the chosen committee's numbers under the full protocol (restarts, "
           "both norms, ART attackers) are `mnist.json` / `tables.md`. Every row was trained and measured through "
           "the attack layer on 2026-12-07 (`k20` first, the others in one chain of the commands shown, one thread, "
           "beside another one-thread job); the search's first lines (2026-11-28 to 12-04, before the layer) were "
           "removed from recipes.jsonl and are in git history (`git show 1c61969:benchmarks/results/gat/recipes.jsonl`"
           "). Retrained detectors differ from the first run's by up to 0.21 (test 100, d_0: crop 0.7137 then, "
           "0.9284 now; k20-jitter 0.9937 then, 0.9758 now), so one run per recipe ranks the recipes only roughly; "
           "the choice, k20-in0.1, has the highest validation AUC in both runs.", "",
           "| recipe | what | d | clean AUC (test, 900 neg.) | PGD-200 test 100 | PGD-200 test 300 | PGD-200 val 450 "
           "| selected on (val AUC under the recipe's validation attack) | CPU s | command |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for (name, k), r in rows.items():
        cpu_s = r.get("train_cpu_s") or r.get("train_cpu_s_recorded")
        cpu = "-" if cpu_s is None else f"{cpu_s:.0f}"
        chosen = "-" if r.get("val_auc_selection") is None else \
            f"{r['val_auc_selection']:.4f} (step {r['selected_step']})"
        out.append(f"| {name} | {r['what']} | d_{k} | {r['clean_auc_test']:.4f} | {r['pgd200_auc_test_100']:.4f} | "
                   f"{r['pgd200_auc_test_300']:.4f} | {r['pgd200_auc_val_450']:.4f} | {chosen} | {cpu} | "
                   f"`{r['command']}` |")
    if TABLES.exists():
        t = json.loads(TABLES.read_text())
        out += ["", f"## The committed table's AUC rows for recipe `{t['recipe']}` (T Tab. 3.2-3.5, protocol `mnist`)",
                "", f"Command: `{t['command']}` ({t['cpu_s']:.0f} CPU s). The current `mnist` committee: "
                "tables.md.", "",
                "| T table | detector | rule | ball | steps x size | restarts | negatives | AUC ours | AUC thesis |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in t["rows"]:
            p, k = r["protocol"], r["detector"]
            rule = p["method"]
            thesis = (THESIS["auc"].get(r["attack"]) if r["table"] == "steps" else
                      THESIS["cross_norm"].get((p["norm"], p["eps"])) if r["table"] == "cross_norm" else None)
            table = {"steps": "3.2" if rule == "adam" else "3.3", "cross_norm": "3.4", "restarts": "3.5"}
            out.append(f"| {table[r['table']]} | d_{k} | {rule} | {p['norm']} {p['eps']:g} | {p['steps']} x "
                       f"{p['step_size']:g} | {p['restarts']} | {p['negatives']} | {r['auc']:.5f} | "
                       f"{'-' if thesis is None else f'{thesis[k]:.5f}'} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--report", action="store_true", help="only write recipes.md from recipes.jsonl")
    parser.add_argument("--tables", action="store_true",
                        help="the committed table's AUC rows (protocol mnist) for the recipe's trained detectors")
    parser.add_argument("--worst", action="store_true",
                        help="print where a trained detector loses its test AUC (its worst class-k test digits)")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="/tmp/gat_recipes")
    parser.add_argument("--evaluate", default=None, help="score the detectors of this run folder, train nothing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.report:
        lines = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
        RESULTS.with_suffix(".md").write_text(recipes_markdown(lines))
        return
    if args.recipe is None:
        raise SystemExit("give --recipe NAME (or --report)")
    torch.set_num_threads(args.threads)
    preset = recipe_preset(args.recipe)
    splits = labelled_splits(preset.data)
    command = "python benchmarks/gat_recipes.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.worst:
        run = Path(args.evaluate or Path(args.out) / args.recipe)
        for k in args.classes:
            print(json.dumps({"recipe": args.recipe, **worst_positives(load_model(detector_dir(run, k)), splits, k),
                              "command": command}))
        return
    if args.tables:
        start = time.process_time()
        rows = protocol_tables(Path(args.evaluate or Path(args.out) / args.recipe), args.classes, splits)
        TABLES.write_text(json.dumps({"recipe": args.recipe, "what": RECIPES[args.recipe]["what"],
                                      "command": command, "cpu_s": round(time.process_time() - start, 1),
                                      "protocol": "mnist (src/atebm/gat/evaluate.py EVAL_PROTOCOLS)", "rows": rows},
                                     indent=1))
        return
    for k in args.classes:
        start, cpu = time.perf_counter(), time.process_time()
        if args.evaluate:
            run, summary = Path(args.evaluate), {}
        else:
            run = Path(args.out) / args.recipe
            summary = train_detector(preset, k, splits, run, resume=True, overrides={"progress": False})
        train_s = (round(time.perf_counter() - start, 1), round(time.process_time() - cpu, 1))
        scores = score_detector(load_model(detector_dir(run, k)), splits, k)
        line = {"recipe": args.recipe, "what": RECIPES[args.recipe]["what"], "detector": k, **scores,
                "selected_step": (summary.get("selection") or {}).get("step"),
                "val_auc_selection": (summary.get("selection") or {}).get("value"),
                "train_wall_s": None if args.evaluate else train_s[0],
                "train_cpu_s": None if args.evaluate else train_s[1],
                "train_cpu_s_recorded": summary.get("cpu_seconds"), "threads": args.threads, "command": command}
        print(json.dumps(line), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
