"""The ``atebm gat train`` and ``atebm gat eval`` pipelines as library functions (same defaults as the CLI).

A committee run folder holds::

    classifier.pt        the softmax classifier f (integrated detection)
    detector_k/          one trainer run per class: model.pt (best-validation weights), checkpoint.pt (resume),
                         log.jsonl, config.json, done.json (summary once finished)
    committee.pt         the K selected detectors and the offsets c_k, read by atebm.gat.load
    gat_train.json       preset, data, splits, timings
    report.html          the run report (training summary; evaluation sections when evaluated here)
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..report import Report
from ..training import resolve_device, write_json
from .classifier import load_classifier, save_classifier, train_softmax_classifier
from .committee import COMMITTEE_FILE, Committee, load_committee
from .data import labelled_splits
from .evaluate import EVAL_PROTOCOLS, THESIS, GatEvalConfig, evaluate_committee
from .presets import GatPreset, detector_model_spec, get_gat_preset
from .training import assemble_committee, detector_dir, train_detectors

__all__ = ["run_gat_train", "run_gat_eval", "CLASSIFIER_FILE", "EVAL_JSON", "TRAIN_JSON", "EVAL_SECTIONS",
           "report_evaluation"]

CLASSIFIER_FILE = "classifier.pt"
TRAIN_JSON = "gat_train.json"
EVAL_JSON = "gat_eval.json"
EVAL_SECTIONS = ("clean", "auc", "detection", "independent", "distortion")


def _say(log: bool) -> Callable[[str], None]:
    return (lambda text: print(text, file=sys.stderr, flush=True)) if log else (lambda text: None)


def run_gat_train(out_dir: str | Path, *, preset: str | GatPreset = "mnist", data: str | None = None,
                  resume: bool = False, device: str = "auto", classes: Sequence[int] | None = None, seed: int = 0,
                  workers: int = 1, overrides: dict[str, Any] | None = None, log: bool = True,
                  report: bool = True) -> Committee | None:
    """Trains the softmax classifier and the detector committee of ``preset`` on ``data`` (default: the preset's
    source) into ``out_dir``, ``workers`` detectors at a time (see :func:`~atebm.gat.train_detectors`); returns
    the committee (None while some detectors are still untrained, e.g. when only ``classes`` were asked for)."""
    chosen = get_gat_preset(preset) if isinstance(preset, str) else preset
    out = Path(out_dir)
    say = _say(log)
    started = [p for p in [out / COMMITTEE_FILE, out / CLASSIFIER_FILE, *out.glob("detector_*")] if p.exists()]
    if started and not resume:
        raise ValueError(f"{out} already holds a committee run ({started[0].name}); pass --resume to continue it "
                         "or choose another --out")
    source = data or chosen.data
    overrides = dict(overrides or {})
    overrides.setdefault("device", device)
    start = time.perf_counter()
    splits = labelled_splits(source, chosen.size, chosen.channels)
    say(f"GAT preset {chosen.name!r}: {source}, train {len(splits.train)} / val {len(splits.val)} ({splits.val_from})"
        f" / test {len(splits.test)}, {chosen.norm} eps {chosen.eps:g}, out {out}")
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"preset": chosen.name, "description": chosen.description, "data": source,
                            "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
                                       "val_from": splits.val_from},
                            "norm": chosen.norm, "eps": chosen.eps, "train_attack": chosen.train_attack,
                            "detector_config": chosen.detector_config(**overrides).to_dict(),
                            "validation": dict(chosen.validation), "classifier": dict(chosen.classifier),
                            "seed": seed, "threads": torch.get_num_threads(), "workers": workers}
    classifier_path = out / CLASSIFIER_FILE
    if not classifier_path.exists():
        c = chosen.classifier
        spec = detector_model_spec(chosen.size, chosen.channels, widths=tuple(c.get("widths", (32, 64))),
                                   hidden=int(c.get("hidden", 1024)), out_dim=splits.num_classes)
        classifier = train_softmax_classifier(splits, epochs=int(c["epochs"]), batch_size=int(c["batch_size"]),
                                              lr=float(c["lr"]), seed=seed, spec=spec, device=str(overrides["device"]))
        save_classifier(classifier_path, classifier)
        say(f"classifier f: test accuracy {classifier.meta['test_accuracy']:.4f} "
            f"({classifier.meta['train_seconds']:.0f} s)")
    info["classifier_result"] = load_classifier(classifier_path).meta
    summaries = train_detectors(chosen, splits, out, classes=classes, resume=resume, overrides=overrides, seed=seed,
                                workers=workers, log=log)
    info["detectors"] = [{k: v for k, v in s.items() if k != "validations"} for s in summaries]
    info["wall_seconds_this_call"] = round(time.perf_counter() - start, 1)
    done = [k for k in range(splits.num_classes) if (detector_dir(out, k) / "done.json").exists()]
    committee = None
    if len(done) == splits.num_classes:
        meta = {"preset": chosen.name, "data": source, "size": chosen.size, "channels": chosen.channels,
                "norm": chosen.norm, "eps": chosen.eps, "num_classes": splits.num_classes}
        committee = assemble_committee(out, splits.num_classes, meta)
        all_done = [json.loads((detector_dir(out, k) / "done.json").read_text()) for k in done]
        info["detector_train_seconds"] = round(sum(s["train_seconds"] for s in all_done), 1)
        say(f"committee: {out / COMMITTEE_FILE} ({info['detector_train_seconds']:.0f} s of detector training)")
    write_json(out / TRAIN_JSON, info)
    if report and committee is not None:
        _report_training(out, info)
    return committee


def _report_training(out: Path, info: dict[str, Any]) -> None:
    report = Report.open(out, title=f"GAT committee ({info['preset']})")
    rows = []
    for s in info["detectors"]:
        sel = s["selection"]
        rows.append([f"d_{s['class']}", s["iterations"], s["train_seconds"], sel.get("step"),
                     f"{sel.get('value', float('nan')):.4f}" if "value" in sel else "last"])
    protocol = {"data": info["data"], "splits": info["splits"], "threat model": f"{info['norm']} eps {info['eps']}",
                "training attack": f"{info['detector_config']['k_max']} x {info['detector_config']['step_size']} "
                                   f"{info['train_attack']} steps, random start",
                "validation attack": info["validation"], "threads": info["threads"]}
    report.add_table("gat/train", "Detector committee: training (best validation AUC per class)",
                     ["detector", "iterations", "train s", "selected step", "val adv. AUC"], rows, protocol=protocol,
                     note=f"softmax classifier f: test accuracy {info['classifier_result']['test_accuracy']:.4f}")
    report.save()


def _load_eval_state(path: Path, config: GatEvalConfig, checkpoint: str) -> dict[str, Any]:
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    if state.get("config") != json.loads(json.dumps(config.to_dict())) or state.get("checkpoint") != checkpoint:
        raise ValueError(f"{path} was written with another protocol or checkpoint; choose another --out or remove it")
    return state


def run_gat_eval(checkpoint: str | Path, out_dir: str | Path, *, protocol: str | GatEvalConfig = "mnist",
                 sections: Sequence[str] | None = None, data: str | None = None, device: str = "cpu",
                 resume: bool = False, log: bool = True, report: bool = True) -> dict[str, Any]:
    """Evaluates the committee (and its classifier, when the run folder has one) on the test split of its data
    (or ``data``) with ``protocol`` (:data:`~atebm.gat.evaluate.EVAL_PROTOCOLS` name or a config); writes
    ``out_dir/gat_eval.json`` after every section (``resume`` skips the sections already there) and the report
    sections. Returns the result dict."""
    config = EVAL_PROTOCOLS[protocol] if isinstance(protocol, str) and protocol in EVAL_PROTOCOLS else protocol
    if not isinstance(config, GatEvalConfig):
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose from {', '.join(EVAL_PROTOCOLS)}")
    wanted = list(sections or EVAL_SECTIONS)
    bad = sorted(set(wanted) - set(EVAL_SECTIONS))
    if bad:
        raise ValueError(f"unknown sections {bad}; choose from {', '.join(EVAL_SECTIONS)}")
    say = _say(log)
    run_device = resolve_device(device)
    committee = load_committee(checkpoint, device=run_device)
    folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    classifier = load_classifier(folder / CLASSIFIER_FILE, device=run_device) \
        if (folder / CLASSIFIER_FILE).exists() else None
    meta = committee.meta
    source = data or meta.get("data")
    if not source:
        raise ValueError("the committee names no data source; pass data=... (--data)")
    splits = labelled_splits(source, int(meta.get("size", 28)), int(meta.get("channels", 1)))
    x, y = splits.test.x, splits.test.y
    assert y is not None
    out = Path(out_dir)
    path = out / EVAL_JSON
    state = _load_eval_state(path, config, str(checkpoint)) if resume else {}
    if path.exists() and not resume:
        raise ValueError(f"{path} exists: pass --resume to add the missing sections or choose another --out")
    state.update({"checkpoint": str(checkpoint), "data": source, "test": len(x), "config": config.to_dict(),
                  "committee": {k: v for k, v in meta.items() if k != "path"},
                  "classifier": classifier.meta if classifier is not None else None, "thesis": _thesis_json()})
    norm, eps = str(meta["norm"]), float(meta["eps"])
    for section in wanted:
        if section in state:
            say(f"{section}: already in {path}, skipped")
            continue
        start = time.perf_counter()
        result = evaluate_committee(committee, classifier, x, y, config=config, norm=norm, eps=eps,
                                    sections=[section], detection=state.get("detection"), progress=say)
        block = result.get(section)
        if isinstance(block, dict) and "_adversarial" in block:
            block["examples"] = _save_examples(out, x, y, config, block.pop("_adversarial"))
        state[section] = block
        state.setdefault("seconds", {})[section] = round(time.perf_counter() - start, 1)
        write_json(path, state)
    if report:
        report_evaluation(out, state)
    say(f"wrote {path}")
    return state


def _save_examples(out: Path, x: torch.Tensor, y: torch.Tensor, config: GatEvalConfig,
                   adversarial: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Perturbed test inputs of every detection attack (``detection_examples.npz``, key = rule/attack with '/'
    as '__', plus ``clean`` and ``labels``) and a grid: per class one clean input over its perturbed versions."""
    from ..io import save_grid
    from .evaluate import stratified_subset

    out.mkdir(parents=True, exist_ok=True)
    subset = stratified_subset(y, config.detection_n, config.seed)
    clean, labels = x[subset], y[subset]
    arrays: dict[str, Any] = {key.replace("/", "__"): value.numpy() for key, value in adversarial.items()}
    arrays.update(clean=clean.numpy(), labels=labels.numpy())
    np.savez_compressed(out / "detection_examples.npz", **arrays)
    first = [int(torch.nonzero(labels == k)[0]) for k in torch.unique(labels).tolist()]
    rows = [clean[first]] + [adversarial[key][first] for key in adversarial]
    save_grid(out / "detection_examples.png", torch.cat(rows), nrow=len(first), scale=2)
    return {"npz": "detection_examples.npz", "grid": "detection_examples.png",
            "grid_rows": ["clean"] + list(adversarial)}


