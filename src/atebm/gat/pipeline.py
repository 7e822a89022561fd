"""The ``atebm gat`` pipelines as library functions (same defaults as the CLI): ``train`` and ``eval`` (detection,
T Sec. 3.2), ``calibrate`` (:func:`atebm.gat.calibration.run_gat_calibrate`), ``robust-softmax``,
``classify-eval`` and ``explain`` (the generative robust classifier, T Sec. 3.4).

A committee run folder holds::

    classifier.pt        the softmax classifier f (integrated detection)
    detector_k/          one trainer run per class: model.pt (best-validation weights), checkpoint.pt (resume),
                         log.jsonl, config.json, done.json (summary once finished)
    committee.pt         the K selected detectors and the offsets c_k (calibrated on the validation split at
                         the end of training), read by atebm.gat.load
    calibration.json     offsets, accuracy before/after; calibration_histograms.png (T Fig. 3.11)
    robust_softmax.pt    the Madry-trained softmax baseline (atebm gat robust-softmax)
    classify.json        accuracy vs test eps, worst case over attackers (atebm gat classify-eval)
    explain.json         samples, counterfactuals, attributions, FD (atebm gat explain)
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

from ..apps._images import model_device
from ..report import Report
from ..training import resolve_device, write_json
from .calibration import HISTOGRAM_FILE, calibrate_committee, committee_and_splits, report_calibration, score_histograms
from .classifier_robustness import CLASSIFY_PROTOCOLS, ClassifyEvalConfig, accuracy_grid, describe_protocol
from .committee import COMMITTEE_FILE, Committee, load_committee, save_committee
from .data import labelled_splits
from .evaluate import EVAL_PROTOCOLS, EVAL_SECTIONS, RULE_OFFSETS, THESIS, GatEvalConfig, evaluate_committee
from .presets import GatPreset, detector_model_spec
from .robust_training import count_macs, count_parameters, resolve_preset, train_madry_classifier
from .softmax_classifier import batched_logits, load_classifier, save_classifier, train_softmax_classifier
from .training import assemble_committee, check_detector_resume, detector_dir, refuse_other_run, train_detectors

__all__ = ["run_gat_train", "run_gat_eval", "CLASSIFIER_FILE", "EVAL_JSON", "TRAIN_JSON", "EVAL_SECTIONS",
           "report_evaluation", "run_gat_robust_softmax", "run_gat_classify_eval", "run_gat_explain",
           "ROBUST_SOFTMAX_FILE", "CLASSIFY_JSON", "EXPLAIN_JSON", "plot_accuracy_grid", "report_classify",
           "report_explain"]

CLASSIFIER_FILE = "classifier.pt"
ROBUST_SOFTMAX_FILE = "robust_softmax.pt"
CLASSIFY_JSON = "classify.json"
EXPLAIN_JSON = "explain.json"
TRAIN_JSON = "gat_train.json"
EVAL_JSON = "gat_eval.json"


def _say(log: bool) -> Callable[[str], None]:
    return (lambda text: print(text, file=sys.stderr, flush=True)) if log else (lambda text: None)


def run_gat_train(out_dir: str | Path, *, preset: str | GatPreset = "mnist", data: str | None = None,
                  resume: bool = False, device: str = "auto", classes: Sequence[int] | None = None, seed: int = 0,
                  workers: int | None = None, overrides: dict[str, Any] | None = None, smoke: bool = False,
                  log: bool = True, report: bool = True) -> Committee | None:
    """Trains the softmax classifier and the detector committee of ``preset`` on ``data`` (default: the preset's
    source) into ``out_dir``, ``workers`` detectors at a time (see :func:`~atebm.gat.train_detectors`; default: one
    per usable CPU core on CPU, one on a GPU); once all
    detectors are done, assembles ``committee.pt`` and calibrates its offsets c_k on the validation split
    (T Eq. 3.43, :func:`~atebm.gat.calibration.calibrate_committee`; record in ``gat_train.json``, the committee's
    meta and ``calibration_histograms.png``). Returns the calibrated committee (None while some detectors are
    still untrained, e.g. when only ``classes`` were asked for). ``preset`` may name a GAT_PRESETS or a
    CLASSIFY_PRESETS entry. ``resume`` continues the run in ``out_dir`` with the preset, data and detector
    settings it was trained with; another preset, data source or detector TrainConfig field (other than the
    budgets and cadences of :data:`~atebm.training.trainer.RESUME_OVERRIDABLE`) is refused with a ValueError
    naming it. ``smoke``: the preset at a seconds-long budget (:meth:`~atebm.gat.GatPreset.smoke`; numbers mean
    nothing)."""
    chosen = resolve_preset(preset)
    if smoke:
        chosen = chosen.smoke()
    out = Path(out_dir)
    say = _say(log)
    started = [p for p in [out / COMMITTEE_FILE, out / CLASSIFIER_FILE, *out.glob("detector_*")] if p.exists()]
    if started and not resume:
        raise ValueError(f"{out} already holds a committee run ({started[0].name}); pass --resume to continue it "
                         "or choose another --out")
    source = data or chosen.data
    overrides = dict(overrides or {})
    overrides.setdefault("device", device)
    if resume:
        _refuse_another_run(out, chosen, source, overrides, seed)
    if workers is None:
        workers = default_workers(str(overrides["device"]))
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
                            "validation": chosen.validation.to_dict(), "classifier": chosen.classifier.to_dict(),
                            "seed": seed, "threads": torch.get_num_threads(), "workers": workers}
    classifier_path = out / CLASSIFIER_FILE
    if not classifier_path.exists():
        c = chosen.classifier
        spec = detector_model_spec(chosen.size, chosen.channels, widths=c.widths, hidden=c.hidden,
                                   out_dim=splits.num_classes)
        classifier = train_softmax_classifier(splits, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=seed,
                                              spec=spec, device=str(overrides["device"]))
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
        assert splits.val.y is not None and splits.test.y is not None
        calibration = calibrate_committee(committee, splits.val.x, splits.val.y, x_eval=splits.test.x,
                                          y_eval=splits.test.y)
        calibration.update(split="val", data=source, eval_split="test",
                           objective="mean cross-entropy of softmax_k(d_k(x) + c_k), L-BFGS from c = 0, centred")
        calibration["histograms"] = score_histograms(committee, splits.test.x, splits.test.y, out / HISTOGRAM_FILE,
                                                     scores=calibration.pop("_eval_scores"))
        committee.meta["calibration"] = calibration
        save_committee(out, committee)
        info["calibration"] = calibration
        say(f"calibrated on the validation split: test accuracy {calibration['eval']['before']['accuracy']:.4f} "
            f"-> {calibration['eval']['after']['accuracy']:.4f}")
        all_done = [json.loads((detector_dir(out, k) / "done.json").read_text()) for k in done]
        info["detector_train_seconds"] = round(sum(s["train_seconds"] for s in all_done), 1)
        say(f"committee: {out / COMMITTEE_FILE} ({info['detector_train_seconds']:.0f} s of detector training)")
    write_json(out / TRAIN_JSON, info)
    if report and committee is not None:
        _report_training(out, info)
        report_calibration(out, info["calibration"])
    return committee


def default_workers(device: str) -> int:
    """Detectors trained at once by default: one per CPU core this process may use (one torch thread each, far
    better than two threads on one small-batch run), or one on a GPU."""
    import os

    if resolve_device(device).type != "cpu":
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _refuse_another_run(out: Path, preset: GatPreset, source: str, overrides: dict[str, Any], seed: int) -> None:
    """Before anything is loaded or trained, refuses to resume the committee run ``out`` with another preset or
    data source than the ones ``gat_train.json`` and the classifier record, or than any detector folder was
    trained with, or with a changed detector TrainConfig (:func:`~atebm.gat.training.check_detector_resume`)."""
    recorded = json.loads((out / TRAIN_JSON).read_text()) if (out / TRAIN_JSON).exists() else {}
    refuse_other_run(out, recorded, preset.name, source)
    if (out / CLASSIFIER_FILE).exists():
        refuse_other_run(out, {"data": load_classifier(out / CLASSIFIER_FILE).meta.get("data")}, preset.name, source)
    for run in sorted(out.glob("detector_*")):
        k = run.name.removeprefix("detector_")
        if k.isdigit():
            check_detector_resume(run, preset, int(k), source, overrides, seed)


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
                 sections: Sequence[str] | None = None, data: str | None = None, device: str = "auto",
                 rule_offsets: str | None = None, resume: bool = False, log: bool = True,
                 report: bool = True) -> dict[str, Any]:
    """Evaluates the committee (and its classifier, when the run folder has one) on the test split of its data
    (or ``data``) with ``protocol`` (:data:`~atebm.gat.evaluate.EVAL_PROTOCOLS` name or a config) at the
    committee's own threat model; ``rule_offsets`` overrides the protocol's (``"thesis"``: T Sec. 3.2's rules on
    z_{d_k}; ``"calibrated"``: on z_{d_k} + c_k). Writes ``out_dir/gat_eval.json`` after every section
    (``resume`` skips the sections already there and refuses another protocol) and the report sections. Returns
    the result dict."""
    config = EVAL_PROTOCOLS[protocol] if isinstance(protocol, str) and protocol in EVAL_PROTOCOLS else protocol
    if not isinstance(config, GatEvalConfig):
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose from {', '.join(EVAL_PROTOCOLS)}")
    if rule_offsets is not None:
        if rule_offsets not in RULE_OFFSETS:
            raise ValueError(f"rule_offsets must be one of {RULE_OFFSETS}, got {rule_offsets!r}")
        config = config.replace(rule_offsets=rule_offsets)
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
    if "norm" not in meta or "eps" not in meta:
        raise ValueError(f"{checkpoint}: the committee records no threat model (meta 'norm' and 'eps'); save it "
                         "with atebm.gat.save_committee after setting committee.meta['norm'] and ['eps']")
    norm, eps = str(meta["norm"]), float(meta["eps"])
    for section in wanted:
        if section in state:
            say(f"{section}: already in {path}, skipped")
            continue
        start = time.perf_counter()
        result = evaluate_committee(committee, classifier, x, y, config=config, norm=norm, eps=eps,
                                    sections=[section], progress=say)
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
    return {"auc": [{"attack": label, "d_0": a, "d_1": b} for label, (a, b) in THESIS["auc"].items()],
            "cross_norm": [{"norm": n, "eps": e, "d_0": a, "d_1": b} for (n, e), (a, b)
                           in THESIS["cross_norm"].items()],
            "restarts": THESIS["restarts"], "distortion": THESIS["distortion"]}


def _thesis_auc(row: dict[str, Any]) -> str:
    p, k = row["protocol"], row["detector"]
    if k not in (0, 1):
        return ""
    if row["table"] == "steps":
        value = THESIS["auc"].get(row["attack"]) if (p["norm"], p["eps"]) == ("linf", 0.3) else None
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
    if "clean" in state:
        c = state["clean"]
        rows = [["softmax classifier f", f"{c['classifier_accuracy']:.4f}" if "classifier_accuracy" in c else "-"],
                ["generative classifier argmax_k z_{d_k} + c_k (calibrated, Sec. 3.4)",
                 f"{c['generative_accuracy']:.4f}"]]
        if "generative_accuracy_uncalibrated" in c:
            rows.append(["generative classifier argmax_k z_{d_k} (Sec. 3.2, no offsets)",
                         f"{c['generative_accuracy_uncalibrated']:.4f}"])
        rows += [[f"d_{k} clean AUC (class {k} vs rest)", f"{a:.5f}"] for k, a in enumerate(c["detector_auc"])]
        report.add_table("gat/clean", "Clean test accuracy and detector AUC", ["quantity", "value"], rows,
                         protocol={"data": state.get("data"), "test inputs": c["n"]})
    if "auc" in state:
        rows = []
        for r in state["auc"]:
            p = r["protocol"]
            rows.append([{"steps": "3.2/3.3", "cross_norm": "3.4", "restarts": "3.5"}[r["table"]], f"d_{r['detector']}",
                         r["attack"], f"{p['norm']} {p['eps']:g}", f"{p['steps']} x {p['step_size']:.4g}",
                         p["restarts"], f"{r['auc']:.5f}", _thesis_auc(r), f"{r['clean_auc']:.5f}", p["negatives"]])
        report.add_table("gat/auc", "Detector AUC under attack (T Tab. 3.2-3.5)",
                         ["T table", "detector", "attack (thesis row)", "ball", "steps x size", "restarts",
                          "AUC (ours)", "AUC (thesis, full MNIST)", "clean AUC", "negatives"], rows,
                         protocol={"positives": "clean class-k test images", "negatives": "other-class test images, "
                                   "attacked to maximise z_{d_k}; the best iterate of every run kept",
                                   "steps": "relative to eps: the thesis's size at Linf 0.3, scaled",
                                   "data": state.get("data")},
                         note=THESIS["restarts"])
    if "detection" in state:
        det = state["detection"]
        labels = {"thesis": "T Sec. 3.2 rule on z_{d_k}", "calibrated": "calibrated: z_{d_k} + c_k (Sec. 3.4)"}
        offsets = det["protocol"].get("rule_offsets", "calibrated")
        rows = [[f"{run['rule']} ({labels[offsets]})", f"{run['attack']} ({run['equation']})",
                 f"{run['misclassified']:.3f}", f"{run['at_tpr']['threshold']:.3f}", f"{run['at_tpr']['tpr']:.3f}",
                 f"{run['at_tpr']['fpr']:.3f}"] for run in det["runs"].values()]
        note = ("FPR = perturbed inputs accepted and misclassified / all perturbed inputs (T Eq. 3.29); every attack "
                "judged by the rule's acceptance margin at its 0.95-TPR threshold, so the attacks are adaptive there "
                "only")
        if "sign_test" in det:
            t = det["sign_test"]
            note += (f". Worst cases, paired: fooled only generative {t['a_only']}, only integrated {t['b_only']}, "
                     f"two-sided sign test p = {t['p_value']:.3g}")
        report.add_table("gat/detection", "Integrated vs generative detection at 0.95 TPR (T Fig. 3.2)",
                         ["detection", "attack", "misclassified", "threshold", "TPR", "FPR"], rows,
                         protocol=det["protocol"], note=note)
        fig, ax = plt.subplots(figsize=(5.0, 4.2))
        for key, run in det["runs"].items():
            worst = run["attack"] == "worst"  # the per-rule worst cases, the curves Fig. 3.2 compares
            ax.plot(run["curve"]["fpr"], run["curve"]["tpr"], lw=2.4 if worst else 1.0, ls="--" if worst else "-",
                    label=f"{key} ({run['equation']})")
        ax.set_xlabel("FPR (perturbed, misclassified and accepted)")
        ax.set_ylabel("TPR (clean accepted)")
        threat = det["protocol"]["threat"]
        ax.set_title(f"{threat['norm']} eps {threat['eps']:g}; {labels[offsets]}; attacks adaptive at 0.95 TPR",
                     fontsize=8)
        ax.legend(fontsize=5, loc="lower right")
        ax.grid(alpha=0.3)
        report.add_figure("gat/detection_curves", "TPR/FPR curves (T Fig. 3.2 analogue)", fig)
        examples = det.get("examples") or {}
        if examples.get("grid") and (Path(out) / examples["grid"]).exists():
            report.add_image("gat/detection_examples", "Test digits and their perturbed versions", examples["grid"],
                             caption="rows: " + ", ".join(examples["grid_rows"]))
    if "distortion" in state:
        dist = state["distortion"]
        rows = [[name, f"{value:.2f}"] for name, value in THESIS["distortion"].items()]
        mean = f"{dist['mean_l2']:.2f}" if dist.get("mean_l2") is not None else \
            f"not defined: {dist['failures']} of {dist['n']} never broken"
        successes = dist.get("mean_l2_successes")
        rows.append([f"ours, {state['committee'].get('preset')} ({state.get('data')})",
                     f"{mean} (over the {dist['n'] - dist['failures']} broken: "
                     f"{'-' if successes is None else f'{successes:.2f}'})"])
        report.add_table("gat/distortion", "Mean L2 distortion at 0.95 TPR (T Tab. 3.6; higher is better)",
                         ["method", "mean L2 at 1.0 FPR"], rows, protocol=dist["protocol"])
    report.save()


def _softmax_models(paths: Sequence[str | Path], device: str) -> dict[str, torch.nn.Module]:
    models: dict[str, torch.nn.Module] = {}
    for p in paths:
        name = Path(p).stem
        if name in models or name == "generative":
            raise ValueError(f"two models named {name!r}: give softmax checkpoints with distinct file names")
        models[name] = load_classifier(p, device=resolve_device(device))
    return models


def run_gat_robust_softmax(out_dir: str | Path, *, data: str = "mnist", norm: str = "linf", eps: float = 0.3,
                           steps: int = 7, step_size: float = 0.1, iterations: int = 1000, batch_size: int = 64,
                           lr: float = 1e-3, widths: tuple[int, int] = (16, 32), hidden: int = 1024, seed: int = 0,
                           validate_every: int = 100, warmup: int = 300, device: str = "auto",
                           log: bool = True) -> Path:
    """``atebm gat robust-softmax``: trains the robust softmax baseline (Madry et al.'s PGD adversarial training,
    T Eq. 3.16; :func:`~atebm.gat.robust_training.train_madry_classifier`) on ``data`` and writes
    ``out_dir/robust_softmax.pt`` (meta: recipe, parameters, MACs per forward pass, CPU seconds, validation
    history). Returns the file."""
    say = _say(log)
    splits = labelled_splits(data)
    model = train_madry_classifier(splits, norm=norm, eps=eps, steps=steps, step_size=step_size,
                                   iterations=iterations, batch_size=batch_size, lr=lr, widths=widths,
                                   validate_every=validate_every, warmup=warmup,
                                   hidden=hidden, seed=seed, device=device, progress=say)
    x1 = splits.test.x[:1].to(next(model.parameters()).device)
    model.meta["macs_per_forward"] = count_macs(model, x1)
    model.meta["training_forward_backward_passes"] = iterations * batch_size * (steps + 1)
    assert splits.test.y is not None
    model.meta["test_accuracy"] = float((batched_logits(model, splits.test.x).argmax(1) == splits.test.y)
                                        .float().mean())
    path = Path(out_dir) / ROBUST_SOFTMAX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_classifier(path, model)
    say(f"robust softmax: {model.meta['parameters']:,} parameters, test accuracy {model.meta['test_accuracy']:.4f}, "
        f"val robust {model.meta['val_robust_accuracy']:.3f} (iteration {model.meta['selected_iteration']}), "
        f"{model.meta['cpu_seconds']:.0f} CPU-s -> {path}")
    return path


def run_gat_classify_eval(checkpoint: str | Path, out_dir: str | Path, *, softmax: Sequence[str | Path] = (),
                          protocol: str | ClassifyEvalConfig = "mnist", norms: Sequence[str] = ("linf", "l2"),
                          data: str | None = None, device: str = "auto", log: bool = True,
                          report: bool = True) -> dict[str, Any]:
    """``atebm gat classify-eval``: clean and worst-case robust accuracy vs test eps (T Tab. 3.14, Fig. 3.7) of
    the (calibrated) generative classifier in ``checkpoint`` and of each ``softmax`` checkpoint (named by file
    stem), on the test split, with ``protocol`` (:data:`~atebm.gat.classifier_robustness.CLASSIFY_PROTOCOLS` name or a
    config), the models on ``device`` (``auto``: CUDA when available). Writes ``out_dir/classify.json``,
    ``accuracy_vs_eps.png`` and the report sections."""
    config = CLASSIFY_PROTOCOLS.get(protocol, None) if isinstance(protocol, str) else protocol
    if not isinstance(config, ClassifyEvalConfig):
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(CLASSIFY_PROTOCOLS)}")
    bad = sorted(set(norms) - {"linf", "l2"})
    if bad:
        raise ValueError(f"unknown norms {bad}; choose from linf, l2")
    say = _say(log)
    committee, splits, _ = committee_and_splits(checkpoint, data, device)
    models: dict[str, torch.nn.Module] = {"generative": committee, **_softmax_models(softmax, device)}
    assert splits.test.y is not None
    start = time.perf_counter()
    grid = accuracy_grid(models, splits.test.x, splits.test.y, config=config, norms=norms, progress=say)
    x1 = splits.test.x[:1]
    state = {"checkpoint": str(checkpoint), "softmax": [str(p) for p in softmax], "data": splits.source,
             "config": config.to_dict(), "norms": list(norms), **grid,
             "capacity": {name: {"parameters": count_parameters(m),
                                 "macs_per_forward": count_macs(m, x1.to(model_device(m)))}
                          for name, m in models.items()},
             "calibration_offsets": committee.offsets.tolist(), "seconds": round(time.perf_counter() - start, 1)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CLASSIFY_JSON, state)
    plot_accuracy_grid(state, out / "accuracy_vs_eps.png",
                       caption=f"{len(grid['subset'])} stratified test inputs; {describe_protocol(state['config'])}")
    if report:
        report_classify(out, state)
    say(f"wrote {out / CLASSIFY_JSON}")
    return state


def _first_attacker_accuracy(row: dict[str, Any]) -> float:
    """The first attacker's own robust accuracy at one grid point (the clean accuracy at eps 0)."""
    for entry in row["attackers"].values():
        return float(entry.get("own_robust_accuracy", row["clean_accuracy"]))
    return float(row["clean_accuracy"])


