"""A GAN baseline for free (issue item 6; G Tab. 8, Fig. 3/10): DSGAN with alpha = 0 and p_dbar = p_data is an
ordinary GAN. Its MNIST 5,000 samples against binary AT's at equal training compute.

Compute is counted in network passes (one forward + backward of the score network on a batch of 32), as in
``benchmarks/sgld_vs_at.py``: binary AT spent 6,000 passes there (its numbers are read from
``benchmarks/results/sgld_vs_at.json``, same ConvNet, same digit classifier, same FD protocol). One GAN iteration
costs 3 passes (the discriminator on 32 real + 32 generated images, then the generator step through the
discriminator on 32), so the GAN trains for passes / 3 iterations with the same ConvNet as its discriminator and
the S Tab. 4 generator by default (``--generator``; not counted, like AT's R1 term). Quality: FD of 500 samples
against the 3,500 training digits in the 64-d digit-classifier features (:func:`quality` of ``sgld_vs_at.py``),
the classifier's confidence and label entropy, and the mean pixel distance to the nearest training digit beside the
same for held-out test digits (memorisation check). Writes ``benchmarks/results/dsgan/gan_baseline.json``,
``gan_baseline_samples.png`` and ``gan_baseline_nearest.png``.

    nice python benchmarks/dsgan_gan_baseline.py       # ~10 minutes on a busy 2-core machine
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from atebm.data import load_dataset
from atebm.dsgan import GENERATORS, DSGANConfig, DSGANTrainer
from atebm.io import save_grid
from atebm.metrics import digit_features, mean_nn_distance, nearest_neighbour_grid
from atebm.training import write_json

sys.path.insert(0, str(Path(__file__).parent))
from sgld_vs_at import quality  # noqa: E402  (the FD protocol of the AT number we compare with)

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=6000)
    parser.add_argument("--n-eval", type=int, default=500)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="image",
                        help="generator architecture (default: image, the S Tab. 4 generator of the committed run; "
                             "the DSGAN default for images is conv)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    at_results = json.loads((RESULTS / "sgld_vs_at.json").read_text())
    spec = at_results["model_spec"]
    train, test = load_dataset("mnist", split="train"), load_dataset("mnist", split="test")
    net = digit_features()
    reference = net.features(train.x).numpy()
    config = DSGANConfig(model=spec, generator={"arch": args.generator, "kwargs": {"channels": 1, "size": 28}},
                         alpha=0.0, batch_size=32, lr=args.lr, g_lr=args.lr,
                         max_iters=args.passes // 3, log_every=100, ckpt_every=10 ** 9, seed=args.seed,
                         device="cpu", progress=False)
    trainer = DSGANTrainer(config, train.x, train.x)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    t0 = time.perf_counter()
    samples = trainer.generate(args.n_eval)
    sample_seconds = time.perf_counter() - t0
    out = RESULTS / "dsgan"
    out.mkdir(parents=True, exist_ok=True)
    save_grid(out / "gan_baseline_samples.png", samples[:64], nrow=16, scale=2)
    nearest_neighbour_grid(out / "gan_baseline_nearest.png", samples[:12], train.x, net)
    at = at_results["at"]
    summary = {
        "benchmark": "ordinary GAN (DSGAN, alpha = 0, p_dbar = MNIST 5,000 train) vs binary AT at equal passes",
        "command": "python benchmarks/dsgan_gan_baseline.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "passes_per_method": args.passes,
        "gan": {"iterations": trainer.step, "passes": 3 * trainer.step, "train_seconds": seconds,
                "seconds_per_100_samples": 100 * sample_seconds / len(samples),
                "config": {k: config.to_dict()[k] for k in ("alpha", "batch_size", "lr", "g_lr", "betas", "loss",
                                                             "generator_loss", "generator", "critic_steps")},
                "samples": {**quality(net, samples, reference), "nn_l2_to_train": mean_nn_distance(samples, train.x)}},
        "binary_at (benchmarks/results/sgld_vs_at.json)": {
            "passes": at["train"]["passes"], "train_seconds": at["train"]["seconds"],
            "samples": at["samples"]["pgd_from_photo_patches"]},
        "reference": {"held_out_test_digits": {**at_results["reference"]["mnist_test_vs_train"],
                                               "nn_l2_to_train": mean_nn_distance(test.x[:args.n_eval], train.x)}},
        "quality_measure": at_results["quality_measure"],
        "files": ["dsgan/gan_baseline_samples.png", "dsgan/gan_baseline_nearest.png"],
    }
    write_json(out / "gan_baseline.json", summary)
    g = summary["gan"]["samples"]
    print(f"GAN: FD {g['fd']:.1f} (AT {at['samples']['pgd_from_photo_patches']['fd']:.1f}, held-out digits "
          f"{at_results['reference']['mnist_test_vs_train']['fd']:.1f}); {trainer.step} iterations in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
