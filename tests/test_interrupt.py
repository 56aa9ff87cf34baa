"""Interrupted work loses nothing: a fit or a save killed with SIGKILL leaves the earlier fit intact.

`save` writes a hidden `.NAME.PID.*.tmp` beside the fit and renames it over the fit only when it is
complete, so a killed process can leave a temporary file but never a half-written fit. The next
save to the same path removes temporary files whose process is gone and keeps those of a process
that is still writing.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import bayes_trial as bt

EXECUTABLE = Path(sys.executable).with_name("bayes-trial")
STARTUP_LIMIT_S = 300  # import + compiling the model on a busy two-core CI machine


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start(command: list[str]) -> tuple[subprocess.Popen, queue.Queue]:
    """A process in its own session, with its stdout and stderr lines arriving on a queue."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def wait_for(proc: subprocess.Popen, lines: queue.Queue, marker: str) -> list[str]:
    seen = []
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, f"process ended before {marker!r}:\n{''.join(seen)}"
            continue
        seen.append(line)
        if marker in line:
            return seen
    kill(proc)
    pytest.fail(f"no {marker!r} within {STARTUP_LIMIT_S} s:\n{''.join(seen)}")


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def leftovers(folder: Path, keep: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p != keep)


@pytest.fixture
def earlier_fit(outflow_fit_path, tmp_path) -> Path:
    """A copy of the session's stored outflow fit, so that the shared file is never at risk."""
    path = tmp_path / "fits" / "outflow.nc"
    path.parent.mkdir()
    shutil.copyfile(outflow_fit_path, path)
    return path


def assert_is_the_earlier_fit(path: Path, outflow_fit: bt.Fit) -> None:
    fit = bt.load(path)
    assert fit.spec == outflow_fit.spec
    assert fit.idata.posterior.equals(outflow_fit.idata.posterior)


def test_fit_killed_while_sampling_leaves_the_earlier_fit(earlier_fit, outflow_fit, small_sim_dir):
    before = digest(earlier_fit)
    # Far more draws than it will live to take: the process is killed one second into sampling.
    proc, lines = start([
        str(EXECUTABLE), "fit", "outflow", "--data", str(small_sim_dir), "--out", str(earlier_fit),
        "--draws", "100000", "--tune", "200", "--chains", "2", "--seed", "5",
    ])
    wait_for(proc, lines, "sampling ...")
    time.sleep(1)
    kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert digest(earlier_fit) == before
    assert leftovers(earlier_fit.parent, earlier_fit) == []
    assert_is_the_earlier_fit(earlier_fit, outflow_fit)


SAVE_FOREVER = """
import sys
import bayes_trial as bt
fit = bt.load(sys.argv[1])
while True:
    bt.save(fit, sys.argv[1])
    print("saved", flush=True)
"""


def test_save_killed_mid_write_leaves_a_readable_fit_and_the_next_save_tidies_up(earlier_fit, outflow_fit):
    # Saving the same fit over and over: a kill at any moment most likely lands mid-write.
    proc, lines = start([sys.executable, "-c", SAVE_FOREVER, str(earlier_fit)])
    wait_for(proc, lines, "saved")
    time.sleep(0.3)
    kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert_is_the_earlier_fit(earlier_fit, outflow_fit)
    left = leftovers(earlier_fit.parent, earlier_fit)
    assert all(name.startswith(f".{earlier_fit.name}.{proc.pid}.") and name.endswith(".tmp") for name in left), left

    # One more abandoned file (its process has ended) and one of a process that is still writing.
    folder = earlier_fit.parent
    abandoned = folder / f".{earlier_fit.name}.{proc.pid}.x1y2z3.tmp"
    in_progress = folder / f".{earlier_fit.name}.{os.getpid()}.a1b2c3.tmp"
    abandoned.write_bytes(b"half a fit")
    in_progress.write_bytes(b"half a fit")
    bt.save(outflow_fit, earlier_fit)
    assert leftovers(folder, earlier_fit) == [in_progress.name]
    assert_is_the_earlier_fit(earlier_fit, outflow_fit)
