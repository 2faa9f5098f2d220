"""Timing helpers shared by the harness: whole processes (wall and CPU
time of the child), medians, geometric means and machine facts."""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class BenchError(RuntimeError):
    """A step of the benchmark could not run; the message says which."""


@dataclass
class ProcessRun:
    wall: float
    cpu: float
    stdout: str


def run_process(argv: list[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Runs `argv` to completion; wall time and the child's user+system CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(argv[:3])}… exited with {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ProcessRun(wall=wall, cpu=cpu, stdout=done.stdout)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def geomean(values: list[float]) -> float:
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    if not finite:
        return float("nan")
    return math.exp(sum(math.log(v) for v in finite) / len(finite))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def machine_facts(pipewatch: Path) -> dict[str, str]:
    """CPU model, cores, memory, OS and the versions being compared."""
    facts: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        facts["cpu"] = platform.processor() or "unknown"
    facts["cores"] = str(os.cpu_count())
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                kib = int(line.split()[1])
                facts["memory"] = f"{kib / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        facts["memory"] = "unknown"
    facts["os"] = f"{platform.system()} {platform.release()}"
    facts["python"] = platform.python_version()
    version = subprocess.run([str(pipewatch), "--version"], capture_output=True, text=True)
    facts["pipewatch"] = version.stdout.strip() or "unknown"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True)
    facts["rustc"] = rustc.stdout.strip() or "unknown"
    import datafusion
    import duckdb
    import pyarrow
    import sklearn

    facts["duckdb"] = duckdb.__version__
    facts["datafusion (Python)"] = datafusion.__version__
    facts["pyarrow"] = pyarrow.__version__
    facts["scikit-learn"] = sklearn.__version__
    return facts
