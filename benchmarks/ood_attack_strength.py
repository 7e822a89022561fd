"""Is the default worst-case search strong enough? (G App. J: "the worst results obtained with grid search are
only marginally lower than reported ones".)

For each model (a run folder or a model file) the embedded OOD suites are evaluated on the same samples with

* ``default``: the attack of ``atebm eval-ood`` (``AttackConfig()``: atebm PGD + ART APGD),
* ``default+square``: the same plus ART's gradient-free Square attack (``square_steps`` iterations),
* ``strong``: PGD grid of steps x step sizes with a random restart, APGD with more steps and restarts, and Square
  with 3x the iterations,

and the AUROC differences (default minus strong: > 0 means the default search missed worst cases), the time of
each and the NaN rows are recorded. Then one attack of 10 steps on one batch of the same model is timed: atebm.pgd
against ART's AutoProjectedGradientDescent (through atebm's attacker) and ART's ProjectedGradientDescent, and 100
iterations of Square, as ratios to atebm.pgd (interleaved repeats, so a busy machine still gives stable numbers).

    python benchmarks/ood_attack_strength.py --checkpoint RUN_OR_FILE [--checkpoint ...] [--n 32] [--threads 1]

Writes benchmarks/results/ood_attack_strength.json.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch import nn

from _timing import environment, interleaved, write


def _art_pgd(model: nn.Module, x: torch.Tensor, steps: int, eps: float):
    from art.attacks.evasion import ProjectedGradientDescent

    from atebm.attacks import MarginLogits
    from atebm.attacks.art import art_classifier

    view = MarginLogits()       # the attack layer's one ART view; margin: the score itself (no reference)
    view.bind(lambda rows: model, torch.arange(len(x)))
    classifier = art_classifier(view, tuple(x.shape[1:]), torch.device("cpu"))
    attack = ProjectedGradientDescent(classifier, norm=2, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
                                      targeted=True, num_random_init=0, batch_size=len(x), verbose=False)
    target = np.ones(len(x), dtype=np.int64)
    return lambda: attack.generate(x.numpy(), target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="run folder or model file (repeatable)")
    parser.add_argument("--n", type=int, default=32, help="OOD samples per set")
    parser.add_argument("--n-in", type=int, default=200)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.0, 2.0, 3.0, 5.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from atebm import load_model, pgd
    from atebm.ood import AttackConfig, OODEvalConfig, embedded_suites, evaluate, in_distribution, worst_case

    default = OODEvalConfig(eps=tuple(args.eps))
    with_square = default.replace(attackers=("pgd", "apgd", "square"))
    strong = default.replace(attackers=("pgd", "apgd", "square"), pgd_steps=(20, 50), pgd_step_sizes=(None, 0.25, 1.0),
                             pgd_random_restarts=1, apgd_steps=50, apgd_restarts=3,
                             square_steps=3 * default.attack.square_steps)
    report: dict = {"command": "python benchmarks/ood_attack_strength.py " + " ".join(sys.argv[1:]),
                    "environment": environment(), "n_in": args.n_in, "n_ood": args.n, "eps": args.eps,
                    "default": default.attack.to_dict(), "default_square": with_square.attack.to_dict(),
                    "strong": strong.attack.to_dict(), "models": {}}
    for path in args.checkpoint:
        model = load_model(path)
        size, channels = model.meta.get("size", 28), model.meta.get("channels", 1)
        in_x = in_distribution(n=args.n_in, size=size, channels=channels, seed=0)
        suites = embedded_suites(args.n, size=size, channels=channels, seed=0)
        results, timings = {}, {}
        for name, config in (("default", default), ("default_square", with_square), ("strong", strong)):
            t = time.perf_counter()
            results[name] = evaluate({"m": model}, in_x, suites, config, verbose=False)
            timings[f"{name}_s"] = time.perf_counter() - t
        models = {name: r["models"]["m"] for name, r in results.items()}
        gaps = {key: {set_name: {k: round(v - models["strong"]["sets"][set_name]["auroc_by_eps"][k], 4)
                                 for k, v in entry["auroc_by_eps"].items()}
                      for set_name, entry in models[key]["sets"].items()}
                for key in ("default", "default_square")}
        report["models"][str(path)] = {
            "auroc_default_minus_strong": gaps["default"],
            "max_gap_default": max(g for s in gaps["default"].values() for g in s.values()),
            "auroc_default_square_minus_strong": gaps["default_square"],
            "max_gap_default_square": max(g for s in gaps["default_square"].values() for g in s.values()),
            "mean_auroc": {name: m["mean_auroc_by_eps"] for name, m in models.items()},
            "failed_rows": {name: r["protocol"]["failed_rows"] for name, r in results.items()},
            "nan_proposals": {name: r["protocol"]["nan_proposals"] for name, r in results.items()},
            "timings_s": timings,
            "square_cost_ratio": timings["default_square_s"] / timings["default_s"],
        }

    # one attack of 10 steps on one batch: atebm.pgd vs ART's APGD (atebm's attacker) and PGD, and Square (L2, eps 3)
    model = load_model(args.checkpoint[0])
    x = embedded_suites(64, seed=1, names=("photos",))["photos"]
    steps, eps = 10, 3.0
    cases = {
        "atebm_pgd": lambda: pgd(model, x, steps=steps, step_size=2.5 * eps / steps, eps=eps),
        "art_apgd": lambda: worst_case(model, x, eps=eps, config=AttackConfig(attackers=("apgd",),
                                                                             apgd_steps=steps)),
        "art_pgd": _art_pgd(model, x, steps, eps),
        "art_square_100": lambda: worst_case(model, x, eps=eps, config=AttackConfig(attackers=("square",),
                                                                                   square_steps=100)),
    }
    t = interleaved(cases, args.rounds, 1)
    report["step_timing"] = {"batch": len(x), "steps": steps, "eps": eps, "seconds": t,
                             "art_apgd_over_atebm_pgd": t["art_apgd"] / t["atebm_pgd"],
                             "art_pgd_over_atebm_pgd": t["art_pgd"] / t["atebm_pgd"],
                             "art_square_100_over_atebm_pgd": t["art_square_100"] / t["atebm_pgd"]}
    write("ood_attack_strength", report)


if __name__ == "__main__":
    main()
