"""A user's first fit of the bundled wellbeing spec on their own data, the compiled-model cache empty or filled.

    python benchmarks/first_fit.py             # writes its section of benchmarks/RESULTS.md
    python benchmarks/first_fit.py --no-write  # prints it

Issue 16, item 4: the survey model >= 10x faster than plain Bambi + PyMC with the first fit included, for
a user whose install compiled the bundled specs beforehand. The user's data: the `survey` case of
`run.py` (`benchmarks/survey_design.toml`, data seed 2024: 4 towns, 3 arms, 3 consultants per arm,
3 waves, 1,200 persons). Each scenario has its own new cache directory (`BAYES_TRIAL_CACHE_DIR`), and
every fit is a new process (`bayes_trial.sample`, 2 chains x (300 + 300), seed 7; the compile step
does not depend on the chain lengths):

* `empty`: nothing compiled before: the user's first-ever fit;
* `demo (nl7)`: the cache filled by fitting the spec on the bundled demo data first (`make demo`:
  design nl7, data seed 1: 7 towns, 4 arms, 3 waves);
* `other layout`: filled by a trial of another layout with the same arms (design `small`, data seed 1:
  2 towns, 2 consultants per arm, one arm without consultants, 2 waves);
* `same layout`: filled by another trial of the user's design (data seed 1: other persons, other scores);
* `warmed`: filled by `bayes-trial cache warm` (what `make install` and the first `make demo` run: the
  bundled specs whose compiled model serves any layout, for 2 to 5 arms, on small simulated trials).

For each: the compile step of the user's fit (what `fit` prints: compiled, or loaded from the disk
cache) and whether its draws are identical to the `empty` scenario's (same data, spec and seed). The
item's ratio: the PyMC baseline's time to ESS 400 over (this compile step + the default path's time to
ESS 400 without compile), both read from the `survey` section that `run.py --cases survey` wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from big_survey import RESULTS, add_no_write, publish

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- first_fit: begin -->", "<!-- first_fit: end -->"
RUN_BEGIN, RUN_END = "<!-- run survey: begin -->", "<!-- run survey: end -->"
USER = (str(HERE / "survey_design.toml"), 2024)
WARM = "cache warm"
SCENARIOS = {
    "empty": None,
    "demo (nl7)": ("nl7", 1),
    "other layout": ("small", 1),
    "same layout": (str(HERE / "survey_design.toml"), 1),
    "warmed": WARM,
}
SETTINGS = {"chains": 2, "tune": 300, "draws": 300, "seed": 7}

CHILD = """
import json, sys, time
import numpy as np
import bayes_trial as bt
design, data_seed, draws_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
settings = json.loads(sys.argv[4])
frame = bt.simulate(bt.load_design(design), seed=data_seed).survey
started = time.perf_counter()
fit = bt.sample(bt.load_spec("wellbeing"), frame, progress=False, **settings)
fit_s = time.perf_counter() - started
attrs = fit.idata.sample_stats.attrs
np.savez(draws_file, **{name: fit.idata.posterior[name].values for name in fit.idata.posterior.data_vars})
print(json.dumps({"fit_s": fit_s, "compile_s": float(attrs["compile_seconds"]), "from_disk": bool(attrs["compile_from_disk"]),
                  "sampling_s": float(attrs["sampling_seconds"]), "persons": int(frame["participant_id"].nunique())}))
"""


def in_new_process(arguments: list[str], cache: Path) -> tuple[str, float]:
    """Run `python ARGUMENTS` with `cache` as the compiled-model cache: its stdout and wall time."""
    env = {**os.environ, "BAYES_TRIAL_CACHE_DIR": str(cache)}
    env.pop("PYTENSOR_FLAGS", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout, time.perf_counter() - started


def fit_in_new_process(design: str, data_seed: int, cache: Path, draws_file: Path) -> dict:
    out, wall = in_new_process(["-c", CHILD, design, str(data_seed), str(draws_file), json.dumps(SETTINGS)], cache)
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall}


def warm_in_new_process(cache: Path) -> dict:
    """`bayes-trial cache warm` with its default arms: its wall time and what it printed last."""
    out, wall = in_new_process(["-m", "bayes_trial.cli", *WARM.split()], cache)
    return {"wall_s": wall, "summary": out.strip().splitlines()[-1]}


def same_draws(a: Path, b: Path) -> bool:
    with np.load(a) as first, np.load(b) as second:
        return sorted(first.files) == sorted(second.files) and all(np.array_equal(first[k], second[k]) for k in first.files)


def fill(root: Path) -> dict[int, dict]:
    """Each scenario's cache filled by its filler fit (kept in `root`: a later call reuses it); the fillers' results."""
    fillers = {}
    for i, (label, filler) in enumerate(SCENARIOS.items()):
        done = root / f"filler{i}.json"
        if filler and not done.exists():
            print(f"[first_fit] {label}: filling the cache", file=sys.stderr, flush=True)
            done.write_text(json.dumps(warm_in_new_process(root / f"cache{i}") if filler == WARM else
                                       fit_in_new_process(*filler, root / f"cache{i}", root / f"filler{i}.npz")))
        if filler:
            fillers[i] = json.loads(done.read_text())
    return fillers


def measure(root: Path) -> list[dict]:
    fillers, rows = fill(root), []
    for i, label in enumerate(SCENARIOS):
        row = {"scenario": label, "load": os.getloadavg()[0], **({"filler": fillers[i]} if i in fillers else {})}
        print(f"[first_fit] {label}: the user's fit", file=sys.stderr, flush=True)
        row["user"] = fit_in_new_process(*USER, root / f"cache{i}", root / f"user{i}.npz")
        row["identical"] = same_draws(root / "user0.npz", root / f"user{i}.npz")
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def survey_times(text: str) -> dict:
    """The default path's and the baseline's times to ESS 400 from `run.py --cases survey`'s section (medians)."""
    match = re.search(re.escape(RUN_BEGIN) + "(.*?)" + re.escape(RUN_END), text, re.S)
    if not match:
        raise SystemExit(f"no {RUN_BEGIN} section in {RESULTS}: run `benchmarks/run.py --cases survey` first")
    cells = {}
    for line in match.group(1).splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) == 10 and parts[0] == "survey" and parts[2] in ("default", "baseline"):
            compile_first, _, compile_later = parts[3].partition(" / ")
            cells[parts[2]] = {"compile_first": float(compile_first), "compile_later": float(compile_later or compile_first),
                               "to_ess": float(parts[5]), "min_ess": parts[6]}
    return cells


