"""The calibrated generative robust classifier vs the robust softmax on MNIST 5,000 (T Sec. 3.4: Tab. 3.14-3.17,
Fig. 3.7-3.11, Tab. 3.15), worst case over attackers per sample, next to the thesis's CIFAR-10 numbers.

    python benchmarks/gat_classify.py --stage calibrate --out-committee /tmp/gat/runs/mnist --inout RUN_INOUT --work W
    python benchmarks/gat_classify.py --stage softmax --work W
    python benchmarks/gat_classify.py --stage eval --inout RUN_INOUT --work W [--protocol full] [--n 200]
    python benchmarks/gat_classify.py --stage explain --inout RUN_INOUT --work W
    python benchmarks/gat_classify.py --stage write --inout RUN_INOUT --work W

Stages run one process at a time (one torch thread). ``calibrate`` copies the committee of
``atebm gat train --preset mnist`` (out-distribution AT only) into ``W/mnist`` and calibrates it there (``atebm gat
calibrate``), and reads the calibration of the ``mnist-inout`` committee (``atebm gat train --preset mnist-inout``
calibrates at the end); ``softmax`` trains the Madry baseline (``atebm gat robust-softmax``); ``eval`` (and
``eval-inout``) runs the accuracy-vs-eps grids of the classifiers
(:func:`atebm.gat.classifier_robustness.accuracy_grid`, the per-sample worst case over the attack cascade through
:mod:`atebm.attacks`), every model with the same protocol: ``--protocol`` names a
:data:`~atebm.gat.classifier_robustness.CLASSIFY_PROTOCOLS` entry (default ``full``: ART APGD-CE/DLR and Square
with 5,000 queries at every grid point, Linf 0-0.4 and L2 0-3) on ``--n`` stratified test digits;
``explain`` the samples / counterfactuals / attributions / FD; ``write`` assembles
``benchmarks/results/gat/classify.json``, the plots and ``classify_tables.md``, each table with its protocol. Each
stage records its CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import torch

from atebm.gat.classifier_robustness import describe_protocol

RESULTS = Path(__file__).resolve().parent / "results" / "gat"
TRAIN_JSON = "gat_train.json"

#: Defaults of ``--protocol`` and ``--n`` (the thesis's protocol: the full CIFAR-10 test set, PGD with many steps,
#: Tramer et al.'s attack).
PROTOCOL, N_DEFAULT = "full", 200
INOUT_ITERATIONS = 90
INOUT_RAMP = (0.05, 0.1, 0.15)
MADRY = dict(norm="linf", eps=0.3, steps=7, step_size=0.1, iterations=1000, warmup=300)
THESIS = {"table_3_14": {"data": "CIFAR-10", "threat": "L2 eps 0.5",
                         "generative": {"clean": 0.8812, "robust": 0.7227},
                         "softmax_robust": {"clean": 0.9083, "robust": 0.7017}},
          "figure_3_7": "the generative classifier overtakes the softmax robust classifier at moderate test eps and "
                        "the gap grows with eps (CIFAR-10, L2)",
          "table_3_16_17": "calibration changes CIFAR-10 accuracy little; the learned c_k are tiny next to d_k"}


def _stage_file(work: Path, stage: str) -> Path:
    return work / f"stage_{stage}.json"


def _save(work: Path, stage: str, payload: dict[str, Any], cpu_start: float, command: str) -> None:
    payload["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    payload["command"] = command
    work.mkdir(parents=True, exist_ok=True)
    _stage_file(work, stage).write_text(json.dumps(payload, indent=1))
    print(f"{stage}: {payload['cpu_seconds']:.0f} CPU-s -> {_stage_file(work, stage)}", file=sys.stderr)


def _models(args: argparse.Namespace, names: tuple[str, ...] | None = None) -> dict[str, torch.nn.Module]:
    """The evaluated models (``names``; default: all): the two committees, the Madry softmax and the ``--softmax``
    checkpoints."""
    import atebm.gat as gat
    from atebm.gat.softmax_classifier import load_classifier

    extra = dict(item.split("=", 1) for item in args.softmax)
    names = names or ("generative_out", "generative_inout", "robust_softmax", *extra)
    models: dict[str, torch.nn.Module] = {name: load_classifier(path) for name, path in extra.items() if name in names}
    if "generative_out" in names:
        models["generative_out"] = gat.load(args.work / "mnist")
    if "generative_inout" in names and (args.inout / "committee.pt").exists():
        models["generative_inout"] = gat.load(args.inout)
    if "robust_softmax" in names:
        models["robust_softmax"] = load_classifier(args.work / "softmax" / "robust_softmax.pt")
    return models


def _points(config: Any, norms: list[str], points: list[float] | None) -> Any:
    """``config`` with its grids of ``norms`` cut to ``points`` (``--points``; None: the whole grids), each point
    having to be on one of them: a long grid measured where it matters first, the rest listed as missing."""
    if not points:
        return config
    kept = {norm: tuple(e for e in config.grid(norm) if any(math.isclose(e, p) for p in points)) for norm in norms}
    stray = [p for p in points if not any(math.isclose(p, e) for g in kept.values() for e in g)]
    if stray:
        raise SystemExit(f"--points {stray} are not on the {'/'.join(norms)} grid(s) of the protocol")
    return config.replace(**{f"{norm}_eps": grid for norm, grid in kept.items()})


def _protocol(args: argparse.Namespace) -> Any:
    """The ClassifyEvalConfig of ``--protocol`` on ``--n`` test digits, the same for every evaluated model."""
    from atebm.gat.classifier_robustness import CLASSIFY_PROTOCOLS

    return CLASSIFY_PROTOCOLS[args.protocol].replace(n=args.n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True,
                        choices=("calibrate", "softmax", "eval", "explain", "inout", "eval-inout", "write", "merge",
                                 "rename"))
    parser.add_argument("--out-committee", type=Path, default=Path("/tmp/gat/runs/mnist"),
                        help="run folder of `atebm gat train --preset mnist` (read only; copied)")
    parser.add_argument("--inout", type=Path, required=True, help="run folder of `--preset mnist-inout`")
    parser.add_argument("--work", type=Path, required=True, help="working folder of this benchmark")
    parser.add_argument("--protocol", choices=("mnist", "full"), default=PROTOCOL,
                        help="attack protocol of the eval stages (default: %(default)s)")
    parser.add_argument("--n", type=int, default=N_DEFAULT,
                        help="stratified test digits of the eval stages (default: %(default)s)")
    parser.add_argument("--name", default="classify",
                        help="stem of the files --stage write puts in benchmarks/results/gat (default: %(default)s)")
    parser.add_argument("--softmax", nargs="+", default=[], metavar="NAME=PATH",
                        help="more softmax checkpoints of `atebm gat robust-softmax` to evaluate, each under NAME")
    parser.add_argument("--models", nargs="+", default=None,
                        help="models of the eval and merge stages (generative_out, generative_inout, robust_softmax "
                             "or a --softmax NAME; default: all); a subset only fills W/cells, which --stage write "
                             "assembles")
    parser.add_argument("--points", nargs="+", type=float, default=None,
                        help="eval stage: only these eps of the --norms grids (the rest is recorded as missing)")
    parser.add_argument("--norms", nargs="+", choices=("linf", "l2"), default=["linf", "l2"],
                        help="grids of the eval stage; one norm alone writes stage eval_NORM, so that the two grids "
                             "can run as two processes, merged by --stage write (default: both)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "python benchmarks/gat_classify.py " + " ".join(sys.argv[1:])
    cpu_start = time.process_time()
    work: Path = args.work
    if args.stage == "calibrate":
        from atebm.gat.calibration import run_gat_calibrate

        target = work / "mnist"
        target.mkdir(parents=True, exist_ok=True)
        for name in ("committee.pt", "classifier.pt", "gat_train.json"):
            shutil.copy2(args.out_committee / name, target / name)
        out_record = run_gat_calibrate(target)
        records = {"generative_out": out_record}
        if (args.inout / "committee.pt").exists():
            records["generative_inout"] = run_gat_calibrate(args.inout)
        _save(work, "calibrate", records, cpu_start, command)
    elif args.stage == "softmax":
        from atebm.gat.pipeline import run_gat_robust_softmax

        run_gat_robust_softmax(work / "softmax", **MADRY)  # type: ignore[arg-type]
        from atebm.gat.softmax_classifier import load_classifier

        _save(work, "softmax", {"meta": load_classifier(work / "softmax" / "robust_softmax.pt").meta}, cpu_start,
              command)
    elif args.stage == "eval":
        from atebm.gat.classifier_robustness import accuracy_grid
        from atebm.gat.data import labelled_splits
        from atebm.gat.robust_training import count_macs, count_parameters

        splits = labelled_splits("mnist")
        config = _protocol(args)
        measured = _points(config, args.norms, args.points)
        models = _models(args, tuple(args.models or ()))
        assert splits.test.y is not None
        grid = accuracy_grid(models, splits.test.x, splits.test.y, config=measured, norms=args.norms,
                             progress=lambda s: print(s, file=sys.stderr, flush=True),
                             cells=CellFiles(work / "cells", config.to_dict()))
        x1 = splits.test.x[:1]
        grid["capacity"] = {n: {"parameters": count_parameters(m), "macs_per_forward": count_macs(m, x1)}
                            for n, m in models.items()}
        grid["config"] = config.to_dict()
        grid["missing"] = [f"{name}/{norm}/{eps:g}" for name in models for norm in args.norms
                           for eps in config.grid(norm) if eps not in measured.grid(norm)]
        stage = "eval" if len(args.norms) == 2 else f"eval_{args.norms[0]}"
        _save(work, stage if not args.models else f"{stage}_{'+'.join(sorted(models))}", grid, cpu_start, command)
    elif args.stage == "inout":
        import atebm.gat as gat
        from atebm.gat.calibration import run_gat_calibrate
        from atebm.gat.data import labelled_splits
        from atebm.gat.robust_training import finetune_inout

        splits = labelled_splits("mnist")
        tuned = finetune_inout(gat.load(work / "mnist"), splits, iterations=INOUT_ITERATIONS,
                               eps_in_schedule=INOUT_RAMP, log=lambda s: print(s, file=sys.stderr, flush=True))
        target = work / "inout_ft"
        target.mkdir(parents=True, exist_ok=True)
        gat.save_committee(target, tuned)
        record = run_gat_calibrate(target)
        _save(work, "inout", {"finetune": tuned.meta["finetune"], "iterations": INOUT_ITERATIONS,
                              "eps_in_schedule": INOUT_RAMP,
                              "calibration": record}, cpu_start, command)
    elif args.stage == "eval-inout":
        import atebm.gat as gat
        from atebm.gat.classifier_robustness import accuracy_grid
        from atebm.gat.data import labelled_splits

        splits = labelled_splits("mnist")
        config = _protocol(args)
        assert splits.test.y is not None
        grid = accuracy_grid({"generative_inout_ft": gat.load(work / "inout_ft")}, splits.test.x, splits.test.y,
                             config=config, progress=lambda s: print(s, file=sys.stderr, flush=True))
        grid["config"] = config.to_dict()
        _save(work, "eval_inout", grid, cpu_start, command)
    elif args.stage == "explain":
        from atebm.gat.data import labelled_splits
        from atebm.gat.explain import explain_models
        from atebm.gat.softmax_classifier import load_classifier

        splits = labelled_splits("mnist")
        models = _models(args)
        models["plain_softmax"] = load_classifier(work / "mnist" / "classifier.pt")
        assert splits.train.y is not None and splits.test.y is not None
        result = explain_models(models, splits.train.x, splits.train.y, splits.test.x, splits.test.y,
                                RESULTS / "classify_explain", per_class=10, gen_steps=60, cf_n=100, cf_steps=40,
                                ig_n=8, ig_steps=64, progress=lambda s: print(s, file=sys.stderr, flush=True))
        _save(work, "explain", result, cpu_start, command)
    elif args.stage == "merge":
        merge(args)
    elif args.stage == "rename":
        rename(args)
    else:
        write(args)


def _inout_attempt(run: Path) -> dict[str, Any]:
    """What the ``mnist-inout`` run got to: per detector its summary and training-log trajectory."""
    from atebm.gat.robust_training import resolve_preset

    preset = resolve_preset("mnist-inout")
    detectors = []
    for folder in sorted(run.glob("detector_*")):
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()] \
            if (folder / "log.jsonl").exists() else []
        done = json.loads((folder / "done.json").read_text()) if (folder / "done.json").exists() else None
        detectors.append({"detector": folder.name, "finished": done is not None,
                          "iterations": done["iterations"] if done else (log[-1]["step"] if log else 0),
                          "cpu_seconds": done["cpu_seconds"] if done else None,
                          "selected": done["selection"] if done else None,
                          "log": [{k: row.get(k) for k in ("step", "loss", "auc_adv", "val_auc_adv")} for row in log]})
    return {"preset": preset.name, "description": preset.description, "committee_finished": (run / "committee.pt")
            .exists(), "detectors": detectors}


def write(args: argparse.Namespace) -> None:
    from atebm.gat.pipeline import plot_accuracy_grid

    work: Path = args.work
    names = ("calibrate", "softmax", "eval", "explain", "inout_warm100", "inout", "eval_inout")
    stages = {s: json.loads(_stage_file(work, s).read_text()) for s in names if _stage_file(work, s).exists()}
    if "eval" not in stages and _stage_file(work, "eval_linf").exists() and _stage_file(work, "eval_l2").exists():
        stages["eval"] = _merged_norms(*(json.loads(_stage_file(work, f"eval_{n}").read_text()) for n in NORMS))
    if "eval" not in stages and (work / "cells" / "config.json").exists():
        stages["eval"] = _grid_from_cells(work, _models(args))
    out_train = json.loads((work / "mnist" / "gat_train.json").read_text())
    inout = _inout_attempt(args.inout)
    result: dict[str, Any] = {
        "thesis": THESIS,
        "reductions": {
            "data": "MNIST 5,000 (3,500 train / 500 val / 1,000 test) instead of CIFAR-10 50,000 / 10,000",
            "detectors": "T Tab. 3.1 network at half width (conv 16 - conv 32 - fc 256), 500 iterations of 32 + 32 "
                         "(+ 90 of in+out AT for generative_inout_ft) instead of ResNet18Thinner, 2,000 epochs",
            "robust_softmax": f"{MADRY['iterations']} iterations of 64, {MADRY['steps']}-step PGD (Madry: 100k "
                              "iterations of 50, 40 steps)",
            "evaluation": _evaluation(stages),
            "budget": "about 60 CPU-minutes (one thread) for all training and evaluation, on a shared 2-core machine",
        },
        "committees": {
            "generative_out": {"preset": out_train["preset"], "description": out_train["description"],
                               "detector_cpu_seconds": round(sum(d["cpu_seconds"] for d in out_train["detectors"]), 1),
                               "iterations": [d["iterations"] for d in out_train["detectors"]]},
            "generative_inout": inout},
        **stages,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    if "eval" in stages:
        models = dict(stages["eval"]["models"])
        models.update((stages.get("eval_inout") or {}).get("models", {}))
        plot_accuracy_grid({"norms": ["linf", "l2"], "models": models}, RESULTS / f"{args.name}_accuracy_vs_eps.png")
    for name, folder in (("generative_out", work / "mnist"), ("generative_inout", args.inout)):
        hist = folder / "calibration_histograms.png"
        if hist.exists():
            shutil.copy2(hist, RESULTS / f"{args.name}_calibration_histograms_{name}.png")
    (RESULTS / f"{args.name}_tables.md").write_text(tables(result))
    print(f"wrote {RESULTS / args.name}.json and {args.name}_tables.md", file=sys.stderr)


NORMS = ("linf", "l2")


def merge(args: argparse.Namespace) -> None:
    """Adds the grids of ``--stage eval --models M --norms linf`` and ``... l2`` (W/stage_eval_NORM_M.json, ``M`` the
    sorted names joined by +) to the committed ``benchmarks/results/gat/NAME.json`` after checking that they ran on
    the same test digits with the same protocol as the models already there, with the training record and
    calibration of the ``--inout`` committee when ``generative_inout`` is among them; then rewrites the file's
    figure and tables."""
    path = RESULTS / f"{args.name}.json"
    result = json.loads(path.read_text())
    evaluation = result["eval"]
    names = sorted(args.models or ())
    if not names:
        raise SystemExit("--stage merge needs --models")
    for norm in args.norms:
        stage_path = _stage_file(args.work, f"eval_{norm}_{'+'.join(names)}")
        stage = json.loads(stage_path.read_text())
        if stage["subset"] != evaluation["subset"] or stage["config"] != evaluation["config"]:
            raise ValueError(f"{stage_path} ran on other test digits or another protocol than {path}")
        for name in names:
            evaluation["models"].setdefault(name, {})[norm] = stage["models"][name][norm]
            evaluation["capacity"][name] = stage["capacity"][name]
        evaluation.setdefault("added", []).append({"models": names, "norm": norm, "cpu_seconds": stage["cpu_seconds"],
                                                   "command": stage["command"]})
        measured = {f"{name}/{norm}/{row['eps']:g}" for name in names for row in stage["models"][name][norm]}
        missing = [k for k in evaluation.get("missing", []) if k not in measured] + stage.get("missing", [])
        evaluation["missing"] = list(dict.fromkeys(missing))
    softmax_paths = dict(item.split("=", 1) for item in args.softmax)
    for name in names:
        if name in softmax_paths:
            from atebm.gat.softmax_classifier import load_classifier

            meta = load_classifier(softmax_paths[name]).meta
            result.setdefault("softmax_baselines", {})[name] = {
                "path": softmax_paths[name], "recipe": meta["recipe"], "cpu_seconds": meta["cpu_seconds"],
                "selected_iteration": meta.get("selected_iteration"), "test_accuracy": meta.get("test_accuracy")}
    if "generative_inout" in names:
        trained = json.loads((args.inout / TRAIN_JSON).read_text())
        result["committees"]["generative_inout"] = {
            "preset": trained["preset"], "description": trained["description"], "committee_finished": True,
            "classifier_train_seconds": trained["classifier_result"].get("train_seconds"),
            "wall_seconds": trained.get("wall_seconds_this_call"),
            "detector_cpu_seconds": round(sum(d["cpu_seconds"] for d in trained["detectors"]), 1),
            "detector_wall_seconds": trained["detector_train_seconds"], "workers": trained["workers"],
            "iterations": [d["iterations"] for d in trained["detectors"]],
            "selected_val_auc": [d["selection"]["value"] for d in trained["detectors"]],
            "plateau_restarts": [d["plateau_restarts"] for d in trained["detectors"]]}
        result["calibrate"]["generative_inout"] = trained["calibration"]
    _write_committed(path, result)
    print(f"merged {', '.join(names)} into {path}", file=sys.stderr)


def _write_committed(path: Path, result: dict[str, Any]) -> None:
    """Writes the committed grid ``path`` and, beside it, its accuracy-vs-eps figure (protocol in the caption) and
    its tables."""
    from atebm.gat.pipeline import plot_accuracy_grid

    evaluation = result["eval"]
    path.write_text(json.dumps(result, indent=1))
    plot_accuracy_grid({"norms": list(NORMS), "models": evaluation["models"]},
                       path.with_name(f"{path.stem}_accuracy_vs_eps.png"),
                       caption=f"{evaluation['config']['n']} stratified MNIST 5,000 test digits, the same for every "
                               f"model; " + describe_protocol(evaluation["config"]))
    path.with_name(f"{path.stem}_tables.md").write_text(tables(result))


def rename(args: argparse.Namespace) -> None:
    """Renames a model of the committed ``NAME.json`` (``--models OLD NEW``) in every record that names it (its grid,
    capacity, training record, calibration, missing points and merge records), so that a retrained model can be merged
    under the old name beside its predecessor; then rewrites the figure and tables."""
    if len(args.models or ()) != 2:
        raise SystemExit("--stage rename needs --models OLD NEW")
    old, new = args.models
    path = RESULTS / f"{args.name}.json"
    result = json.loads(path.read_text())
    evaluation = result["eval"]
    if old not in evaluation["models"] or new in evaluation["models"]:
        raise SystemExit(f"{path}: {old!r} must be a model of the grid and {new!r} not yet one")
    records = (evaluation["models"], evaluation["capacity"], result.get("committees", {}), result.get("calibrate", {}))
    for table in records:
        if old in table:
            table[new] = table.pop(old)
    evaluation["missing"] = [new + key[len(old):] if key.startswith(f"{old}/") else key
                             for key in evaluation.get("missing", [])]
    for record in evaluation.get("added", []):
        record["models"] = [new if name == old else name for name in record["models"]]
    evaluation.setdefault("renamed", []).append({"from": old, "to": new})
    _write_committed(path, result)
    print(f"renamed {old} to {new} in {path}", file=sys.stderr)


class CellFiles(MutableMapping[str, dict[str, Any]]):
    """Grid points measured so far, one JSON file each in ``folder`` (written when measured), so that an eval stage
    stopped part-way resumes at the next point; ``folder/config.json`` holds the protocol, and a folder written with
    another protocol is refused."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        stamp = folder / "config.json"
        config = json.loads(json.dumps(config))
        if stamp.exists() and json.loads(stamp.read_text()) != config:
            raise ValueError(f"{folder} holds grid points of another protocol; remove it or choose another --work")
        stamp.write_text(json.dumps(config, indent=1))

    def _path(self, key: str) -> Path:
        return self.folder / (key.replace("/", "__") + ".json")

    def __getitem__(self, key: str) -> dict[str, Any]:
        if not self._path(key).exists():
            raise KeyError(key)
        return json.loads(self._path(key).read_text())

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        tmp = self._path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps(value, indent=1))
        tmp.replace(self._path(key))

    def __delitem__(self, key: str) -> None:
        self._path(key).unlink()

    def __iter__(self) -> Iterator[str]:
        return (p.stem.replace("__", "/") for p in self.folder.glob("*.json") if p.name != "config.json")

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _grid_from_cells(work: Path, models: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """The eval stage assembled from the grid points in ``W/cells`` when the eval processes have not finished: the
    measured points, and under ``missing`` the points of the protocol's grids not measured yet."""
    from atebm.gat.classifier_robustness import ClassifyEvalConfig
    from atebm.gat.robust_training import count_macs, count_parameters

    config_dict = json.loads((work / "cells" / "config.json").read_text())
    config = ClassifyEvalConfig.from_dict(config_dict)
    cells = CellFiles(work / "cells", config_dict)
    grid: dict[str, Any] = {"models": {}, "missing": [], "config": config_dict,
                            "cpu_seconds": None, "command": "assembled from W/cells by --stage write"}
    x1 = torch.zeros(1, 1, 28, 28)
    for name in models:
        for norm in NORMS:
            for eps in config.grid(norm):
                key = f"{name}/{norm}/{eps:g}"
                if key in cells:
                    grid["models"].setdefault(name, {}).setdefault(norm, []).append(cells[key])
                else:
                    grid["missing"].append(key)
    grid["capacity"] = {n: {"parameters": count_parameters(m), "macs_per_forward": count_macs(m, x1)}
                        for n, m in models.items()}
    return grid


def _merged_norms(linf: dict[str, Any], l2: dict[str, Any]) -> dict[str, Any]:
    """One eval stage from the two single-norm ones (same subset, protocol and models; CPU seconds added)."""
    if linf["subset"] != l2["subset"] or linf["config"] != l2["config"] or set(linf["models"]) != set(l2["models"]):
        raise ValueError("stage_eval_linf.json and stage_eval_l2.json were run on other inputs, protocols or models")
    return {**linf, "models": {name: {**rows, **l2["models"][name]} for name, rows in linf["models"].items()},
            "cpu_seconds": round(linf["cpu_seconds"] + l2["cpu_seconds"], 1),
            "command": f"{linf['command']} && {l2['command']}"}


def _evaluation(stages: dict[str, Any]) -> str:
    """One line on the protocol of the eval stages (thesis: 10,000 test images)."""
    configs = [stages[s]["config"] for s in ("eval", "eval_inout") if s in stages]
    if not configs:
        return "not run"
    if any(c != configs[0] for c in configs):
        return "the eval stages ran with different protocols: compare their numbers with care"
    return f"{configs[0]['n']} stratified test digits (thesis: 10,000); " + describe_protocol(configs[0])


def tables(result: dict[str, Any]) -> str:
    """Markdown tables of the measured numbers (pasted into README_classify.md)."""
    lines: list[str] = []
    cal = dict(result.get("calibrate", {}))
    if isinstance((result.get("inout") or {}).get("calibration"), dict):
        cal["generative_inout_ft"] = result["inout"]["calibration"]
    if cal:
        lines += ["### Calibration (T Tab. 3.16-3.17 analogue; fit on the validation split, 500 digits)", "",
                  "| committee | val acc. c=0 | val acc. calibrated | test acc. c=0 | test acc. calibrated | c_k |",
                  "|---|---|---|---|---|---|"]
        for name, r in cal.items():
            if not isinstance(r, dict) or "offsets" not in r:
                continue
            lines.append(f"| {name} | {r['fit']['before']['accuracy']:.3f} | {r['fit']['after']['accuracy']:.3f} | "
                         f"{r['eval']['before']['accuracy']:.3f} | {r['eval']['after']['accuracy']:.3f} | "
                         + " ".join(f"{c:+.2f}" for c in r["offsets"]) + " |")
        lines.append("")
    ev = dict(result.get("eval") or {})
    if ev and result.get("eval_inout"):
        ev["models"] = {**ev["models"], **result["eval_inout"]["models"]}
    if ev:
        protocols: list[dict[str, Any]] = []
        for stage in (result.get("eval"), result.get("eval_inout")):
            if stage and stage["config"] not in protocols:
                protocols.append(stage["config"])
        lines += ["### Accuracy vs test eps (worst case over attackers per sample)", "",
                  *(f"Protocol: n = {p['n']}; {describe_protocol(p)}." for p in protocols),
                  "",
                  "| model | norm | eps | clean | first attacker alone | worst case | broken, in cascade order |",
                  "|---|---|---|---|---|---|---|"]
        for name, per_norm in ev["models"].items():
            for norm, rows in per_norm.items():
                for r in rows:
                    first = next(iter(r["attackers"].items()), None)
                    own = f"{first[0]} {first[1]['own_robust_accuracy']:.3f}" if first else "-"
                    broke = ", ".join(f"{a} {v['broke']}/{v['attacked']}" for a, v in r["attackers"].items())
                    lines.append(f"| {name} | {norm} | {r['eps']:g} | {r['clean_accuracy']:.3f} | {own} | "
                                 f"{r['robust_accuracy']:.3f} | {broke or '-'} |")
        if ev.get("missing"):
            lines += ["", f"Not measured yet (the eval processes were stopped; `--stage eval` resumes them): "
                          f"{', '.join(ev['missing'])}."]
        lines += ["", "| model | parameters | MACs per forward pass |", "|---|---|---|"]
        lines += [f"| {n} | {c['parameters']:,} | {c['macs_per_forward']:,} |" for n, c in ev["capacity"].items()]
        lines.append("")
    ex = result.get("explain")
    if ex:
        lines += ["### Samples, counterfactuals, attributions (T Tab. 3.15 analogue; FD vs the 1,000 test digits)", "",
                  "| model | samples FD | digit net agrees with seed class | counterfactual FD | reaches target "
                  "| digit net sees target | counterfactual mean L2 | IG completeness gap |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, m in ex["models"].items():
            lines.append(f"| {name} | {m['samples_fd']:.1f} | {m['samples_digit_net_agrees']:.2f} | "
                         f"{m['counterfactual_fd']:.1f} | {m['counterfactual_success']:.2f} | "
                         f"{m['counterfactual_digit_net_target']:.2f} | {m['counterfactual_mean_l2']:.2f} | "
                         f"{m['ig_completeness_max_abs_gap']:.2g} |")
        lines += ["", f"FD of the Gaussian seeds themselves: {ex['seeds_fd']:.1f}; IG method: "
                  f"{next(iter(ex['models'].values()))['ig_method']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
