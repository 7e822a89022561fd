"""Image-to-image translation with the MNIST model (E Sec. 5.2, Fig. 7; T Sec. 2.5.3): images of other
domains pushed toward the digit model, measured with a digit classifier along the way.

Protocol (printed into the JSON and the run report):

* Model: ``--checkpoint`` (default: the apps reference model); PGD ascent, L2, unconstrained, step size =
  the checkpoint's training step size unless ``--step-size``; images recorded after ``--steps`` steps.
* Sources (none of them seen by the model; converted to the checkpoint's input size and channels): LFW faces
  (all 100 of the embedded subset, 25x25 grey crops resized to 28), natural-photo patches of the held-out test
  photos (200), scikit-learn 8x8 digits (test split, 200, upscaled: another digit domain, with labels), uniform
  noise (200), and the MNIST test split itself (200) as the control.
* Classifier: atebm.metrics.digit_features (a small CNN trained on the MNIST train split; its test accuracy is
  in the JSON). Reported per step: mean confidence (max softmax probability), class histogram, accuracy
  against the source labels where there are labels, the model's mean score and the mean L2 distance moved.

    python benchmarks/apps_translate.py --checkpoint runs/apps_reference/checkpoint.pt

Results: benchmarks/results/apps_translate.json; trajectory strips and tables in the checkpoint's run folder.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import atebm
from atebm.apps import save_trajectory, translate_trajectory
from atebm.data import load_dataset
from atebm.metrics import digit_features
from atebm.report import Report
from atebm.training import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def sources(n: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    faces = torch.cat([load_dataset("lfw", split="train", seed=0).x, load_dataset("lfw", split="test", seed=0).x])
    digits = load_dataset("digits", split="test", n=n, seed=0)
    mnist = load_dataset("mnist", split="test", n=n, seed=0)
    return {
        "LFW faces": (faces, None),
        "photo patches (test photos)": (load_dataset("photos", split="test", n=n, seed=0).x, None),
        "sklearn 8x8 digits (upscaled)": (digits.x, digits.y),
        "uniform noise": (load_dataset("uniform", split="test", n=n, seed=0).x, None),
        "MNIST test (control)": (mnist.x, mnist.y),
    }


def describe(classifier, model, x: torch.Tensor, x0: torch.Tensor, labels: torch.Tensor | None) -> dict:
    proba = classifier.predict_proba(x)
    pred = proba.argmax(1)
    with torch.no_grad():
        score = model(x)
    out = {"confidence_mean": float(proba.max(1).values.mean()),
           "confidence_median": float(proba.max(1).values.median()),
           "class_histogram": torch.bincount(pred, minlength=10).tolist(),
           "score_mean": float(score.mean()),
           "l2_moved_mean": float((x - x0).flatten(1).norm(dim=1).mean())}
    if labels is not None:
        out["accuracy"] = float((pred == labels).float().mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/apps_reference/checkpoint.pt")
    parser.add_argument("--report-dir", default=None)
    parser.add_argument("--steps", default="0,5,10,20,40", help="recorded step counts; the last is the run length")
    parser.add_argument("--step-size", type=float, default=None)
    parser.add_argument("--n", type=int, default=200, help="images per source (LFW has 100)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(RESULTS / "apps_translate.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    model = atebm.load(args.checkpoint)
    ckpt = Path(args.checkpoint)
    run_dir = Path(args.report_dir) if args.report_dir else (ckpt if ckpt.is_dir() else ckpt.parent)
    config = model.meta["config"]
    step_size = args.step_size if args.step_size is not None else float(config.get("step_size", 1.0))
    record = sorted({int(s) for s in args.steps.split(",")})
    classifier = digit_features()
    protocol = {"checkpoint": str(args.checkpoint), "sampler": f"PGD L2 ascent, step size {step_size}, no eps-ball",
                "recorded_steps": record, "classifier": classifier.info.get("network", "digit_features"),
                "classifier_mnist_test_accuracy": classifier.info.get("test_accuracy")}
    results: dict = {"command": "python benchmarks/apps_translate.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "results" and v is not None),
        "protocol": protocol, "sources": {}}
    report = Report.open(run_dir)
    summary_rows = []
    for name, (x, labels) in sources(args.n).items():
        x = x[:args.n] if labels is None else x
        out, path = translate_trajectory(model, x, record[-1], step_size, record=record)  # to the model's format
        per_step = {str(s): describe(classifier, model, path[i], path[0], labels) for i, s in enumerate(record)}
        results["sources"][name] = {"images": len(x), "per_step": per_step}
        for s in record:
            d = per_step[str(s)]
            hist = d["class_histogram"]
            summary_rows.append([name, s, round(d["score_mean"], 3), round(d["l2_moved_mean"], 2),
                                 round(d["confidence_mean"], 3), round(d.get("accuracy", float("nan")), 3),
                                 " ".join(str(h) for h in hist)])
        slug = name.split()[0].lower()
        files = save_trajectory(run_dir / "apps_translate", slug, path[:, :10], record, max_samples=10, scale=2)
        report.add_image(f"apps/bench/translate_{slug}", f"Translation to MNIST digits: {name}",
                         files["png"].resolve(),
                         caption=f"one row per image, columns after steps {record} (step size {step_size})")
        last = per_step[str(record[-1])]
        print(json.dumps({name: {"confidence": round(last["confidence_mean"], 3), "hist": last["class_histogram"],
                                 **({"accuracy": round(last["accuracy"], 3)} if "accuracy" in last else {})}}),
              flush=True)
    report.add_table("apps/bench/translate", "Translation to MNIST: digit classifier on the translated images",
                     ["source", "steps", "mean score", "mean L2 moved", "mean confidence", "accuracy (labelled)",
                      "class histogram 0..9"], summary_rows, protocol=protocol)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    report.save()
    write_json(args.results, results)
    print(f"wrote {args.results} and {report.path}")


if __name__ == "__main__":
    main()