def _thesis_json() -> dict[str, Any]:
    return {"auc": [{"rule": r, "steps": s, "step_size": z, "d_0": a, "d_1": b} for (r, s, z), (a, b)
                    in THESIS["auc"].items()],
            "cross_norm": [{"norm": n, "eps": e, "d_0": a, "d_1": b} for (n, e), (a, b)
                           in THESIS["cross_norm"].items()],
            "restarts": THESIS["restarts"], "distortion": THESIS["distortion"]}


def _thesis_auc(row: dict[str, Any]) -> str:
    p, k = row["protocol"], row["detector"]
    if k not in (0, 1):
        return ""
    if row["table"] == "steps":
        value = THESIS["auc"].get((p["rule"], p["steps"], p["step_size"]))
    elif row["table"] == "cross_norm":
        value = THESIS["cross_norm"].get((p["norm"], p["eps"]))
    else:
        return ""
    return f"{value[k]:.5f}" if value else ""


def report_evaluation(out: str | Path, state: dict[str, Any]) -> None:
    """Adds the evaluation tables and the TPR/FPR figure of ``state`` (a ``gat_eval.json``) to the run report."""
    import matplotlib.pyplot as plt

    from ..report.plots import figure_png  # noqa: F401  (selects the Agg backend)

    report = Report.open(out)
    cfg = state.get("config", {})
    if "clean" in state:
        c = state["clean"]
        rows = [["softmax classifier f", f"{c['classifier_accuracy']:.4f}" if "classifier_accuracy" in c else "-"],
                ["generative classifier argmax_k z_{d_k}", f"{c['generative_accuracy']:.4f}"]]
        rows += [[f"d_{k} clean AUC (class {k} vs rest)", f"{a:.5f}"] for k, a in enumerate(c["detector_auc"])]
        report.add_table("gat/clean", "Clean test accuracy and detector AUC", ["quantity", "value"], rows,
                         protocol={"data": state.get("data"), "test inputs": c["n"]})
    if "auc" in state:
        rows = []
        for r in state["auc"]:
            p = r["protocol"]
            rows.append([{"steps": "3.2/3.3", "cross_norm": "3.4", "restarts": "3.5"}[r["table"]], f"d_{r['detector']}",
                         p["rule"], f"{p['norm']} {p['eps']:g}", f"{p['steps']} x {p['step_size']:g}", p["restarts"],
                         f"{r['auc']:.5f}", _thesis_auc(r), f"{r['clean_auc']:.5f}"])
        report.add_table("gat/auc", "Detector AUC under attack (T Tab. 3.2-3.5)",
                         ["T table", "detector", "step rule", "ball", "steps x size", "restarts", "AUC (ours)",
                          "AUC (thesis, full MNIST)", "clean AUC"], rows,
                         protocol={"positives": "clean class-k test images", "negatives": f"{cfg.get('auc_negatives')}"
                                   " other-class test images, attacked to maximise z_{d_k}", "data": state.get("data")},
                         note=THESIS["restarts"])
    if "detection" in state:
        det = state["detection"]
        rows = [[run["rule"], f"{run['attack']} ({run['equation']})", f"{run['misclassified']:.3f}",
                 f"{run['at_tpr']['threshold']:.3f}", f"{run['at_tpr']['tpr']:.3f}", f"{run['at_tpr']['fpr']:.3f}"]
                for run in det["runs"].values()]
        report.add_table("gat/detection", "Integrated vs generative detection at 0.95 TPR (T Fig. 3.2)",
                         ["detection", "attack", "misclassified", "threshold", "TPR", "FPR"], rows,
                         protocol=det["protocol"],
                         note="FPR = perturbed inputs accepted and misclassified / all perturbed inputs (T Eq. 3.29)")
        fig, ax = plt.subplots(figsize=(5.0, 4.2))
        for key, run in det["runs"].items():
            ax.plot(run["curve"]["fpr"], run["curve"]["tpr"], lw=1.3, label=f"{key} ({run['equation']})")
        ax.set_xlabel("FPR (perturbed, misclassified and accepted)")
        ax.set_ylabel("TPR (clean accepted)")
        ax.set_title(f"{det['protocol']['norm']} eps {det['protocol']['eps']:g}, {det['protocol']['steps']} x "
                     f"{det['protocol']['step_size']:g} {det['protocol']['rule']} steps", fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
        ax.grid(alpha=0.3)
        report.add_figure("gat/detection_curves", "TPR/FPR curves (T Fig. 3.2 analogue)", fig)
        examples = det.get("examples") or {}
        if examples.get("grid") and (Path(out) / examples["grid"]).exists():
            report.add_image("gat/detection_examples", "Test digits and their perturbed versions", examples["grid"],
                             caption="rows: " + ", ".join(examples["grid_rows"]))
    if "independent" in state:
        ind = state["independent"]
        rows = [[name, f"{ind[name]['fpr']:.3f}"] for name in ("atebm_pgd", "apgd", "square", "union") if name in ind]
        report.add_table("gat/independent", "Generative detection at 0.95 TPR: independent attackers (ART)",
                         ["attacker", "FPR"], rows, protocol=ind["protocol"])
    if "distortion" in state:
        dist = state["distortion"]
        rows = [[name, f"{value:.2f}"] for name, value in THESIS["distortion"].items()]
        rows.append([f"ours, {state['committee'].get('preset')} ({state.get('data')})",
                     f"{dist['mean_l2']:.2f} (median {dist['median_l2']:.2f}, success {dist['success_rate']:.2f})"])
        report.add_table("gat/distortion", "Mean L2 distortion at 0.95 TPR (T Tab. 3.6; higher is better)",
                         ["method", "mean L2"], rows, protocol=dist["protocol"])
    report.save()
