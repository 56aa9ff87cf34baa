"""Compiled models kept between processes (issue 16, item 2): a refit in a new process, cache cold and warm.

    python benchmarks/compile_cache.py             # writes its section of benchmarks/RESULTS.md
    python benchmarks/compile_cache.py --no-write  # prints it

Data: the demo's trial (design nl7, data seed 1, as `workflows/oss_demo.toml`) and a second trial of the
same design (data seed 2). For each bundled spec, four `bayes-trial fit` processes in a row, all with
one new, empty compiled-model cache (`BAYES_TRIAL_CACHE_DIR`):

1. `cold`: the first-ever fit, nothing compiled (what a fresh install pays once per model structure);
2. `same`: the same command again, a new process: must load the compiled model from disk and give
   the same draws as run 1 (same data, spec and seed);
3. `prior`: a new prior (`--prior 'arm=Normal(0, 0.3)'`), a new process;
4. `data`: the other trial's data (other persons, other rows), a new process.

Reported: wall time of each process and the compile time that `fit` prints. All runs in one go, so
the ratios are comparable even on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from big_survey import add_no_write, write

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "bayes-trial"
SECTION = "## Compiled models kept between processes"
BEGIN, END = "<!-- compile_cache: begin -->", "<!-- compile_cache: end -->"
SPECS = (("outflow", "register.csv"), ("wellbeing", "survey.csv"))
COMPILE = re.compile(r"(compiled in|loaded from the disk cache in) ([0-9.]+) s")


def run_fit(spec: str, data: Path, out: Path, cache: Path, extra: list[str]) -> dict:
    env = {**os.environ, "BAYES_TRIAL_CACHE_DIR": str(cache)}
    env.pop("PYTENSOR_FLAGS", None)
    started = time.perf_counter()
    done = subprocess.run([str(BIN), "fit", spec, "--data", str(data), "--out", str(out), "--seed", "11", *extra],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-2000:])
    match = COMPILE.search(done.stderr + done.stdout)
    return {"wall": wall, "how": match.group(1) if match else "?", "compile": float(match.group(2)) if match else float("nan")}


def same_draws(a: Path, b: Path) -> bool:
    with xr.open_dataset(a, group="posterior") as first, xr.open_dataset(b, group="posterior") as second:
        return all(np.array_equal(first[name].values, second[name].values) for name in first.data_vars)


def measure(folder: Path) -> list[dict]:
    for seed in (1, 2):
        subprocess.run([str(BIN), "simulate", "--design", "nl7", "--seed", str(seed), "--out", str(folder / f"sim{seed}")],
                       check=True, capture_output=True)
    rows = []
    for spec, table in SPECS:
        cache = folder / f"cache_{spec}"
        runs = {
            "cold": (folder / "sim1" / table, []),
            "same": (folder / "sim1" / table, []),
            "prior": (folder / "sim1" / table, ["--prior", "arm=Normal(0, 0.3)"]),
            "data": (folder / "sim2" / table, []),
        }
        for name, (data, extra) in runs.items():
            result = run_fit(spec, data, folder / f"{spec}_{name}.nc", cache, extra)
            rows.append({"spec": spec, "run": name, **result})
            print(f"{spec:10s} {name:6s} wall {result['wall']:6.1f} s, {result['how']} {result['compile']:.1f} s", flush=True)
        rows[-3]["identical"] = same_draws(folder / f"{spec}_cold.nc", folder / f"{spec}_same.nc")
    return rows


def section(rows: list[dict]) -> str:
    lines = [BEGIN, SECTION, "",
             "`python benchmarks/compile_cache.py`: four `bayes-trial fit` processes per bundled spec on the demo's",
             "nl7 data, one new compiled-model cache per spec (see the script's docstring). Machine: 2 cores, shared",
             f"with other work (load average at the start: {os.getloadavg()[0]:.1f}); read the ratios, not the seconds.",
             "", "| spec | run | process wall (s) | compile step (s) | how |", "|---|---|---|---|---|"]
    for row in rows:
        note = " (draws identical to `cold`)" if row.get("identical") else (" (draws DIFFER from `cold`)"
                                                                           if row.get("identical") is False else "")
        lines.append(f"| {row['spec']} | {row['run']} | {row['wall']:.1f} | {row['compile']:.1f} | {row['how']}{note} |")
    for spec in dict.fromkeys(row["spec"] for row in rows):
        cold = next(r for r in rows if r["spec"] == spec and r["run"] == "cold")
        warm = next(r for r in rows if r["spec"] == spec and r["run"] == "prior")
        lines.append(f"\n{spec}: a refit with a new prior in a new process took {warm['wall'] / cold['wall']:.2f}x the "
                     f"wall time of the first-ever fit, its compile step {warm['compile'] / cold['compile']:.2f}x.")
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_no_write(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = section(measure(Path(tmp)))
    print(text)
    if not args.no_write:
        write(text, BEGIN, END)


if __name__ == "__main__":
    main()
