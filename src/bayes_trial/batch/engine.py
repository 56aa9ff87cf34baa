"""Many independent tasks (simulate + fit, typically) on Dask distributed, resumable.

`run_batch` sends every task that has no stored result yet to a Dask cluster: an in-process
`LocalCluster` by default (one single-threaded worker process per core), or an existing cluster
given as `scheduler="tcp://HOST:PORT"`. As each task finishes, the client writes its record to
`RESULTS_DIR/KEY.json` atomically (temporary file, then rename), so a batch that is interrupted,
even by SIGKILL, leaves only complete records and a rerun picks up where it stopped. A task that
raises is recorded with its error and does not stop the others.

A task is `Task(key, func, kwargs)`: `func` must be importable by the workers (a module-level
function of an installed package) and return something JSON can hold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayes_trial.core.errors import BayesTrialError
from bayes_trial.core.parallel import available_cores
from bayes_trial.core.paths import write_atomic

MANIFEST = "manifest.json"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PROGRESS_EVERY_S = 2.0


class BatchError(BayesTrialError):
    """A results folder or cluster that a batch cannot use."""


@dataclass(frozen=True)
class Task:
    """One unit of work: `func(**kwargs)`, stored under `key` (letters, digits, '_', '.', '-')."""

    key: str
    func: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchResult:
    """Every task's record (status 'ok' with its result, or 'failed' with its error), in task order."""

    results_dir: Path
    records: dict[str, dict]
    reused: int = 0

    @property
    def completed(self) -> list[str]:
        return [k for k, r in self.records.items() if r["status"] == "ok"]

    @property
    def failed(self) -> list[str]:
        return [k for k, r in self.records.items() if r["status"] == "failed"]

    def results(self) -> dict[str, Any]:
        """The results of the tasks that succeeded, by key."""
        return {k: r["result"] for k, r in self.records.items() if r["status"] == "ok"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"task result holds a {type(value).__name__}, which JSON cannot store")


def execute(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict:
    """Run one task on a worker and wrap the outcome, so that an exception becomes a record."""
    started = time.perf_counter()
    try:
        result = func(**kwargs)
        json.dumps(result, default=_jsonable)  # fail here, as this task's error, not in the client
    except Exception as exc:  # any task error is data for the record, never a reason to stop
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "traceback": traceback.format_exc(), "seconds": round(time.perf_counter() - started, 3)}
    return {"status": "ok", "result": result, "seconds": round(time.perf_counter() - started, 3)}


def write_json_atomic(path: Path, content: Any) -> None:
    """Write JSON so that `path` holds either nothing or the complete file, whatever kills us."""
    write_atomic(path, lambda handle: json.dump(content, handle, default=_jsonable, allow_nan=True))


def read_results(results_dir: str | os.PathLike) -> dict[str, dict]:
    """Stored task records by key; temporary files of an interrupted write are ignored."""
    folder = Path(results_dir)
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name == MANIFEST:
            continue
        try:
            records[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # not ours or damaged outside a batch: the task runs again and replaces it
    return records


def _check_manifest(folder: Path, manifest: dict | None) -> None:
    """A results folder belongs to one batch: refuse to mix in results made with other settings."""
    if manifest is None:
        return
    path = folder / MANIFEST
    wanted = json.loads(json.dumps(manifest, default=_jsonable))
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise BatchError(
                f"{folder}: holds results of a batch with other settings ({', '.join(changed)} differ); "
                f"use another output folder or remove this one")
    else:
        write_json_atomic(path, wanted)


def _check_tasks(tasks: list[Task]) -> None:
    seen = set()
    for task in tasks:
        if not _KEY.match(task.key):
            raise ValueError(f"task key {task.key!r}: use letters, digits, '_', '.' and '-' only")
        if task.key in seen:
            raise ValueError(f"task key {task.key!r} is used twice")
        seen.add(task.key)


class _Progress:
    """completed / failed / remaining on stderr: one updating line on a terminal, else a line every few s."""

    def __init__(self, label: str, total: int, reused: int, enabled: bool):
        self.label, self.total, self.reused, self.enabled = label, total, reused, enabled
        self.done = self.failed = 0
        self.started = time.perf_counter()
        self.last = -math.inf
        self.shown = ""
        self.tty = enabled and sys.stderr.isatty()

    def update(self, status: str | None = None, final: bool = False) -> None:
        if status == "ok":
            self.done += 1
        elif status == "failed":
            self.failed += 1
        now = time.perf_counter()
        if not self.enabled or (not final and not self.tty and now - self.last < _PROGRESS_EVERY_S):
            return
        remaining = self.total - self.done - self.failed
        counts = (f"{self.label}: {self.done + self.failed}/{self.total} finished "
                  f"({self.done} completed, {self.failed} failed), {remaining} remaining"
                  + (f", {self.reused} stored earlier" if self.reused else ""))
        if final and counts == self.shown and not self.tty:
            return  # the last line already says it
        self.last, self.shown = now, counts
        end = "\n" if final or not self.tty else ""
        print(("\r" if self.tty else "") + f"{counts} [{now - self.started:.0f} s]", end=end, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _client(scheduler: str | None, n_workers: int | None):
    """A Dask client on the given scheduler, or on a LocalCluster that lives as long as the client."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise BatchError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=n_workers or available_cores(), threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_batch(
    tasks: Iterable[Task],
    results_dir: str | os.PathLike,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    manifest: dict | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    label: str = "batch",
) -> BatchResult:
    """Run the tasks that have no stored record yet and store each record as soon as it arrives.

    `manifest` (any JSON-able dict: the settings that produced the tasks) is written to the folder
    on the first run; a later run with different settings is refused instead of mixing results.
    Failed tasks are kept as failed on a rerun unless `retry_failed`.
    """
    tasks = list(tasks)
    _check_tasks(tasks)
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _check_manifest(folder, manifest)
    for stale in folder.glob(".*.tmp"):  # left by a write that was killed half-way
        stale.unlink(missing_ok=True)

    stored = read_results(folder)
    keys = {t.key for t in tasks}
    done = {k: r for k, r in stored.items() if k in keys and (r.get("status") == "ok" or
                                                             (r.get("status") == "failed" and not retry_failed))}
    pending = [t for t in tasks if t.key not in done]
    bar = _Progress(label, len(tasks), len(done), progress)
    bar.done = sum(r["status"] == "ok" for r in done.values())
    bar.failed = len(done) - bar.done
    records = dict(done)
    if pending:
        records.update(_run_pending(pending, folder, scheduler, n_workers, bar))
    bar.update(final=True)
    return BatchResult(folder, {t.key: records[t.key] for t in tasks}, reused=len(done))


def _run_pending(pending: list[Task], folder: Path, scheduler: str | None, n_workers: int | None,
                 bar: _Progress) -> dict[str, dict]:
    from distributed import as_completed

    records = {}
    token = uuid.uuid4().hex[:8]
    with _client(scheduler, n_workers) as client:
        futures = {client.submit(execute, t.func, t.kwargs, key=f"bayes-trial-{t.key}-{token}", pure=False): t
                   for t in pending}
        try:
            for future in as_completed(futures):
                task = futures[future]
                if future.status == "finished":
                    record = future.result()
                else:  # the worker itself died (KilledWorker) or the task was cancelled
                    exc = future.exception()
                    record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                              "traceback": "", "seconds": None}
                record = {"key": task.key, **record}
                write_json_atomic(folder / f"{task.key}.json", record)
                records[task.key] = record
                future.release()
                bar.update(record["status"])
        finally:  # leave a shared cluster free of our unfinished work
            client.cancel(list(futures))
    return records
