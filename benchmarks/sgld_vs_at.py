"""Maximum-likelihood EBM (SGLD + replay buffer) vs binary AT on MNIST 5,000 at equal training compute.

Both models are the same ConvNet (``atebm`` "convnet", LeakyReLU), batch size and optimiser; each may spend the same
number of *network passes* (one forward + backward of the score network on one batch, the unit of both samplers and
of the parameter update):

* AT (E Alg. 1-2 via :class:`atebm.Trainer`, the settings of the ``mnist`` preset pinned below, with a faster K
  schedule): p_0 = natural-photo patches, progressive K 0..16, unit-length PGD steps of 1.0, R1 1.0; one iteration
  costs K + 1 passes (+ the R1 double-backward). Test-time samples: 32 PGD steps of 1.0 from held-out photo patches.
* EBM (E Eq. 2-3 via :class:`atebm.baselines.EBMTrainer`): JEM / IGEBM practice, p_0 = uniform noise, replay buffer
  with 5 % re-initialisation, S SGLD steps per iteration; one iteration costs S + 1 passes. Test-time samples:
  short-run SGLD from fresh noise (S steps and 5 S steps) and the replay buffer itself.

Sample quality: the Fréchet distance (FD) between generated samples and the 3,500 MNIST 5,000 training digits, in
the 64-d features of the digit classifier of :func:`atebm.metrics.digit_features` — the same measure as the README
and ``atebm demo``; lower is better, with the floor FD(held-out test digits) and the seeds' FD for reference. Also
the classifier's mean max-softmax ("digit-ness") and the entropy of its predicted labels (diversity; ln 10 = 2.30 is
uniform over digits).

    python benchmarks/sgld_vs_at.py     # ~6 minutes on 1 CPU thread (2 shared cores); writes benchmarks/results/
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import atebm
from atebm.baselines import EBMConfig, EBMTrainer
from atebm.data import load_dataset
from atebm.io import save_grid
from atebm.metrics import digit_features, frechet_distance
from atebm.metrics.features import FeatureClassifier
from atebm.training import StopTraining, write_json


def quality(net: FeatureClassifier, x: torch.Tensor, reference_features: np.ndarray) -> dict[str, float]:
    """FD in the digit classifier's features (the README's measure), its confidence and label entropy."""
    probs = net.predict_proba(x).double().numpy()
    labels = np.bincount(probs.argmax(1), minlength=10) / len(probs)
    entropy = float(-(labels[labels > 0] * np.log(labels[labels > 0])).sum())
    return {"fd": frechet_distance(net.features(x).numpy(), reference_features),
            "mean_max_softmax": float(probs.max(1).mean()), "label_entropy": entropy, "n": int(len(x))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=6000, help="training budget per method, in network passes")
    ap.add_argument("--width", type=int, default=16, help="ConvNet width (both methods)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (both methods)")
    ap.add_argument("--sgld-steps", type=int, default=20, help="SGLD steps per training iteration (JEM: 20)")
    ap.add_argument("--sgld-step-size", type=float, default=10.0,
                    help="lambda of E Eq. 3: x += lambda/2 grad f + noise (10: IGEBM-like; 0.5: JEM's step on [0, 1])")
    ap.add_argument("--sgld-noise", type=float, default=0.005, help="SGLD noise std (IGEBM: 0.005)")
    ap.add_argument("--n-eval", type=int, default=500, help="samples per FD")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/sgld_vs_at.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    out = Path(args.out)

    train = load_dataset("mnist", split="train")
    test = load_dataset("mnist", split="test")
    photos = load_dataset("photos", split="train", n=5000, seed=args.seed).x
    seeds = load_dataset("photos", split="test", n=args.n_eval, seed=args.seed).x
    noise = load_dataset("uniform", split="train", n=5000, seed=args.seed).x
    noise_eval = load_dataset("uniform", split="test", n=args.n_eval, seed=args.seed).x

    net = digit_features()
    ref_feats = net.features(train.x).numpy()
    classifier = dict(net.info)
    reference = {
        "mnist_test_vs_train": quality(net, test.x[:args.n_eval], ref_feats),
        "photo_seeds": quality(net, seeds, ref_feats),
        "uniform_noise": quality(net, noise_eval, ref_feats),
    }
    print(f"classifier test accuracy {net.info['test_accuracy']:.3f}; FD floor "
          f"{reference['mnist_test_vs_train']['fd']:.2f}", flush=True)

    # the ConvNet of the mnist preset (average-pool downsampling, flatten head), same for both methods
    spec = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": args.width, "activation": "lrelu",
                                          "downsample": "avgpool", "head": "flatten", "input_size": 28,
                                          "head_hidden": 256}, "mean": 0.5, "std": 0.5}

    # ---------------------------------------------------------------- binary AT
    passes = {"at": 0}

    def budget(trainer, record):
        passes["at"] += trainer.config.log_every * (record["k"] + 1)
        if passes["at"] >= args.passes:
            raise StopTraining("pass budget spent")

    at_cfg = atebm.TrainConfig(model=spec, batch_size=args.batch, lr=args.lr, optimizer="adam", betas=(0.0, 0.99),
                               k_start=0, k_max=16, epochs_per_k=0.25, auc_window=20, auc_threshold=0.8,
                               max_iters=10 ** 6, step_size=1.0, r1=1.0, log_every=1, ckpt_every=10 ** 9,
                               seed=args.seed, device="cpu", progress=False)
    at = atebm.Trainer(at_cfg, train.x, photos, callbacks=(budget,))
    t0 = time.perf_counter()
    at.fit()
    at_train_s = time.perf_counter() - t0
    gen = {"steps": 32, "step_size": 1.0}
    t0 = time.perf_counter()
    at_samples = atebm.pgd(at.model, seeds, steps=gen["steps"], step_size=gen["step_size"])
    at_sample_s = time.perf_counter() - t0
    results = {"at": {
        "train": {"iterations": at.step, "passes": passes["at"], "final_k": at.k, "seconds": at_train_s,
                  "config": {k: at_cfg.to_dict()[k] for k in ("batch_size", "lr", "betas", "k_max", "epochs_per_k",
                                                               "auc_threshold", "step_size", "r1")}},
        "samples": {"pgd_from_photo_patches": {
            "steps_per_sample": gen["steps"], "step_size": gen["step_size"],
            "seconds_per_100": 100 * at_sample_s / len(seeds), **quality(net, at_samples, ref_feats)}},
    }}
    print(f"AT: {at.step} iterations, K={at.k}, {at_train_s:.0f} s; FD "
          f"{results['at']['samples']['pgd_from_photo_patches']['fd']:.2f}", flush=True)

    # ---------------------------------------------------------------- SGLD EBM
    s = args.sgld_steps
    ebm_cfg = EBMConfig(model=spec, batch_size=args.batch, lr=args.lr, max_iters=max(1, args.passes // (s + 1)),
                        sgld_steps=s, sgld_step_size=args.sgld_step_size,
                        sgld_noise_std=args.sgld_noise, buffer_size=5000,
                        reinit_prob=0.05, l2_reg=0.1, log_every=10, seed=args.seed, device="cpu")
    ebm = EBMTrainer(ebm_cfg, train.x, noise)
    t0 = time.perf_counter()
    ebm.fit()
    ebm_train_s = time.perf_counter() - t0
    ebm_samples = {}
    for name, steps in (("short_run_from_noise", s), ("long_run_from_noise", 5 * s)):
        t0 = time.perf_counter()
        x = ebm.run_chains(noise_eval, steps)
        ebm_samples[name] = {"steps_per_sample": steps, "seconds_per_100": 100 * (time.perf_counter() - t0) /
                             len(noise_eval), **quality(net, x, ref_feats)}
        if name == "short_run_from_noise":
            short = x
    buffer = ebm.buffer.samples[torch.randperm(len(ebm.buffer), generator=torch.Generator().manual_seed(1))[
        :args.n_eval]]
    ebm_samples["replay_buffer"] = {"steps_per_sample": "persistent (training chains)",
                                    **quality(net, buffer, ref_feats)}
    results["sgld_ebm"] = {
        "train": {"iterations": ebm.step, "passes": ebm.step * (s + 1), "seconds": ebm_train_s,
                  "final_gap": ebm.history[-1]["gap"] if ebm.history else math.nan,
                  "config": {k: ebm_cfg.to_dict()[k] for k in ("batch_size", "lr", "betas", "sgld_steps",
                                                                "sgld_step_size", "sgld_noise_std", "buffer_size",
                                                                "reinit_prob", "l2_reg")}},
        "samples": ebm_samples,
    }
    print(f"SGLD EBM: {ebm.step} iterations, {ebm_train_s:.0f} s; FD short-run "
          f"{ebm_samples['short_run_from_noise']['fd']:.2f}, buffer {ebm_samples['replay_buffer']['fd']:.2f}",
          flush=True)

    grid = torch.cat([seeds[:16], at_samples[:16], noise_eval[:16], short[:16], buffer[:16]])
    png = save_grid(out.with_name(out.stem + "_samples.png"), grid, nrow=16, scale=2)
    summary = {
        "benchmark": "SGLD EBM vs binary AT on MNIST 5,000 at equal training compute",
        "command": "python benchmarks/sgld_vs_at.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "threads": 1, "budget_passes_per_method": args.passes, "pass": f"one forward+backward of the "
        f"ConvNet(width {args.width}) on a batch of {args.batch} (AT's R1 term and its per-step log forward are "
        "not counted as passes but are in its wall-clock)", "model_spec": spec,
        "quality_measure": "Frechet distance in the 64-d features of atebm.metrics.digit_features (the README's "
                           f"measure), {args.n_eval} samples vs the 3,500 MNIST 5,000 training digits",
        "classifier": classifier, "reference": reference, **results,
        "samples_png": str(png), "png_rows": ["photo seeds", "AT samples", "uniform noise",
                                              f"SGLD short-run ({s} steps)", "SGLD replay buffer"],
        "seconds_total": time.perf_counter() - t_start,
    }
    write_json(out, summary)
    print(json.dumps({"at_fd": results["at"]["samples"]["pgd_from_photo_patches"]["fd"],
                      "sgld_fd": {k: v["fd"] for k, v in ebm_samples.items()},
                      "floor": reference["mnist_test_vs_train"]["fd"], "seconds": summary["seconds_total"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
