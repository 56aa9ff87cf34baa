"""`core.parallel.map_forked`: the sequential loop's results, in order, from forked workers that
inherit their items instead of receiving them pickled."""

from __future__ import annotations

import os
import threading

import pytest

from bayes_trial.core import parallel
from bayes_trial.core.errors import BayesTrialError

forking = pytest.mark.skipif(not parallel.can_fork(), reason="workers are forked only on Linux")


def _pid_and_square(item):
    lock, number = item  # a lock cannot be pickled: it reaches the worker only by fork
    with lock:
        return os.getpid(), number * number


def _refuse_three(number):
    if number == 3:
        raise ValueError(f"item {number} refused")
    return number


@forking
def test_results_come_back_in_order_from_other_processes():
    items = [(threading.Lock(), number) for number in range(7)]
    results = parallel.map_forked(_pid_and_square, items, jobs=2)
    assert [square for _, square in results] == [n * n for n in range(7)]
    assert os.getpid() not in {pid for pid, _ in results}


def test_one_job_runs_in_this_process():
    results = parallel.map_forked(_pid_and_square, [(threading.Lock(), 4)] * 3, jobs=1)
    assert results == [(os.getpid(), 16)] * 3


@forking
def test_a_workers_exception_is_raised_in_the_caller():
    with pytest.raises(ValueError, match="item 3 refused"):
        parallel.map_forked(_refuse_three, range(5), jobs=2)


def test_workers_are_capped_by_the_pieces_and_at_least_one():
    assert parallel.worker_count(1, jobs=8) == 1
    assert parallel.worker_count(3, jobs=2) == (2 if parallel.can_fork() else 1)
    with pytest.raises(BayesTrialError, match="jobs: expected at least 1 process, got 0"):
        parallel.worker_count(3, jobs=0)