def plot_accuracy_grid(state: dict[str, Any], path: str | Path, caption: str | None = None) -> Path:
    """Accuracy vs test eps, one panel per norm: worst-case robust accuracy (solid) and, for the generative
    classifier, the first attacker's (the thesis's own evaluation, dotted); ``caption`` (the protocol) is printed
    under the panels."""
    import matplotlib.pyplot as plt

    from ..report.plots import figure_png  # noqa: F401  (selects the Agg backend)

    norms = state["norms"]
    fig, axes = plt.subplots(1, len(norms), figsize=(4.4 * len(norms), 3.6), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for name, per_norm in state["models"].items():
            rows = per_norm.get(norm) or []          # a grid still being measured may lack a norm
            if not rows:
                continue
            eps = [r["eps"] for r in rows]
            line, = ax.plot(eps, [r["robust_accuracy"] for r in rows], marker="o", lw=1.4,
                            label=f"{name} (worst case)")
            first = [_first_attacker_accuracy(r) for r in rows]
            if name.startswith("generative"):
                ax.plot(eps, first, ls=":", color=line.get_color(), label=f"{name} (Eq. 3.47-3.48 only)")
        ax.set_xlabel(f"test eps ({norm})")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if caption:
        import textwrap

        fig.text(0.01, 0.01, textwrap.fill(caption, 60 * len(norms)), fontsize=6.5, va="bottom", ha="left")
        fig.tight_layout(rect=(0, 0.04 + 0.025 * (len(caption) // (60 * len(norms))), 1, 1))
    else:
        fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def report_classify(out: str | Path, state: dict[str, Any]) -> None:
    """Adds the accuracy-vs-eps table and figure of ``state`` (a ``classify.json``) to the report."""
    report = Report.open(out)
    rows = []
    for name, per_norm in state["models"].items():
        for norm, grid in per_norm.items():
            for r in grid:
                first = next(iter(r["attackers"].items()), None)
                rows.append([name, norm, f"{r['eps']:g}", f"{r['clean_accuracy']:.3f}", f"{r['robust_accuracy']:.3f}",
                             f"{first[0]}: {first[1].get('own_robust_accuracy', float('nan')):.3f}" if first else "-",
                             ", ".join(f"{a} {v['broke']}" for a, v in r["attackers"].items())])
    cap = ", ".join(f"{n}: {c['parameters']:,} parameters, {c['macs_per_forward']:,} MACs"
                    for n, c in state["capacity"].items())
    report.add_table("gat/classify", "Robust accuracy vs test eps, worst case over attackers (T Tab. 3.14, Fig. 3.7)",
                     ["model", "norm", "eps", "clean", "robust (worst)", "first attacker alone", "inputs broken by"],
                     rows, protocol=state["config"], note=cap)
    report.add_image("gat/classify_curves", "Accuracy vs test eps", "accuracy_vs_eps.png")
    report.save()


def run_gat_explain(checkpoint: str | Path, out_dir: str | Path, *, softmax: Sequence[str | Path] = (),
                    data: str | None = None, per_class: int = 10, gen_steps: int = 60, gen_step_size: float = 0.15,
                    cf_n: int = 100, cf_eps: float = 3.0, cf_steps: int = 40, ig_n: int = 8, ig_steps: int = 64,
                    seed: int = 0, device: str = "auto", log: bool = True, report: bool = True) -> dict[str, Any]:
    """``atebm gat explain``: class-conditional samples from per-class Gaussian seeds, counterfactuals,
    integrated-gradients attributions and their FD (T Fig. 3.8-3.10, Tab. 3.15) for the generative classifier in
    ``checkpoint`` and each ``softmax`` checkpoint (see :func:`atebm.gat.explain.explain_models`), the models on
    ``device`` (``auto``: CUDA when available). Writes ``out_dir/explain.json``, the grids and the report
    sections."""
    from .explain import explain_models

    committee, splits, _ = committee_and_splits(checkpoint, data, device)
    models: dict[str, torch.nn.Module] = {"generative": committee, **_softmax_models(softmax, device)}
    assert splits.train.y is not None and splits.test.y is not None
    start = time.perf_counter()
    result = explain_models(models, splits.train.x, splits.train.y, splits.test.x, splits.test.y, out_dir,
                            per_class=per_class, gen_steps=gen_steps, gen_step_size=gen_step_size, cf_n=cf_n,
                            cf_eps=cf_eps, cf_steps=cf_steps, ig_n=ig_n, ig_steps=ig_steps, seed=seed,
                            progress=_say(log))
    result.update(checkpoint=str(checkpoint), softmax=[str(p) for p in softmax], data=splits.source,
                  seconds=round(time.perf_counter() - start, 1))
    write_json(Path(out_dir) / EXPLAIN_JSON, result)
    if report:
        report_explain(out_dir, result)
    return result


def report_explain(out: str | Path, result: dict[str, Any]) -> None:
    """Adds the FD table (T Tab. 3.15) and the sample / counterfactual / attribution grids to the report."""
    report = Report.open(out)
    rows = [[name, f"{m['samples_fd']:.2f}", f"{m['samples_digit_net_agrees']:.2f}", f"{m['counterfactual_fd']:.2f}",
             f"{m['counterfactual_success']:.2f}", f"{m['counterfactual_digit_net_target']:.2f}",
             f"{m['ig_completeness_max_abs_gap']:.3g}"] for name, m in result["models"].items()]
    report.add_table("gat/explain", "What the classifiers show: FD of samples and counterfactuals (T Tab. 3.15)",
                     ["model", "samples FD", "digit net agrees", "counterfactual FD", "reaches target",
                      "digit net sees target", "IG completeness gap"], rows, protocol=result["protocol"],
                     note=f"FD of the Gaussian seeds themselves: {result['seeds_fd']:.2f}")
    for name, m in result["models"].items():
        report.add_image(f"gat/explain_samples_{name}", f"{name}: class-conditional samples (rows: classes)",
                         m["files"]["samples"])
        report.add_image(f"gat/explain_cf_{name}", f"{name}: counterfactuals (top: test digit, bottom: toward its "
                         "runner-up class)", m["files"]["counterfactuals"])
    report.add_image("gat/explain_ig", "Integrated gradients (top: input; then one row per model)",
                     result["files"]["integrated_gradients"])
    report.save()
