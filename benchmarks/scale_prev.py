"""No change slows the mnist preset on CPU: this working tree against a previous commit, in one run (issue 15).

The previous commit is checked out with ``git worktree add --detach <dir> <commit>`` (the main tree is untouched).
The two arms alternate, ``--rounds`` times each: every measurement is a fresh process with ``PYTHONPATH`` set to
that arm's ``src`` (the script checks which copy of atebm it imported) that trains the mnist preset (network,
batch 32, R1, published config; random 28x28 images) at K = 0 and at K = 16 for ``--iters`` iterations after two
warm-up iterations, one torch thread, and reports CPU seconds per iteration (``time.process_time``: less sensitive
than the wall clock to other users of the machine). The ratio current / previous is taken per round, then the median.

Run: ``git worktree add --detach /tmp/atebm_prev HEAD`` then
``nice -n 10 python benchmarks/scale_prev.py --prev /tmp/atebm_prev`` (writes benchmarks/results/scale/prev.json).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _timing import environment

OUT = Path(__file__).with_name("results") / "scale" / "prev.json"
ROOT = Path(__file__).resolve().parent.parent

SNIPPET = r"""
import json, sys, time, torch
torch.set_num_threads(1)
import atebm
from atebm import Trainer
from atebm.presets import PRESETS
assert atebm.__file__.startswith(sys.argv[1]), (atebm.__file__, sys.argv[1])
iters, out = int(sys.argv[2]), {}
g = torch.Generator().manual_seed(0)
data, p0 = torch.rand(512, 1, 28, 28, generator=g), torch.rand(512, 1, 28, 28, generator=g)
for k in (0, 16):
    config = PRESETS["mnist"].config(k_start=k, k_max=k, device="cpu", progress=False, log_every=10**9,
                                     ckpt_every=10**9, max_iters=10**9)
    trainer = Trainer(config, data, p0)
    for _ in range(2):
        trainer.train_step()
    start = time.process_time()
    for _ in range(iters if k == 0 else max(1, iters // 4)):
        trainer.train_step()
    out[k] = (time.process_time() - start) / (iters if k == 0 else max(1, iters // 4))
print("RESULT " + json.dumps(out))
"""


def run_arm(root: Path, iters: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    done = subprocess.run([sys.executable, "-c", SNIPPET, str(root / "src"), str(iters)], env=env, check=True,
                          capture_output=True, text=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return {f"k{k}": v for k, v in json.loads(line[len("RESULT "):]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prev", required=True, help="a worktree of the previous commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    prev = Path(args.prev).resolve()
    commit = subprocess.run(["git", "-C", str(prev), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    rounds = []
    for _ in range(args.rounds):
        previous, current = run_arm(prev, args.iters), run_arm(ROOT, args.iters)
        rounds.append({"previous": previous, "current": current,
                       "ratio": {k: current[k] / previous[k] for k in current}})
        print(rounds[-1], flush=True)
    ratios = {k: statistics.median(r["ratio"][k] for r in rounds) for k in rounds[0]["ratio"]}
    result = {"command": "nice -n 10 python benchmarks/scale_prev.py " + " ".join(sys.argv[1:]),
              "previous_commit": commit, "environment": environment(),
              "note": "CPU seconds per iteration of the mnist preset (batch 32, R1 = 1) at K = 0 and K = 16, one "
                      "thread, shared 2-core machine; ratio = current / previous, median over alternating rounds "
                      "(< 1 = faster now). 'current' is the working tree, including other engineers' uncommitted "
                      "changes.",
              "median_ratio_current_over_previous": ratios, "rounds": rounds}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
