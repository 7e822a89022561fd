"""Is the default worst-case search strong enough? (G App. J: "the worst results obtained with grid search are
only marginally lower than reported ones".)

For each checkpoint, evaluates the embedded OOD suites with the fast default attack of ``atebm eval-ood`` and with
a much stronger one (PGD grid of steps x step sizes with random restarts, APGD with more steps and restarts) on
the same samples, and prints the AUROC differences; also times one attack step of ``atebm.pgd`` against
torchattacks' APGD and PGDL2 on the same model and batch (ratios, so that a busy machine still gives stable
numbers).

    python benchmarks/ood_attack_strength.py --checkpoint A.pt [--checkpoint B.pt] [--n 32] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def _time(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="checkpoint (repeatable)")
    parser.add_argument("--n", type=int, default=32, help="OOD samples per set")
    parser.add_argument("--n-in", type=int, default=200)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.0, 2.0, 3.0, 5.0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import torchattacks

    from atebm import load, pgd
    from atebm.ood import AttackConfig, embedded_suites, evaluate, in_distribution
    from atebm.ood.attacks import TwoClassAdapter
    from atebm.ood.pipeline import DEFAULTS

    fast = AttackConfig(pgd_steps=DEFAULTS["pgd_steps"], apgd_steps=DEFAULTS["apgd_steps"])
    strong = AttackConfig(pgd_steps=(20, 50), pgd_step_sizes=(None, 0.25, 1.0), pgd_random_restarts=1,
                          apgd_steps=50, apgd_restarts=3)
    in_x = in_distribution(n=args.n_in, seed=0)
    suites = embedded_suites(args.n, seed=0)
    report = {"n_in": args.n_in, "n_ood": args.n, "eps": args.eps, "fast": fast.to_dict(), "strong": strong.to_dict(),
              "models": {}}
    for path in args.checkpoint:
        model = load(path)
        timings = {}
        t = time.perf_counter()
        a = evaluate({"m": model}, in_x, suites, args.eps, config=fast, verbose=False)["models"]["m"]
        timings["fast_s"] = time.perf_counter() - t
        t = time.perf_counter()
        b = evaluate({"m": model}, in_x, suites, args.eps, config=strong, verbose=False)["models"]["m"]
        timings["strong_s"] = time.perf_counter() - t
        gaps = {}
        for set_name, entry in a["sets"].items():
            gaps[set_name] = {k: round(v - b["sets"][set_name]["auroc_by_eps"][k], 4)
                              for k, v in entry["auroc_by_eps"].items()}
        worst_gap = max(g for per_set in gaps.values() for g in per_set.values())
        report["models"][path] = {"auroc_fast_minus_strong": gaps, "max_gap": worst_gap,
                                  "mean_auroc_fast": a["mean_auroc_by_eps"], "mean_auroc_strong": b["mean_auroc_by_eps"],
                                  "timings_s": timings}

    # one attack step: atebm.pgd vs torchattacks (same model, batch of 64, L2, eps 3)
    model = load(args.checkpoint[0])
    x = suites["photos"][:64]
    steps = 10
    ours = _time(lambda: pgd(model, x, steps=steps, step_size=0.75, eps=3.0))
    adapter = TwoClassAdapter(model, x.shape[1:])
    labels = torch.zeros(len(x), dtype=torch.long)
    apgd = torchattacks.APGD(adapter, norm="L2", eps=3.0, steps=steps, n_restarts=1, loss="dlr")
    pgdl2 = torchattacks.PGDL2(adapter, eps=3.0, alpha=0.75, steps=steps, random_start=False)
    t_apgd = _time(lambda: apgd.perturb(x, labels, best_loss=True))
    t_pgdl2 = _time(lambda: pgdl2(x, labels))
    report["step_timing"] = {"batch": len(x), "steps": steps, "atebm_pgd_s": ours, "torchattacks_apgd_s": t_apgd,
                             "torchattacks_pgdl2_s": t_pgdl2, "apgd_over_ours": t_apgd / ours,
                             "pgdl2_over_ours": t_pgdl2 / ours}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
