"""E Tab. 4 / T Tab. 3.12 at CPU scale: worst-case OOD AUROC of the AT model against the detectors the papers compare
with, on the seven embedded suites and Fashion-MNIST, through the attack layer at the papers' strength.

    python benchmarks/ood_table4.py --work W                      # every stage, resuming those done before
    python benchmarks/ood_table4.py --work W --at runs/demo        # the AT model of an `atebm demo` run
    python benchmarks/ood_table4.py --work W --stages eval-l2 --models AT "OE (K=0)"   # one process per group
    python benchmarks/ood_table4.py --work /tmp/t4-smoke --smoke   # seconds: proves the pipeline only

Models (MNIST 5,000, in-distribution = its test split; every model trained on its 3,500 training digits):

* ``AT``: binary AT, the ``mnist`` preset as ``atebm demo`` trains and selects it (``--at RUN`` takes the run folder
  of a demo instead of training one here; its training record is read from the run's ``metrics.json``).
* ``OE (K=0)``: the same trainer, network and p_0 at K = 0 (Outlier Exposure), trained as many iterations as AT.
* ``SGLD EBM``: the maximum-likelihood EBM of :mod:`atebm.baselines` (JEM/IGEBM-like: SGLD with a replay buffer,
  p_0 uniform noise), same network; iterations chosen so its network passes roughly equal AT's.
* ``softmax (max prob)``: the T Tab. 3.1 network trained with cross-entropy (Hendrycks & Gimpel's baseline,
  :class:`atebm.ood.MaxSoftmaxScore`).
* ``Madry L2 2.0 (max prob)``: the same network with Madry et al.'s PGD adversarial training at L2 radius 2.0 (the
  in-distribution half of RATIO's in+out training; RATIO's out-distribution half is what AT adds).

Stages: ``train-at``, ``train-oe``, ``train-sgld``, ``train-softmax``, ``train-madry``, ``eval-l2`` (eps 0, 1, 2, 3,
5, 8), ``eval-linf`` (eps 0 and 0.1: one Linf column), ``attack-gap`` (the default attack of ``atebm eval-ood`` against
:data:`PROTOCOL` on the AT model's shared inputs), ``table``. The evaluation is :func:`atebm.ood.run_eval_ood` with
:data:`PROTOCOL` (per sample the worst of PGD with random restarts, ART APGD and ART Square); ``--models`` restricts an
eval stage to some models, written per model (a model whose evaluation folder holds ``ood.json`` is skipped), so two
processes can share the work; ``table`` merges them into
``benchmarks/results/ood_table4/table.json``. Every stage records its command, wall and CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from _stages import StageRecords, run_stages, say

RESULTS = Path(__file__).resolve().parent / "results" / "ood_table4"
MODELS = ("AT", "OE (K=0)", "SGLD EBM", "softmax (max prob)", "Madry L2 2.0 (max prob)")
#: The attack of every cell: E Tab. 4's strength (APGD 100 steps x 5 restarts, Square 5,000 queries) plus our PGD
#: 100 steps from the start point and 4 random starts; the per-sample worst case over all of them.
PROTOCOL: dict[str, Any] = {"attackers": ("pgd", "apgd", "square"), "pgd_steps": (100,), "pgd_random_restarts": 4,
                            "apgd_steps": 100, "apgd_restarts": 5, "square_steps": 5000}
FULL: dict[str, Any] = {
    "oe_iters": None,                       # None: as many as AT
    "sgld": {"max_iters": 1500, "batch_size": 32, "lr": 1e-3, "sgld_steps": 20, "sgld_step_size": 10.0,
             "sgld_noise_std": 0.005, "buffer_size": 10000, "reinit_prob": 0.05, "l2_reg": 0.1},
    "softmax": {"iterations": 2000}, "madry": {"iterations": 2000, "steps": 7, "step_size": 0.5},
    "n": 32, "n_in": 500, "eps_l2": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0), "eps_linf": (0.0, 0.1),
    "protocol": PROTOCOL,
}
SMOKE: dict[str, Any] = {
    "oe_iters": 4,
    "sgld": {"max_iters": 3, "batch_size": 16, "lr": 1e-3, "sgld_steps": 2, "sgld_step_size": 10.0,
             "sgld_noise_std": 0.005, "buffer_size": 64, "reinit_prob": 0.05, "l2_reg": 0.1},
    "softmax": {"iterations": 3}, "madry": {"iterations": 3, "steps": 2, "step_size": 1.5},
    "n": 4, "n_in": 12, "eps_l2": (0.0, 1.0), "eps_linf": (0.0, 0.1),
    "protocol": {"attackers": ("pgd", "apgd", "square"), "pgd_steps": (3,), "pgd_random_restarts": 1,
                 "apgd_steps": 3, "apgd_restarts": 1, "square_steps": 5},
}
SMOKE_TRAIN = {"max_iters": 6, "k_max": 2, "epochs_per_k": 0.02, "auc_window": 2, "log_every": 2, "ckpt_every": 3,
               "progress": False}
FASHION = "fashion?split=test"


class Table4(StageRecords):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args.work, RESULTS, args.smoke)
        if args.smoke:
            self.results = self.work / "results"
        self.budget = SMOKE if args.smoke else FULL
        self.at_run: Path | None = args.at
        self.models: tuple[str, ...] = tuple(args.models or MODELS)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _passes_of(run: Path) -> int:
    """Network passes of an AT run: K + 1 per iteration (the K ascent steps and the update), read from its log."""
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = [s for s in steps if "k" in s and "step" in s]
    total, last = 0, 0
    for s in steps:
        total += (s["step"] - last) * (s["k"] + 1)
        last = s["step"]
    return total


def stage_train_at(bench: Table4) -> dict[str, Any]:
    from atebm.demo import run_demo

    run = bench.at_run
    if run is None:
        run = bench.work / "demo"
        run_demo(run, device="cpu", smoke=bench.smoke, overwrite=True)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"run": str(run), "how": "atebm demo (the mnist preset, validation-FD selection)",
            "iterations": metrics["training"]["at"]["iterations"], "passes": _passes_of(run),
            "train_seconds": metrics["timings_s"]["train_at_s"], "selection": metrics.get("model_selection", {})
            .get("best_step"), "fd_photo_seeds": metrics["generation"]["rows"]["samples (photo seeds)"]["fd"]}


def stage_train_oe(bench: Table4) -> dict[str, Any]:
    from atebm.presets import PRESETS
    from atebm.training.run import run_training

    at = bench.read("train-at")
    iters = bench.budget["oe_iters"] or at["iterations"]
    overrides = {**(SMOKE_TRAIN if bench.smoke else {"progress": False}), "k_max": 0, "max_iters": iters,
                 "device": "cpu"}
    trainer = run_training(PRESETS["mnist"], bench.work / "oe", overrides, log=False)
    return {"iterations": trainer.step, "passes": trainer.step, "stop": trainer.stop_reason}


def stage_train_sgld(bench: Table4) -> dict[str, Any]:
    from atebm.baselines import EBMConfig, EBMTrainer
    from atebm.data import open_source
    from atebm.presets import PRESETS

    config = EBMConfig(model=PRESETS["mnist"].train["model"], seed=0, device="cpu", log_every=50,
                       ckpt_every=10 ** 9, **bench.budget["sgld"])
    noise = open_source("uniform?split=train&n=" + ("200" if bench.smoke else "20000"))
    trainer = EBMTrainer(config, open_source("mnist?split=train"), noise, out_dir=bench.work / "sgld",
                         extra={"clamp": (0.0, 1.0)})
    trainer.fit()
    trainer.save()
    return {"iterations": trainer.step, "passes": trainer.step * (config.sgld_steps + 1), "config": config.to_dict()}


def _train_softmax(bench: Table4, folder: str, **recipe: Any) -> dict[str, Any]:
    from atebm.gat import run_gat_robust_softmax
    from atebm.gat.softmax_classifier import load_classifier

    path = run_gat_robust_softmax(bench.work / folder, data="mnist", device="cpu", log=False,
                                  validate_every=max(1, recipe["iterations"] // 10), **recipe)
    meta = load_classifier(path).meta
    return {"file": str(path), "recipe": recipe, "passes": meta["training_forward_backward_passes"] // 64,
            "test_accuracy": meta["test_accuracy"], "parameters": meta["parameters"],
            "macs_per_forward": meta["macs_per_forward"], "train_cpu_seconds": meta["cpu_seconds"]}


def stage_train_softmax(bench: Table4) -> dict[str, Any]:
    return _train_softmax(bench, "softmax", norm="l2", eps=0.0, steps=0, step_size=0.1, warmup=0,
                          **bench.budget["softmax"])


def stage_train_madry(bench: Table4) -> dict[str, Any]:
    return _train_softmax(bench, "madry", norm="l2", eps=2.0, **bench.budget["madry"])


def _load(bench: Table4, name: str) -> nn.Module:
    from atebm import load_model
    from atebm.gat.softmax_classifier import load_classifier
    from atebm.ood import MaxSoftmaxScore

    if name == "AT":
        return load_model(bench.read("train-at")["run"]).eval()
    if name == "OE (K=0)":
        return load_model(bench.work / "oe").eval()
    if name == "SGLD EBM":
        return load_model(bench.work / "sgld").eval()
    stage = "train-softmax" if name.startswith("softmax") else "train-madry"
    return MaxSoftmaxScore(load_classifier(bench.read(stage)["file"])).eval()


def _evaluate(bench: Table4, norm: str) -> dict[str, Any]:
    from atebm.ood import run_eval_ood

    eps = bench.budget[f"eps_{norm}"]
    done = {}
    for name in bench.models:
        out = bench.work / f"eval-{norm}" / _slug(name)
        if (out / "ood.json").exists():
            say(f"      {norm} {name}: evaluated before ({out}; delete it to evaluate again)")
            continue
        say(f"      {norm} {name}: eps {list(eps)}")
        result = run_eval_ood({name: _load(bench, name)}, out, norm=norm, eps=eps, n=bench.budget["n"],
                              n_in=bench.budget["n_in"], suite_files={"fashion": FASHION}, report=False,
                              verbose=False, **bench.budget["protocol"])
        done[name] = {"folder": str(out), "seconds": result["models"][name]["seconds"]}
    return {"models": done}


def stage_eval_l2(bench: Table4) -> dict[str, Any]:
    return _evaluate(bench, "l2")


def stage_eval_linf(bench: Table4) -> dict[str, Any]:
    return _evaluate(bench, "linf")


def stage_table(bench: Table4) -> dict[str, Any]:
    """Merges the per-model evaluations: AUROC per set and eps, the mean over the embedded suites, Fashion-MNIST
    apart, and each model's training cost."""
    table: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    for norm in ("l2", "linf"):
        for name in MODELS:
            path = bench.work / f"eval-{norm}" / _slug(name) / "ood.json"
            if not path.exists():
                continue
            result = json.loads(path.read_text())
            entry = result["models"][name]
            sets = {s: v["auroc_by_eps"] for s, v in entry["sets"].items()}
            embedded = [s for s in sets if s != "fashion"]
            mean = {e: sum(sets[s][e] for s in embedded) / len(embedded) for e in sets[embedded[0]]}
            table.setdefault(name, {})[norm] = {"mean_auroc_embedded": mean, "fashion": sets.get("fashion"),
                                                "sets": sets, "failed_rows": result["protocol"].get("failed_rows"),
                                                "seconds": entry["seconds"]}
            protocol[norm] = {k: result["protocol"][k] for k in ("n_in", "n_ood", "eps", "attack")}
    training = {stage: bench.read(stage) for stage in ("train-at", "train-oe", "train-sgld", "train-softmax",
                                                       "train-madry") if bench.done(stage).exists()}
    return {"table": table, "protocol": protocol,
            "training": {k: {f: v.get(f) for f in ("iterations", "passes", "wall_seconds", "cpu_seconds",
                                                   "train_seconds", "train_cpu_seconds", "parameters",
                                                   "test_accuracy", "run") if f in v}
                         for k, v in training.items()}}


