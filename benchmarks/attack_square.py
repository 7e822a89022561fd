"""atebm's own Square Attack against ART's SquareAttack: success rate and wall-clock at the same query budget.

    python benchmarks/attack_square.py [--n 200] [--queries 1000]

A small digit classifier (:class:`atebm.metrics.features.FeatureClassifier`, width 8) is trained inside the script
by the library's classifier loop (``train_feature_classifier`` -> ``train_classifier``) on the embedded MNIST
5,000 train split (3,500 images). Its first ``n`` test images are attacked on the untargeted margin
``max_{i != y} z_i - z_y`` (:class:`atebm.attacks.AcceptanceMargin` without threshold) at Linf eps 0.1 and L2 eps
1.5, by ``search`` with one attacker at a time: method ``square`` (atebm, :mod:`atebm.attacks.square`) and
``square-art`` (ART), ``queries`` queries, one run, p_init 0.8, the same seed, on one CPU thread. Inputs
misclassified when clean are not attacked (``stop_at=0``). Reported per attacker: inputs attacked and broken, the
robust accuracy left, seconds, and the margin evaluations spent (rows passed through the network). Writes
benchmarks/results/attacks/square_vs_art.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from _timing import environment, write
from atebm.attacks import AcceptanceMargin, AttackSpec, ThreatModel, rows_of, search
from atebm.data import load_dataset
from atebm.metrics.features import train_feature_classifier
from atebm.training.classifier import accuracy

THREATS = (ThreatModel("linf", 0.1), ThreatModel("l2", 1.5))
METHODS = ("square", "square-art")


class CountedRows:
    """A ``rows -> margin`` factory that counts the rows every margin evaluation passes through the network."""

    def __init__(self, make: Callable[[torch.Tensor], nn.Module]) -> None:
        self.make, self.rows = make, 0

    def __call__(self, rows: torch.Tensor) -> nn.Module:
        margin, counter = self.make(rows), self

        class Counted(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.margin = margin

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                counter.rows += len(x)
                return self.margin(x)

        return Counted()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="test inputs attacked")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    train, test = load_dataset("mnist", split="train"), load_dataset("mnist", split="test", n=args.n)
    assert train.y is not None and test.y is not None
    began = time.perf_counter()
    model = train_feature_classifier(train.x, train.y, width=8, epochs=3, seed=args.seed).eval()
    train_seconds = time.perf_counter() - began
    clean_accuracy = accuracy(model, test.x, test.y)
    print(f"classifier: {train_seconds:.1f} s to train, clean accuracy {clean_accuracy:.3f} on {args.n} test inputs",
          flush=True)

    rows: list[dict] = []
    for threat in THREATS:
        for method in METHODS:
            spec = AttackSpec(method, steps=args.queries, p_init=0.8, label=method)
            margin_for = CountedRows(rows_of(lambda y: AcceptanceMargin(model, y), test.y))
            began = time.perf_counter()
            result = search(margin_for, test.x, threat=threat, attackers=[spec], model=model, seed=args.seed)
            seconds = time.perf_counter() - began
            entry = result.protocol["attackers"][0]
            row = {"threat": str(threat), "method": method, "implementation": entry["implementation"],
                   "attacked": entry["attacked"], "broke": entry["broke"],
                   "success_rate_of_attacked": round(entry["broke"] / max(entry["attacked"], 1), 4),
                   "robust_accuracy": round(1 - float(result.success.float().mean()), 4),
                   "seconds": round(seconds, 2), "margin_rows_evaluated": margin_for.rows,
                   "refused_proposals": entry["refused_proposals"]}
            rows.append(row)
            print(f"{threat} {method:10s} broke {row['broke']:3d}/{row['attacked']:3d} "
                  f"(robust accuracy {row['robust_accuracy']:.3f}) in {seconds:6.1f} s, "
                  f"{margin_for.rows} margin rows", flush=True)

    protocol = {
        "data": f"embedded MNIST 5,000: train split (3,500) for the classifier, the first {args.n} test images "
                f"(seed {args.seed} order) attacked",
        "classifier": "FeatureClassifier(width=8, feature_dim=64), train_feature_classifier: 3 epochs, Adam 2e-3, "
                      "batch 64, random shifts <= 2 px",
        "margin": "max_{i != y} z_i - z_y (AcceptanceMargin, no threshold); success: margin > 0",
        "attack": f"search(), one attacker at a time, {args.queries} queries, 1 run, p_init 0.8, stop_at 0 (inputs "
                  "misclassified when clean are not attacked; a broken input leaves atebm's search)",
        "threats": [str(t) for t in THREATS], "threads": 1, "seed": args.seed}
    print("protocol:")
    for key, value in protocol.items():
        print(f"  {key}: {value}")
    write("attacks/square_vs_art", {
        "command": "python benchmarks/attack_square.py " + " ".join(sys.argv[1:]), "environment": environment(),
        "protocol": protocol, "classifier": {"train_seconds": round(train_seconds, 1),
                                             "clean_accuracy": round(clean_accuracy, 4)},
        "results": rows})


if __name__ == "__main__":
    main()
