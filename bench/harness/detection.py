"""Detection speed: pipewatch's backfill (every detector, every event of
the ingested organisation in time order, reading the lake included), as
events per second and per CPU-second."""

from __future__ import annotations

import json
from pathlib import Path

from measure import median, run_process


def backfill(bins: Path, lake: Path, reps: int) -> dict[str, float]:
    argv = [str(bins / "pipewatch-bench"), "detect", "--data-dir", str(lake)]
    answers = []
    for _ in range(reps):
        answers.append(json.loads(run_process(argv).stdout.strip().splitlines()[-1]))
    events = answers[0]["events"]
    wall = median([a["seconds"] for a in answers])
    cpu = median([a["cpu_seconds"] for a in answers])
    return {
        "events": events,
        "findings": answers[0]["findings"],
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": events / wall if wall else 0.0,
        "events_per_cpu_s": events / cpu if cpu else 0.0,
        "command": " ".join(argv),
    }
