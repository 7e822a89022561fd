"""Recipe search of the generative robust classifier (issue 23): in+out AT committees (T Eq. 3.45) compared by their
worst-case accuracy on the validation split.

    python benchmarks/gat_inout_recipes.py --arm NAME --out RUN [--workers 1]     # trains the arm's committee
    python benchmarks/gat_inout_recipes.py --arm NAME --evaluate RUN --eps 0.3     # one validation grid point
                                                                                   # (in the arm's norm)
    python benchmarks/gat_inout_recipes.py --report                                # README_classify's table

Each arm (:data:`ARMS`) is a :class:`~atebm.gat.GatPreset` trained by :func:`atebm.gat.pipeline.run_gat_train`, the
code of ``atebm gat train --preset``. ``--evaluate`` scores the calibrated committee with
:func:`atebm.gat.classifier_robustness.robust_accuracy` (protocol ``mnist``: the per-class attack with every
candidate, CE and margin PGD with restarts, targeted PGD, ART APGD-CE/DLR, Square 5,000; per-input worst case) on
``--n`` stratified *validation* digits, so the choice never reads the test split, and appends one JSON line to
``benchmarks/results/gat/inout_recipes.jsonl`` with the CPU seconds of training and of the evaluation.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atebm.gat.presets import GAT_PRESETS, GatPreset, mnist_at, with_inout_at

RESULTS = Path(__file__).resolve().parent / "results" / "gat" / "inout_recipes.jsonl"
_MNIST, _INOUT = GAT_PRESETS["mnist"], GAT_PRESETS["mnist-inout"]

#: name -> (what changes against ``mnist-inout``, the preset). Every arm: the in-distribution radius ramped from 0
#: over the first half of the run, 5 in-distribution steps of eps_1 / 4; 500 iterations per detector unless named.
ARMS: dict[str, tuple[str, GatPreset]] = {
    "inout-0.3": ("eps_1 = eps_2 = 0.3, 500 iterations (the radius ramped over the first 250): the `mnist-inout` "
                  "preset until this search", with_inout_at(_MNIST, "inout-0.3", 0.3, 5, 0.075, 500, eps_in_start=0.0,
                                                            warmup=250)),
    "inout-0.4": ("eps_1 = eps_2 = 0.4 (every radius and step of `mnist` scaled to 0.4, as `mnist_at` does)",
                  with_inout_at(mnist_at("mnist-linf0.4-cpu", "linf", 0.4), "inout-0.4", 0.4, 5, 0.1, 500,
                                eps_in_start=0.0, warmup=250)),
    "in0.4-out0.3": ("eps_1 = 0.4, eps_2 = 0.3 (the other classes raised as in `mnist`)",
                     with_inout_at(_MNIST, "in0.4-out0.3", 0.4, 5, 0.1, 500, eps_in_start=0.0, warmup=250)),
    "inout-0.3-800": ("inout-0.3 for 800 iterations (the radius ramped over the first 400): the `mnist-inout` preset "
                      "since this search", dataclasses.replace(_INOUT, name="inout-0.3-800")),
    "inout-l2-2.0": ("L2 eps_1 = eps_2 = 2.0, 500 iterations, every radius and step of `mnist` scaled with eps",
                     with_inout_at(mnist_at("mnist-l2-2.0-cpu", "l2", 2.0), "inout-l2-2.0", 2.0, 5, 0.5, 500,
                                   eps_in_start=0.0, warmup=250,
                                   base_label="the `mnist` recipe at L2 2 (every radius and step scaled with eps: "
                                              "training attack 20 x 0.1667, validation 50 x 0.1333)")),
}
#: the grid points of the recipe table: (norm, eps)
TABLE_POINTS = (("linf", 0.3), ("linf", 0.4), ("l2", 2.0))


def train(arm: str, out: Path, workers: int, command: str) -> None:
    """Trains the arm's committee into ``out``; a run the plateau check stops is recorded as a line with the
    error, the finished detectors' selected validation AUCs and the CPU seconds spent, then re-raised."""
    from atebm.gat.pipeline import run_gat_train

    started = out.exists() and any(out.iterdir())            # an interrupted arm continues where it stopped
    try:
        run_gat_train(out, preset=ARMS[arm][1], workers=workers, resume=started)
    except RuntimeError as error:
        record_stopped_run(arm, out, str(error), command)
        raise


