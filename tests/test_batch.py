"""The batch engine: results stored one by one, resumable, failures recorded, SIGKILL-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bayes_trial.batch.engine import BatchError, Task, read_results, run_batch

# Worker processes import task functions by module name, so the tasks live in a module on PYTHONPATH.
TASKS_MODULE = '''
import os, time, uuid

def square(x, calls, pause=0.0):
    open(os.path.join(calls, f"{x}.{uuid.uuid4().hex}"), "w").close()
    time.sleep(pause)
    if x == 3:
        raise ValueError("three is not allowed")
    return {"x": x, "square": x * x}
'''


@pytest.fixture
def tasks_module(tmp_path, monkeypatch):
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "bt_test_tasks.py").write_text(TASKS_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    calls = tmp_path / "calls"
    calls.mkdir()
    import bt_test_tasks

    return bt_test_tasks, calls


def calls_per_task(calls) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in calls.iterdir():
        x = int(path.name.split(".")[0])
        counts[x] = counts.get(x, 0) + 1
    return counts


def make_tasks(module, calls, n=6, pause=0.0):
    return [Task(f"t{x:03d}", module.square, {"x": x, "calls": str(calls), "pause": pause}) for x in range(n)]


def test_failures_are_recorded_and_a_rerun_skips_stored_tasks(tasks_module, tmp_path, capfd):
    module, calls = tasks_module
    out = tmp_path / "results"
    first = run_batch(make_tasks(module, calls), out, n_workers=2, manifest={"n": 6}, label="demo")
    assert first.failed == ["t003"]
    assert first.completed == ["t000", "t001", "t002", "t004", "t005"]
    assert first.results()["t004"] == {"x": 4, "square": 16}
    record = json.loads((out / "t003.json").read_text())
    assert record["status"] == "failed" and record["error"] == "ValueError: three is not allowed"
    assert "Traceback" in record["traceback"]
    assert "demo: 6/6 finished (5 completed, 1 failed), 0 remaining" in capfd.readouterr().err

    again = run_batch(make_tasks(module, calls, n=8), out, n_workers=2, manifest={"n": 6}, retry_failed=True)
    assert again.reused == 5
    assert calls_per_task(calls) == {**{x: 1 for x in range(8)}, 3: 2}  # the failed one and the new ones ran
    assert again.completed == ["t000", "t001", "t002", "t004", "t005", "t006", "t007"]
    assert again.failed == ["t003"]

    unchanged = run_batch(make_tasks(module, calls, n=8), out, manifest={"n": 6})  # nothing left: no cluster
    assert unchanged.reused == 8 and unchanged.failed == ["t003"]
    assert calls_per_task(calls) == {**{x: 1 for x in range(8)}, 3: 2}


def test_a_results_folder_refuses_other_settings(tasks_module, tmp_path):
    module, calls = tasks_module
    run_batch([], tmp_path / "r", manifest={"draws": 100})
    with pytest.raises(BatchError, match="draws differ"):
        run_batch(make_tasks(module, calls, n=1), tmp_path / "r", manifest={"draws": 200}, progress=False)


def test_bad_task_keys_are_refused(tasks_module, tmp_path):
    module, calls = tasks_module
    with pytest.raises(ValueError, match="letters, digits"):
        run_batch([Task("../escape", module.square, {"x": 1, "calls": str(calls)})], tmp_path / "r")
    with pytest.raises(ValueError, match="used twice"):
        run_batch(make_tasks(module, calls, n=1) * 2, tmp_path / "r")


def test_runs_on_an_existing_scheduler(tasks_module, tmp_path):
    from distributed import LocalCluster

    module, calls = tasks_module
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run_batch(make_tasks(module, calls, n=3), tmp_path / "r", scheduler=cluster.scheduler_address,
                           progress=False)
    assert result.completed == ["t000", "t001", "t002"]


def test_a_killed_batch_leaves_whole_records_and_resumes(tasks_module, tmp_path):
    module, calls = tasks_module
    out = tmp_path / "results"
    script = textwrap.dedent(f"""
        import bt_test_tasks
        from bayes_trial.batch.engine import Task, run_batch
        tasks = [Task(f"t{{x:03d}}", bt_test_tasks.square, {{"x": x, "calls": {str(calls)!r}, "pause": 0.4}})
                 for x in range(30)]
        run_batch(tasks, {str(out)!r}, n_workers=2, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(out.glob("t*.json"))) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the client, its cluster and its workers, mid-batch
    proc.wait()
    stored = read_results(out)
    assert 4 <= len(stored) < 30
    assert all(r["status"] in ("ok", "failed") and r["key"] == key for key, r in stored.items())
    before = calls_per_task(calls)

    rerun = run_batch(make_tasks(module, calls, n=30), out, n_workers=2, progress=False)
    assert len(rerun.completed) == 29 and rerun.failed == ["t003"]
    assert rerun.reused == len(stored)
    after = calls_per_task(calls)
    assert all(after[int(key[1:])] == before[int(key[1:])] for key in stored)  # stored tasks did not run again
    assert not list(out.glob(".*.tmp"))
