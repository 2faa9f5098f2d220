"""Detection scoring: pipewatch's resource detector against scikit-learn's
IsolationForest on the same feature vectors (each job's runs in log space,
as the detector sees them), per CPU-second and at the same alert budget.

The IsolationForest is given the detector's own online policy: per job, a
model fitted on the job's last runs (at most 200) once it has 8, refitted
every 20 new runs, and each run scored by the model fitted before it. A
second, cheaper variant fits one forest per job on all its runs and scores
them in one call, which sees the future and is shown for reference.

The online forest refits so often that it scores about a hundred vectors
per CPU-second, so on a large lake it runs on a sample of whole jobs
(picked by a hash of their names, up to `sample_cap` vectors); its quality
is then compared with pipewatch's flags on the same sample."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.ensemble import IsolationForest

from measure import run_process

MIN_HISTORY = 8
MAX_HISTORY = 200
REFIT_EVERY = 20


def forest(seed: int) -> IsolationForest:
    return IsolationForest(n_estimators=100, random_state=seed, n_jobs=1)


def online(jobs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Anomaly scores (higher is stranger; NaN before a job has a model)."""
    scores = {}
    for index, (job, x) in enumerate(jobs.items()):
        out = np.full(len(x), np.nan)
        start = MIN_HISTORY
        while start < len(x):
            history = x[max(0, start - MAX_HISTORY) : start]
            model = forest(index).fit(history)
            fitted_on = min(len(history), MAX_HISTORY)
            end = min(len(x), start + min(REFIT_EVERY, fitted_on))
            out[start:end] = -model.score_samples(x[start:end])
            start = end
        scores[job] = out
    return scores


def batch(jobs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    scores = {}
    for index, (job, x) in enumerate(jobs.items()):
        if len(x) < MIN_HISTORY:
            scores[job] = np.full(len(x), np.nan)
            continue
        scores[job] = -forest(index).fit(x).score_samples(x)
    return scores


def quality(flagged: np.ndarray, incident: np.ndarray) -> dict[str, float]:
    caught = {i for i in incident[flagged] if i is not None}
    every = {i for i in incident if i is not None}
    false = int(sum(1 for i in incident[flagged] if i is None))
    return {
        "flagged": int(flagged.sum()),
        "incidents": len(every),
        "caught": len(caught),
        "false_flags": false,
        "precision": (int(flagged.sum()) - false) / flagged.sum() if flagged.sum() else 0.0,
    }


def top(scores: np.ndarray, k: int) -> np.ndarray:
    flagged = np.zeros(len(scores), dtype=bool)
    if k <= 0:
        return flagged
    finite = np.where(np.isfinite(scores), scores, -np.inf)
    flagged[np.argsort(-finite, kind="stable")[:k]] = True
    return flagged & np.isfinite(scores)


def sample_jobs(groups: dict[str, np.ndarray], cap: int) -> list[str]:
    """Whole jobs in a stable pseudo-random order until `cap` vectors."""
    order = sorted(groups, key=lambda key: hashlib.sha256(key.encode()).hexdigest())
    chosen, total = [], 0
    for key in order:
        if total + len(groups[key]) > cap and chosen:
            continue
        chosen.append(key)
        total += len(groups[key])
    return chosen


def compare(bins: Path, lake: Path, labels: Path, work: Path, sample_cap: int = 20_000) -> dict:
    vectors = work / "resource-vectors.parquet"
    argv = [
        str(bins / "pipewatch-bench"), "resources", "--data-dir", str(lake),
        "--labels", str(labels), "--out", str(vectors),
    ]
    pipewatch = json.loads(run_process(argv).stdout.strip().splitlines()[-1])
    table = pq.read_table(vectors)
    job = np.array(table.column("job").to_pylist(), dtype=object)
    x_all = np.column_stack(
        [table.column(f"x{i}").to_numpy(zero_copy_only=False) for i in range(4)]
    )
    incident = np.array(table.column("incident").to_pylist(), dtype=object)
    pw_score = table.column("pipewatch_score").to_numpy(zero_copy_only=False)
    pw_flagged = np.isfinite(pw_score)

    groups: dict[str, np.ndarray] = {}
    positions: dict[str, np.ndarray] = {}
    for key in dict.fromkeys(job):
        where = np.flatnonzero(job == key)
        x = x_all[where]
        x = x[:, ~np.isnan(x).any(axis=0)]
        groups[key], positions[key] = x, where

    sample = sample_jobs(groups, sample_cap)
    in_sample = np.zeros(len(job), dtype=bool)
    for key in sample:
        in_sample[positions[key]] = True

    results = {}
    for name, method, keys in (("online", online, sample), ("batch", batch, list(groups))):
        chosen = {key: groups[key] for key in keys}
        cpu, wall = time.process_time(), time.perf_counter()
        per_job = method(chosen)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        scores = np.full(len(job), np.nan)
        for key in keys:
            scores[positions[key]] = per_job[key]
        scope = in_sample if name == "online" else np.ones(len(job), dtype=bool)
        budget = int((pw_flagged & scope).sum())
        vectors = int(scope.sum())
        results[name] = {
            "cpu_s": cpu,
            "wall_s": wall,
            "vectors": vectors,
            "vectors_per_cpu_s": vectors / cpu if cpu else 0.0,
            "quality": quality(top(np.where(scope, scores, np.nan), budget)[scope], incident[scope]),
        }
    pw_rate = len(job) / pipewatch["score_cpu_seconds"] if pipewatch["score_cpu_seconds"] else 0.0
    return {
        "vectors": len(job),
        "jobs": len(groups),
        "pipewatch": {
            "cpu_s": pipewatch["score_cpu_seconds"],
            "wall_s": pipewatch["score_seconds"],
            "vectors_per_cpu_s": pw_rate,
            "quality": quality(pw_flagged, incident),
        },
        "pipewatch_on_sample": quality(pw_flagged[in_sample], incident[in_sample]),
        "sample_jobs": len(sample),
        "sklearn_online": results["online"],
        "sklearn_batch": results["batch"],
        "speedup": pw_rate / results["online"]["vectors_per_cpu_s"]
        if results["online"]["vectors_per_cpu_s"]
        else 0.0,
        "command": " ".join(argv),
    }
