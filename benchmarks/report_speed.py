"""The report of stored fits (issue 16, item 1): wall time and peak memory of `report.report` as a new process.

    python benchmarks/report_speed.py --fits results/oss_demo/fits     # writes its section of RESULTS.md
    python benchmarks/report_speed.py --fits DIR --repeats 1 --no-write

The demo's fits are copied to a temporary folder and the checks that the new code stores at fit
time (`checks.records.record_checks`: diagnostics verdict, sensitivity, prior check, the graph's
priors) are added to the copies, timed per fit; both codes then report on those copies, alternately,
so that they share the machine's load: *new* is this checkout's `src`, *baseline* the `src` of a git
ref (default `main`) exported with `git archive`. Each report is one fresh process (interpreter start
and imports included) that loads both fits and calls `bayes_trial.report.report`; its wall time is
measured around the process, its peak resident memory (`ru_maxrss`) and whether it imported PyMC
or Bambi by the process itself. The two reports' Markdown texts are compared line by line.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from big_survey import demo_fits_parser, publish
from interactive_query import export_baseline

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEGIN, END = "<!-- report_speed: begin -->", "<!-- report_speed: end -->"
NAMES = ("outflow", "wellbeing")
REPORT = f"""
import json, resource, sys
from bayes_trial.sampling.fit import load
from bayes_trial import report
names = {list(NAMES)!r}
report.report([load(sys.argv[1] + "/" + name + ".nc") for name in names], sys.argv[2], labels=names)
print(json.dumps({{"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "heavy": sorted(m for m in ("pymc", "bambi") if m in sys.modules)}}))
"""
RECORD = """
import json, sys, time
import pymc  # imported at fit time anyway: not part of what recording adds
from bayes_trial.checks.diagnose import diagnose
from bayes_trial.checks.records import record_checks
from bayes_trial.sampling.fit import load, save
fit = load(sys.argv[1])
diagnosis = diagnose(fit)
started = time.perf_counter()
record_checks(fit, diagnosis)
seconds = time.perf_counter() - started
save(fit, sys.argv[1])
print(json.dumps({"seconds": seconds, "sampling_seconds": float(fit.info.get("sampling_seconds", "nan")),
                  "bytes": sum(len(fit.info[k]) for k in ("verdict", "sensitivity", "prior_check", "graph_priors"))}))
"""


def run(code: str, args: list[str], src: Path) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(src), "BAYES_TRIAL_HOME": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def record(fits: Path, folder: Path) -> dict[str, dict]:
    """The demo fits copied into `folder` with their checks recorded by this checkout's code."""
    folder.mkdir()
    found = {}
    for name in NAMES:
        shutil.copy(fits / f"{name}.nc", folder / f"{name}.nc")
        found[name] = run(RECORD, [str(folder / f"{name}.nc")], ROOT / "src")[1]
        print(name, "recorded in", f"{found[name]['seconds']:.1f} s", flush=True)
    return found


def measure(fits: Path, sources: dict[str, Path], out: Path, repeats: int) -> dict[str, list[dict]]:
    runs = {code: [] for code in sources}
    for repeat in range(repeats):
        for code, src in sources.items():
            wall, found = run(REPORT, [str(fits), str(out / code)], src)
            runs[code].append({"wall": wall, **found})
            print(code, f"{wall:.1f} s, {found['peak_mb']:.0f} MB, imported {found['heavy'] or 'neither'}", flush=True)
    return runs


def differing_lines(out: Path) -> tuple[int, int]:
    """Lines in which the two codes' Markdown reports differ: in all, and outside the replicate-based checks."""
    new, old = ((out / code / "report.md").read_text().splitlines() for code in ("new", "baseline"))
    differ = [a for a, b in zip(new, old) if a != b]
    other = [line for line in differ if "ppp" not in line and "LOO-PIT" not in line]
    return len(differ) + abs(len(new) - len(old)), len(other) + abs(len(new) - len(old))


def section(runs: dict, recorded: dict, ref: str, loads: tuple[str, str], repeats: int, differ: tuple[int, int]) -> str:
    def cell(values: list[float], digits: int = 1) -> str:
        return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f}"

    walls = {code: [r["wall"] for r in rs] for code, rs in runs.items()}
    peaks = {code: [r["peak_mb"] for r in rs] for code, rs in runs.items()}
    heavy = {code: ", ".join(rs[0]["heavy"]) or "neither" for code, rs in runs.items()}
    lines = [BEGIN, "## The report of stored fits (issue 16)", "",
             f"Written by `python benchmarks/report_speed.py`; {platform.machine()}, {os.cpu_count()} cores, "
             f"1-minute load average {loads[0]} at the start and {loads[1]} at the end: a machine shared with other "
             "jobs, so absolute times are inflated and vary; both codes ran alternately in the same minutes.", "",
             "**Protocol.** The demo's fits (`nl7`, data seed 1; outflow 4 chains x 2000 draws, wellbeing 4 x 1000), "
             "copied, with the checks that `fit` now stores (verdict, power-scaling sensitivity, prior check, the "
             "graph's priors) recorded into the copies. One report of both fits per process (interpreter start, "
             f"imports, reading the fits, every table and figure), {repeats} times per code; *new*: this branch, "
             f"*baseline*: `{ref}` (prior check and sensitivity drawn with PyMC, replicates drawn by Bambi). "
             "min / median.", "",
             "| code | wall (s) | peak memory (MB) | imports |", "|---|---:|---:|---|"]
    for code in runs:
        lines.append(f"| {code} | {cell(walls[code])} | {cell(peaks[code], 0)} | {heavy[code]} |")
    lines += ["", "What storing the checks adds to a fit (timed on the loaded fit, PyMC already imported; at fit time "
              "the model is already built, so this is an upper bound), against the fit's own sampling time:", "",
              "| fit | recording (s) | sampling (s) | stored (kB of attributes) |", "|---|---:|---:|---:|"]
    for name, found in recorded.items():
        lines.append(f"| {name} | {found['seconds']:.1f} | {found['sampling_seconds']:.0f} | {found['bytes'] / 1000:.1f} |")
    lines += ["", f"The two reports' Markdown differs in {differ[0]} lines, {differ[1]} of them outside the lines with "
              "posterior predictive p-values and LOO-PIT numbers (those rest on random replicates, now drawn by "
              "numpy's generator instead of PyMC's).", END]
    return "\n".join(lines)


def main() -> None:
    parser = demo_fits_parser(__doc__.splitlines()[0], 2, "reports per code")
    args = parser.parse_args()
    fits = Path(args.fits)
    missing = [name for name in NAMES if not (fits / f"{name}.nc").exists()]
    if missing:
        sys.exit(f"{fits}: no {', '.join(missing)}.nc; make them with `bayes-trial run workflows/oss_demo.toml`")
    ref = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], capture_output=True,
                         text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {"new": ROOT / "src", "baseline": export_baseline(args.baseline, tmp)}
        start = f"{os.getloadavg()[0]:.1f}"
        recorded = record(fits, tmp / "fits")
        runs = measure(tmp / "fits", sources, tmp / "reports", args.repeats)
        text = section(runs, recorded, ref, (start, f"{os.getloadavg()[0]:.1f}"), args.repeats,
                       differing_lines(tmp / "reports"))
    publish(text, args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
