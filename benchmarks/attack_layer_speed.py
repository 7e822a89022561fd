"""Does the one attack layer cost anything? The OOD evaluation of a model timed against the previous commit's code,
interleaved in one run (no absolute timing is claimed; the ratio is the result).

    git worktree add /tmp/atebm-base <previous commit>
    python benchmarks/attack_layer_speed.py --checkpoint runs/demo --baseline /tmp/atebm-base [--rounds 3]

Each round runs ``atebm eval-ood`` (the README's OOD evaluation: every embedded suite, L2 eps 0-8, PGD + APGD, its
default protocol) once with this tree's ``src`` and once with the baseline's, each in a fresh process on one thread,
alternating, and reports the per-round wall times, the median ratio (this tree / baseline) and both runs' mean
worst-case AUROC per eps (the two searches differ in their APGD set-up and in keeping the best iterate, so the
worst cases may differ either way: on the committed demo model they agree up to eps 3 and the layer's AUROC is
0.0003 / 0.0019 higher at eps 5 / 8). Writes benchmarks/results/attack_layer_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import environment, write

HERE = Path(__file__).resolve().parent.parent


def run_once(src: Path, checkpoint: str, extra: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "atebm", "eval-ood", "--checkpoint", checkpoint, "--out", out,
                   "--threads", "1", "--no-report", *extra]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        result = json.loads((Path(out) / "ood.json").read_text())
    return seconds, result


def summary(result: dict) -> dict:
    """Per model the mean worst-case AUROC over the suites at each eps (ood.json's ``mean_auroc_by_eps``)."""
    return {model: block.get("mean_auroc_by_eps") for model, block in result["models"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--baseline", required=True, help="a checkout of the previous commit (its src/ is used)")
    parser.add_argument("--tree", default=str(HERE), help="the checkout to time against the baseline (default: this "
                        "one; a clean worktree keeps edits in progress out of the timing)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more eval-ood options")
    args = parser.parse_args()
    trees = {"this": Path(args.tree) / "src", "baseline": Path(args.baseline) / "src"}
    seconds: dict[str, list[float]] = {name: [] for name in trees}
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, src in trees.items():
            took, results[name] = run_once(src, args.checkpoint, args.extra)
            seconds[name].append(round(took, 1))
            print(f"{name}: {took:.1f} s", flush=True)
    ratio = statistics.median(a / b for a, b in zip(seconds["this"], seconds["baseline"]))
    commits = {name: subprocess.run(["git", "-C", str(path.parent), "rev-parse", "HEAD"], capture_output=True,
                                    text=True).stdout.strip() for name, path in trees.items()}
    write("attack_layer_speed", {
        "command": "python benchmarks/attack_layer_speed.py " + " ".join(sys.argv[1:]),
        "environment": environment(), "commits": commits, "seconds": seconds,
        "ratio_this_over_baseline": round(ratio, 3), "target": "ratio <= 1.0 (no longer than before)",
        "mean_auroc_by_eps": {name: summary(result) for name, result in results.items()}})
    print(f"median ratio this / baseline: {ratio:.3f}")


if __name__ == "__main__":
    main()
