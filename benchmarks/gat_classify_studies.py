"""Thesis Sec. 3.4's studies of one detector of the generative robust classifier, at CPU scale (issue 23).

    python benchmarks/gat_classify_studies.py --arms inout width-full --seeds 0 1 2 --out RUN   # train + score
    python benchmarks/gat_classify_studies.py --report                                          # the README table

The thesis studies its class-1 detector (T Fig. 3.12-3.15): capacity, weight decay, the training radius and in+out
against out-only AT, each scored by the AUC of the class-k test inputs against the other-class test inputs, clean
("standard") and with both sides attacked ("adversarial": the class-k inputs pushed down, the others pushed up,
each inside the ball). Every arm (:data:`ARMS`) is the `mnist-inout` recipe at 500 iterations with one thing
changed, trained by :func:`atebm.gat.training.train_detector` (the code of ``atebm gat train``; selection on the
validation split) for each seed, and scored on the test split through the attack layer
(:func:`atebm.attacks.raise_score` / :func:`atebm.attacks.lower_score`): sign PGD-200 x 0.01 from the clean input
and PGD-100 x 2.5 eps / 100 from a random start, the per-input worst kept (one attack for every arm: an upper bound
on each AUC that ranks the arms). The adversarial AUC on training inputs beside the test one shows the overfitting
that weight decay targets (T Sec. 3.4, "Model capacity and regularization"). One JSON line per arm, seed and
detector is appended to ``benchmarks/results/gat/classify_studies.jsonl``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atebm.attacks import AttackSpec, ThreatModel, lower_score, raise_score
from atebm.gat.attacks import SingleDetectorAttack
from atebm.gat.data import class_view, labelled_splits
from atebm.gat.evaluate import stratified_subset
from atebm.gat.presets import GAT_PRESETS, GatPreset, detector_model_spec, mnist_at, with_inout_at
from atebm.gat.softmax_classifier import batched_logits
from atebm.gat.training import detector_dir, train_detector
from atebm.metrics import auroc
from atebm.training import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "gat" / "classify_studies.jsonl"
#: the base of every arm: the `mnist-inout` recipe as first adopted (500 iterations, the radius ramped over 250)
_INOUT = with_inout_at(GAT_PRESETS["mnist"], "mnist-inout", 0.3, 5, 0.075, 500, eps_in_start=0.0, warmup=250)
#: the radii of the adversarial AUC: the committee's target radius (at 0.1 the `mnist-inout` d_1 is at 0.999)
EVAL_EPS = (0.3,)
#: other-class inputs attacked per detector and split (stratified), and class-k training inputs attacked
NEGATIVES, TRAIN_POSITIVES = 300, 150


def _changed(name: str, **train: Any) -> GatPreset:
    return dataclasses.replace(_INOUT, name=name, train={**_INOUT.train, **train})


def _inout_at(eps: float) -> GatPreset:
    base = mnist_at(f"mnist-linf{eps:g}-cpu", "linf", eps)
    return with_inout_at(base, f"inout-{eps:g}", eps, 5, eps / 4, 500, eps_in_start=0.0, warmup=250)


#: name -> (the study it belongs to, what it changes against `mnist-inout`, the preset)
ARMS: dict[str, tuple[str, str, GatPreset]] = {
    "inout": ("all", "in+out AT at eps_1 = eps_2 = 0.3 for 500 iterations (`mnist-inout` as first adopted): conv 16 - "
                     "conv 32 - fc 256, no weight decay",
              _INOUT),
    "out-only": ("in+out vs out-only (T Fig. 3.15)", "no in-distribution AT (eps_1 = 0)",
                 _changed("out-only", indist_at_steps=0)),
    "width-quarter": ("capacity (T Fig. 3.12)", "conv 8 - conv 16 - fc 128 (quarter width)",
                      _changed("width-quarter", model=detector_model_spec(widths=(8, 16), hidden=128))),
    "width-full": ("capacity (T Fig. 3.12)", "conv 32 - conv 64 - fc 1024 (T Tab. 3.1's network)",
                   _changed("width-full", model=detector_model_spec(widths=(32, 64), hidden=1024))),
    "wd-5e-4": ("weight decay (T Fig. 3.12)", "Adam weight decay 5e-4", _changed("wd-5e-4", weight_decay=5e-4)),
    "wd-5e-3": ("weight decay (T Fig. 3.12)", "Adam weight decay 5e-3", _changed("wd-5e-3", weight_decay=5e-3)),
    "eps-0.1": ("training radius (T Fig. 3.13)", "eps_1 = eps_2 = 0.1 (every step scaled)", _inout_at(0.1)),
    "eps-0.2": ("training radius (T Fig. 3.13)", "eps_1 = eps_2 = 0.2 (every step scaled)", _inout_at(0.2)),
}


def attackers(eps: float) -> list[AttackSpec]:
    return [AttackSpec("pgd", steps=200, step_size=0.01, random_start=False),
            AttackSpec("pgd", steps=100, step_size=2.5 * eps / 100, restarts=1)]


def adversarial_auc(detector: torch.nn.Module, positives: torch.Tensor, negatives: torch.Tensor, eps: float) -> float:
    """AUC of the class-k inputs pushed down against the other-class inputs pushed up, both inside Linf ``eps``."""
    score, threat = SingleDetectorAttack(detector), ThreatModel("linf", eps)
    low, low_ref = lower_score(score, positives, threat=threat, attackers=attackers(eps))
    high, high_ref = raise_score(score, negatives, threat=threat, attackers=attackers(eps))
    return auroc(-(low.margin + low_ref), high.margin + high_ref)


def score_detector(detector: torch.nn.Module, splits: Any, k: int) -> dict[str, float]:
    """Clean AUC (every class-k test input against every other test input), the adversarial AUC on the test split
    at each radius of :data:`EVAL_EPS` (every class-k test input, :data:`NEGATIVES` stratified others), and on
    the training split at Linf 0.3 (:data:`TRAIN_POSITIVES` class-k inputs, the same number of others)."""
    assert splits.test.y is not None and splits.train.y is not None
    test_pos, test_neg, test_labels = class_view(splits.test, k)
    result = {"clean_auc": auroc(batched_logits(detector, test_pos, 250), batched_logits(detector, test_neg, 250))}
    negatives = test_neg[stratified_subset(test_labels, NEGATIVES, 0)]
    for eps in EVAL_EPS:
        result[f"adv_auc_{eps:g}"] = adversarial_auc(detector, test_pos, negatives, eps)
    train_pos, train_neg, train_labels = class_view(splits.train, k)
    result["train_adv_auc_0.3"] = adversarial_auc(detector, train_pos[:TRAIN_POSITIVES],
                                                  train_neg[stratified_subset(train_labels, NEGATIVES, 0)], 0.3)
    return {key: round(value, 5) for key, value in result.items()}


def run_arm(arm: str, seed: int, k: int, out: Path, splits: Any, command: str) -> dict[str, Any]:
    start = time.process_time()
    summary = train_detector(ARMS[arm][2], k, splits, out / arm / f"seed_{seed}", resume=True, seed=seed,
                             overrides={"progress": False}, log=False)
    train_cpu = time.process_time() - start
    detector = load_model(detector_dir(out / arm / f"seed_{seed}", k))
    scores = score_detector(detector, splits, k)
    line = {"arm": arm, "study": ARMS[arm][0], "what": ARMS[arm][1], "seed": seed, "detector": k, **scores,
            "parameters": sum(p.numel() for p in detector.parameters()),
            "selected_step": summary["selection"]["step"], "val_selection": round(summary["selection"]["value"], 5),
            "plateau_restarts": len(summary.get("plateau_restarts", [])),
            "train_cpu_seconds": round(summary.get("cpu_seconds", train_cpu), 1),
            "eval_cpu_seconds": round(time.process_time() - start - train_cpu, 1), "command": command}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def report(lines: list[dict[str, Any]]) -> str:
    """The README table: per arm and detector, the median over seeds and the [min, max] of each AUC."""
    latest: dict[tuple[str, int, int], dict[str, Any]] = {}
    for line in lines:
        latest[(line["arm"], line["detector"], line["seed"])] = line
    keys = ["clean_auc", *(f"adv_auc_{e:g}" for e in EVAL_EPS), "train_adv_auc_0.3"]
    rows = ["| arm | study | what it changes | d | seeds | clean AUC | " +
            " | ".join(f"adv. AUC Linf {e:g} (test)" for e in EVAL_EPS) +
            " | adv. AUC Linf 0.3 (train) | parameters | train CPU s (median) |",
            "|---|---|---|---|---|---|" + "---|" * len(EVAL_EPS) + "---|---|---|"]
    for arm in ARMS:
        for k in sorted({key[1] for key in latest if key[0] == arm}):
            mine = [v for key, v in latest.items() if key[0] == arm and key[1] == k]
            cells = [_spread([m[key] for m in mine]) for key in keys]
            cpu = statistics.median(m["train_cpu_seconds"] for m in mine)
            rows.append(f"| `{arm}` | {ARMS[arm][0]} | {ARMS[arm][1]} | d_{k} | {len(mine)} | " + " | ".join(cells) +
                        f" | {mine[0]['parameters']:,} | {cpu:.0f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--classes", type=int, nargs="+", default=[1], help="detectors (default: T's class 1)")
    parser.add_argument("--out", type=Path, help="folder of the arms' run folders")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report([json.loads(s) for s in RESULTS.read_text().splitlines() if s.strip()]))
        return
    if args.out is None:
        parser.error("give --out (or --report)")
    torch.set_num_threads(1)
    splits = labelled_splits("mnist")
    command = "python benchmarks/gat_classify_studies.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    for seed in args.seeds:
        for arm in args.arms:
            for k in args.classes:
                print(json.dumps(run_arm(arm, seed, k, args.out, splits, command)), flush=True)


if __name__ == "__main__":
    main()