def record_stopped_run(arm: str, out: Path, error: str, command: str) -> None:
    """Appends the line of an arm whose training stopped: the error, the finished detectors' selected validation
    AUCs and their CPU seconds."""
    done = [json.loads(p.read_text()) for p in sorted(out.glob("detector_*/done.json"))]
    line = {"arm": arm, "what": ARMS[arm][0], "trained": False, "error": error,
            "finished_detectors": {d["class"]: round(d["selection"]["value"], 4) for d in done},
            "detector_cpu_seconds": round(sum(d["cpu_seconds"] for d in done), 1), "command": command}
    with RESULTS.open("a") as f:
        f.write(json.dumps(line) + "\n")


def evaluate(arm: str, run: Path, eps: float, n: int, command: str) -> dict[str, Any]:
    import atebm.gat as gat
    from atebm.gat.classifier_robustness import CLASSIFY_PROTOCOLS, robust_accuracy
    from atebm.gat.data import labelled_splits
    from atebm.gat.evaluate import stratified_subset

    committee = gat.load(run)
    splits = labelled_splits("mnist")
    assert splits.val.y is not None
    index = stratified_subset(splits.val.y, n, 0)
    start = time.process_time()
    norm = ARMS[arm][1].norm
    result = robust_accuracy(committee, splits.val.x[index], splits.val.y[index], norm=norm, eps=eps,
                             config=CLASSIFY_PROTOCOLS["mnist"],
                             progress=lambda s: print(s, file=sys.stderr, flush=True))
    trained = json.loads((run / "gat_train.json").read_text())
    line = {"arm": arm, "what": ARMS[arm][0], "split": "val", "n": n, "norm": norm, "eps": eps,
            "clean_accuracy": result["clean_accuracy"], "robust_accuracy": result["robust_accuracy"],
            "broke": {k: v["broke"] for k, v in result["attackers"].items()},
            "detector_cpu_seconds": round(sum(d["cpu_seconds"] for d in trained["detectors"]), 1),
            "selected_val_auc": [d["selection"]["value"] for d in trained.get("detectors", [])],
            "eval_cpu_seconds": round(time.process_time() - start, 1), "command": command}
    with RESULTS.open("a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def report() -> str:
    """The recipe table of README_classify.md: per arm its validation worst case at :data:`TABLE_POINTS` (in its
    own norm), or where its training stopped, and the detectors' CPU seconds."""
    lines = [json.loads(s) for s in RESULTS.read_text().splitlines()]
    points = " | ".join(f"{'Linf' if norm == 'linf' else 'L2'} {eps:g}" for norm, eps in TABLE_POINTS)
    rows = [f"| in+out recipe (validation) | what it changes | {points} | detector CPU s |",
            "|---|---|" + "---|" * len(TABLE_POINTS) + "---|"]
    for arm in dict.fromkeys(line["arm"] for line in lines):
        mine = [line for line in lines if line["arm"] == arm]
        if not mine[0].get("trained", True):
            detector = mine[0]["error"].split("detector ")[1].split()[0]
            cells = [f"stopped: {detector} at the 2 ln 2 plateau on 2 seeds"] + ["-"] * (len(TABLE_POINTS) - 1)
        else:
            by_point = {(line.get("norm", "linf"), line["eps"]): line for line in mine}
            cells = [f"{by_point[p]['robust_accuracy']:.2f} (n {by_point[p]['n']})" if p in by_point else "-"
                     for p in TABLE_POINTS]
        cpu = f"{mine[0]['detector_cpu_seconds']:,.0f}"
        rows.append(f"| `{arm}` | {ARMS[arm][0]} | " + " | ".join(cells) + f" | {cpu} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=tuple(ARMS))
    parser.add_argument("--out", type=Path, help="run folder to train the arm's committee into")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--evaluate", type=Path, help="a trained run folder of --arm")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--n", type=int, default=100, help="stratified validation digits (default: %(default)s)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.report:
        print(report())
    elif args.evaluate:
        print(json.dumps(evaluate(args.arm, args.evaluate, args.eps, args.n,
                                  "python benchmarks/gat_inout_recipes.py " + " ".join(sys.argv[1:]))))
    elif args.out and args.arm:
        train(args.arm, args.out, args.workers, "python benchmarks/gat_inout_recipes.py " + " ".join(sys.argv[1:]))
    else:
        parser.error("give --arm with --out or --evaluate, or --report")


if __name__ == "__main__":
    main()