def section(rows: list[dict], times: dict) -> str:
    ours, base = times["default"], times["baseline"]
    warm_s = next(r["filler"]["wall_s"] for r in rows if r["scenario"] == "warmed")
    baseline_s = base["to_ess"] + base["compile_later"]
    loads = [r["load"] for r in rows]
    lines = [BEGIN, "## A user's first fit with the compiled-model cache filled beforehand (issue 16, item 4)", "",
             f"Written by `python benchmarks/first_fit.py`; x86_64, {os.cpu_count()} cores, 1-minute load average "
             f"{min(loads):.1f} to {max(loads):.1f} at the scenarios' starts (other jobs shared the machine).", "",
             "**Protocol.** The user's data: the `survey` case of `run.py` (`benchmarks/survey_design.toml`, data seed "
             "2024: 4 towns, 3 arms, 3 consultants per arm, 3 waves, 1,200 persons, 3,600 rows), spec `wellbeing`. Each "
             "scenario has its own new compiled-model cache; every fit is a new process (`bayes_trial.sample`, 2 chains x "
             f"({SETTINGS['tune']} + {SETTINGS['draws']}), seed {SETTINGS['seed']}). *empty*: nothing compiled before. "
             "*demo (nl7)*: the cache filled first by fitting the spec on the bundled demo data (`make demo`: design nl7, "
             "data seed 1: 7 towns, 4 arms). *other layout*: filled by design `small` (data seed 1: 2 towns, 2 consultants "
             "per arm, one arm without consultants, 2 waves; 3 arms). *same layout*: filled by the user's design with data "
             f"seed 1. *warmed*: filled by `bayes-trial {WARM}` (what `make install` and the first `make demo` run: the bundled "
             "specs whose compiled model serves any data layout, wellbeing only, for 2, 3, 4 and 5 arms on the `small` design "
             f"made that many-armed; {warm_s:.0f} s, one process). *compile*: the fit's compile step (compiled: PyTensor's "
             "graph rewrites and numba; loaded: the C callbacks from numba's disk cache, with the metadata saved beside them, "
             "without PyTensor compiling the graph). *identical draws*: every posterior array equal to the *empty* scenario's. "
             f"*ratio*: the baseline's time to ESS 400 ({base['to_ess']:.1f} s sampling + {base['compile_later']:.1f} s "
             f"compile = {baseline_s:.1f} s: plain Bambi + PyMC, 1 BLAS thread per process, median over seeds of the "
             f"`survey` section above, its compile with PyTensor's cache warm) / (compile + the default path's "
             f"{ours['to_ess']:.1f} s to ESS 400 without compile, median of the same section).", "",
             "| scenario | user's fit: compile (s) | how | user's process wall (s) | identical draws "
             "| ratio to ESS 400 incl. this compile |", "|---|---|---|---|---|---|"]
    for r in rows:
        user = r["user"]
        how = "loaded from the disk cache" if user["from_disk"] else "compiled"
        ratio = baseline_s / (user["compile_s"] + ours["to_ess"])
        lines.append(f"| {r['scenario']} | {user['compile_s']:.1f} | {how} | {user['wall_s']:.1f} | "
                     f"{'yes' if r['identical'] else 'no'} | **{ratio:.1f}x** |")
    best = max(baseline_s / (r["user"]["compile_s"] + ours["to_ess"]) for r in rows)
    lines += ["", f"Goal (>= 10x with the first fit included): **{'reached' if best >= 10 else 'not reached'}** in the best "
              f"scenario ({best:.1f}x); first-ever compile (*empty*): {rows[0]['user']['compile_s']:.1f} s.", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_no_write(parser)
    parser.add_argument("--rows", help="JSON lines of an earlier measurement, instead of measuring")
    parser.add_argument("--work", help="folder for the caches (default: a temporary one); filled caches there are reused")
    parser.add_argument("--fill-only", action="store_true", help="only fill the scenarios' caches in --work")
    args = parser.parse_args()
    if args.fill_only:
        fill(Path(args.work))
        return
    if args.rows:
        rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines() if line.strip()]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure(Path(args.work or tmp))
    times = survey_times(RESULTS.read_text(encoding="utf-8"))  # after measuring: the rows are printed as they come
    publish(section(rows, times), args.no_write, BEGIN, END)
    print(f"median load {statistics.median(r['load'] for r in rows):.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
