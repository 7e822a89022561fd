"""Semi-supervised learning with DSGAN complement samples (S Sec. 4.1, 5.1, Tab. 1-2) at CPU scale.

:func:`atebm.dsgan.run_ssl_benchmark` (``atebm dsgan ssl``): MNIST 5,000 (3,500 train images unlabelled, 10 labels
per class drawn per seed, the 1,000 test images for the error), the S Tab. 4 classifier and generator, for each
seed: DSGAN complements (feature-space DSGAN, alpha 0.8, p_dbar = beta f(x_lab) + (1 - beta) f(x_unl),
beta ~ U(0, 0.3), WGAN-GP critic), the feature-matching GAN (Salimans et al. 2016) and the labels alone.
Writes ``benchmarks/results/dsgan/ssl.json`` (errors per seed, mean +- std, the paper's numbers, the command) and
the generator sample grids ``ssl_samples_<mode>.png``; the report goes to ``--out``. ``--dataset fashion`` runs the
same on Fashion-MNIST (55,000 unlabelled, 10,000 test images; ``ssl_fashion.json``).

    nice python benchmarks/dsgan_ssl.py --seeds 0,1,2 max_iters=3000 log_every=250   # ~2.5 h, busy 2-core machine
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from atebm.cli.train import parse_overrides
from atebm.dsgan import SSL_MODES, run_ssl_benchmark

RESULTS = Path(__file__).parent / "results" / "dsgan"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/dsgan/ssl")
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2],
                        help="comma-separated (default: 0,1,2)")
    parser.add_argument("--modes", type=lambda t: t.split(","), default=list(SSL_MODES),
                        help=f"comma-separated, from {','.join(SSL_MODES)}")
    parser.add_argument("--dataset", default="mnist", help="mnist (results: ssl.json) or fashion (ssl_fashion.json)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="SSLConfig fields, e.g. max_iters=2000")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/dsgan_ssl.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out if args.dataset == "mnist" else f"{args.out}_{args.dataset}")
    summary = run_ssl_benchmark(out, modes=args.modes, seeds=args.seeds, dataset=args.dataset,
                                overrides=parse_overrides(args.overrides), device="cpu", command=command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.dataset == "mnist" else f"_{args.dataset}"
    shutil.copy(out / "ssl.json", RESULTS / f"ssl{suffix}.json")
    for png in out.glob("ssl_samples_*.png"):
        shutil.copy(png, RESULTS / png.name.replace("ssl_samples", f"ssl{suffix}_samples"))
    for mode, r in summary["results"].items():
        print(f"{mode}: {r['error_percent_mean']:.2f} +- {r['error_percent_std']:.2f} % test error "
              f"({r['n_runs']} seeds: {r['per_seed']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