def stage_attack_gap(bench: Table4) -> dict[str, Any]:
    """How much the default attack of ``atebm eval-ood`` (the demo's ``ood.json``) overstates the AT model's
    worst-case AUROC: on the inputs both evaluations share (a suite counts when the first ``n`` clean scores of the
    demo's run equal this evaluation's: the same images), AUROC under the default attack minus AUROC under
    :data:`PROTOCOL`, and how many samples each attack scored higher."""
    import numpy as np

    from atebm.metrics import detection_metrics

    run = Path(bench.read("train-at")["run"])
    default = np.load(run / "ood_scores.npz")
    strong = np.load(bench.work / "eval-l2" / _slug("AT") / "ood_scores.npz")
    if default["AT/in"].shape != strong["AT/in"].shape or not np.allclose(default["AT/in"], strong["AT/in"]):
        return {"comparable": False, "max_gap": None,
                "why": f"the demo's evaluation and this one scored different in-distribution images ({run})"}
    in_scores = strong["AT/in"]
    suites: dict[str, Any] = {}
    for key in strong.files:
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != "eps=0" or parts[1] == "fashion":
            continue
        suite = parts[1]
        n = len(strong[key])
        if f"AT/{suite}/eps=0" not in default.files or not np.allclose(default[f"AT/{suite}/eps=0"][:n], strong[key]):
            continue
        rows = {}
        for eps in bench.budget["eps_l2"][1:]:
            k = f"AT/{suite}/eps={eps:g}"
            weak, hard = default[k][:n], strong[k]
            rows[f"{eps:g}"] = {
                "auroc_default": detection_metrics(in_scores, weak)["auroc"],
                "auroc_table4": detection_metrics(in_scores, hard)["auroc"],
                "samples_table4_higher": int((hard > weak + 1e-6).sum()),
                "samples_default_higher": int((weak > hard + 1e-6).sum())}
            rows[f"{eps:g}"]["gap"] = rows[f"{eps:g}"]["auroc_default"] - rows[f"{eps:g}"]["auroc_table4"]
        suites[suite] = rows
    gaps = [r["gap"] for rows in suites.values() for r in rows.values()]
    return {"comparable": True, "default_protocol": json.loads((run / "ood.json").read_text())["protocol"]["attack"],
            "n_per_suite": bench.budget["n"], "suites": suites, "max_gap": max(gaps) if gaps else None}


STAGE_FUNCTIONS = {"train-at": stage_train_at, "train-oe": stage_train_oe, "train-sgld": stage_train_sgld,
                   "train-softmax": stage_train_softmax, "train-madry": stage_train_madry,
                   "eval-l2": stage_eval_l2, "eval-linf": stage_eval_linf, "attack-gap": stage_attack_gap,
                   "table": stage_table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for models, evaluations and stage records")
    parser.add_argument("--stages", nargs="+", choices=list(STAGE_FUNCTIONS), default=list(STAGE_FUNCTIONS))
    parser.add_argument("--redo", nargs="+", choices=list(STAGE_FUNCTIONS), default=[])
    parser.add_argument("--at", type=Path, default=None, help="run folder of an `atebm demo` run (default: run one)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None, help="eval stages: only these models")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets; results go to WORK/results")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = Table4(args)
    if args.models and set(args.stages) - {"eval-l2", "eval-linf"}:
        parser.error("--models restricts the eval stages only; give --stages eval-l2 and/or eval-linf")
    # a model evaluated before is skipped inside the eval stages, so with --models they always run
    redo = [*args.redo, *(["eval-l2", "eval-linf"] if args.models else [])]
    run_stages(bench, STAGE_FUNCTIONS, args.stages, redo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
