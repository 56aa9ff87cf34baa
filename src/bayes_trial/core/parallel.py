"""Independent pieces of one job (a report's sections) on the machine's cores, in forked processes.

Forking hands each worker the caller's objects (fits of a gigabyte or more) without pickling them;
only the results travel back. Where forking is not safe to rely on (macOS, Windows), or with one core
or one piece, the pieces run one after the other in the calling process, with the same results.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from bayes_trial.core.errors import BayesTrialError

Item = TypeVar("Item")
Result = TypeVar("Result")

# What the forked workers run, set just before the pool forks them: they inherit it instead of
# receiving the function and its (large) items pickled.
_SHARED: tuple[Callable, Sequence] | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_fork() -> bool:
    """Whether workers can be forked safely here: Linux (macOS's system libraries are not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def worker_count(pieces: int, jobs: int | None = None) -> int:
    """How many workers `map_forked` uses: `jobs` (default: the available cores), at most one per piece."""
    if jobs is not None and jobs < 1:
        raise BayesTrialError(f"jobs: expected at least 1 process, got {jobs}")
    wanted = available_cores() if jobs is None else jobs
    return max(1, min(wanted, pieces)) if can_fork() else 1


def _run_shared(index: int):
    function, items = _SHARED
    return function(items[index])


def map_forked(function: Callable[[Item], Result], items: Sequence[Item], jobs: int | None = None) -> list[Result]:
    """`[function(item) for item in items]`, the items spread over forked worker processes.

    Parameters
    ----------
    function
        Called once per item; its results must pickle (they travel back from the workers).
    items
        Inherited by the workers, never pickled.
    jobs
        Worker processes at most; default the available cores. With one, no process is started.

    Returns
    -------
    list
        The results in the order of `items`. An exception in a worker is raised here, as it would
        be in the sequential loop.
    """
    global _SHARED
    items = list(items)
    workers = worker_count(len(items), jobs)
    if workers == 1:
        return [function(item) for item in items]
    _SHARED = (function, items)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_shared, range(len(items))))
    finally:
        _SHARED = None
