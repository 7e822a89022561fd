"""Resumable stages of the long benchmarks (``fashion.py``, ``ood_table4.py``): each stage writes a record with its
command, wall and CPU seconds and thread count to ``WORK/done/<stage>.json`` and to the results folder; a stage
whose record exists is skipped unless asked to run again."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StageRecords:
    """The work folder of one benchmark invocation and where its stage records go."""

    def __init__(self, work: Path, results: Path, smoke: bool = False) -> None:
        self.work, self.results, self.smoke = work, results, smoke
        self.command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])

    def done(self, stage: str) -> Path:
        return self.work / "done" / f"{stage}.json"

    def record(self, stage: str, payload: dict[str, Any], wall_start: float, cpu_start: float) -> None:
        from atebm.training import write_json

        payload = {"stage": stage, "smoke": self.smoke, "command": self.command,
                   "wall_seconds": round(time.perf_counter() - wall_start, 1),
                   "cpu_seconds": round(time.process_time() - cpu_start, 1), "torch_threads": torch.get_num_threads(),
                   **payload}
        write_json(self.done(stage), payload)
        write_json(self.results / f"{stage}.json", payload)
        say(f"[{stage}] {payload['wall_seconds']:.0f} s wall -> {self.results / f'{stage}.json'}")

    def read(self, stage: str) -> dict[str, Any]:
        path = self.done(stage)
        if not path.exists():
            raise FileNotFoundError(f"stage {stage!r} has not run in {self.work}: run it first (--stages {stage})")
        return json.loads(path.read_text())


def run_stages(records: StageRecords, functions: dict[str, Callable[[Any], dict[str, Any]]],
               selected: Sequence[str], redo: Sequence[str]) -> None:
    """Runs ``functions[stage](records)`` for every selected stage in the order of ``functions``, skipping those
    done before (unless in ``redo``), and records each."""
    records.work.mkdir(parents=True, exist_ok=True)
    for stage, function in functions.items():
        if stage not in selected:
            continue
        if records.done(stage).exists() and stage not in redo:
            say(f"[{stage}] done before: {records.done(stage)}")
            continue
        say(f"[{stage}] running")
        wall, cpu = time.perf_counter(), time.process_time()
        records.record(stage, function(records), wall, cpu)
