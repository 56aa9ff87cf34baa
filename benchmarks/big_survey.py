"""Large unbalanced surveys (issue 14, item 15): time and peak memory of a whole `fit`, against plain Bambi.

    python benchmarks/big_survey.py                 # default sizes; writes its section of benchmarks/RESULTS.md
    python benchmarks/big_survey.py --persons 1000,100000 --bambi 1000 --no-write
    python benchmarks/big_survey.py --cli 100000      # `bayes-trial fit` end to end; writes its own section

Data: benchmarks/big_survey_design.toml (four towns, three arms, three waves, 40% attrition by wave 2)
with every arm scaled to the number of persons asked for, simulated afresh in each run (nothing is
written to disk but the results). Model: models/wellbeing.toml, sampler settings SETTINGS for both paths.

Each fit runs in its own child process, which simulates, fits (`bayes_trial.sample`, model build,
sampling, drawing the participant intercepts and the log-likelihood included) and saves the fit to a
temporary netCDF file. Peak RSS: the child's own maximum (`getrusage`) after the fit and after saving,
and the child's process tree polled every 0.1 s (PyMC samples chains in worker processes); simulation
and Python's imports are counted too. CPU seconds: the child and its workers. *ours*: the default path (nutpie, coefficients and participant
intercepts integrated out). *plain Bambi*: the same spec with `sampler="pymc"`: Bambi's full model,
`pm.sample`, PyMC's log-likelihood. Goal: 100,000 persons in under 3 minutes and under 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
DESIGN = HERE / "big_survey_design.toml"
BASE_PERSONS = 1000
SETTINGS = {"chains": 2, "tune": 500, "draws": 500, "seed": 2024}
GOAL_PERSONS, GOAL_SECONDS, GOAL_GB = 100_000, 180.0, 4.0 * 10**9 / 2**30  # 4 GB in GiB
READING = [
    "**Reading the table.** Ours never builds Bambi's `(1|participant_id)` term; its summaries and compiled model "
    "do not grow with the data, so sampling time is nearly flat and dominated by nutpie's compilation at small "
    "sizes. What grows is what a fit stores: participant intercepts (persons x draws, 4 bytes) and, up to 50 "
    "million values, the pointwise log-likelihood (rows x draws, 4 bytes; beyond that it is recomputed when LOO "
    "needs it), both linear in the data and in the number of draws. Plain Bambi "
    "builds dense rows x persons dummies and a persons x persons contrast matrix (formulae) in the main process "
    "and again in each PyMC worker: at 80,000 persons that matrix alone is the 47.5 GiB of the issue. Its "
    "minimum ESS is also lower (it samples the participant intercepts and every coefficient), so per effective "
    "draw the gap is larger than the fit times show.",
]
BEGIN, END = "<!-- big_survey: begin -->", "<!-- big_survey: end -->"
CLI_BEGIN, CLI_END = "<!-- big_survey_cli: begin -->", "<!-- big_survey_cli: end -->"


def child(path: str, persons: int, out: str) -> None:
    """One measured fit; writes a JSON line of results to `out`."""
    import copy

    import bayes_trial as bt

    started = time.perf_counter()
    design = copy.deepcopy(bt.load_design(DESIGN))
    scale = persons // BASE_PERSONS
    for town in design["towns"]:
        town["participants"] = {arm: n * scale for arm, n in town["participants"].items()}
    survey = bt.simulate(design, seed=SETTINGS["seed"]).survey
    simulate_s = time.perf_counter() - started
    waves = survey.dropna(subset=["wellbeing"]).groupby("participant_id").size().value_counts().sort_index()
    sampler = "nutpie" if path == "ours" else "pymc"
    started = time.perf_counter()
    fit = bt.sample(bt.load_spec("wellbeing"), survey, progress=path == "ours", sampler=sampler, **SETTINGS)
    fit_s = time.perf_counter() - started
    fit_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        saved = bt.save(fit, Path(tmp) / "fit.nc")
        save_s = time.perf_counter() - started
        file_mb = saved.stat().st_size / 2**20
    posterior = fit.idata.posterior
    import arviz as az

    names = ["Intercept", "arm", "sigma", "1|participant_id_sigma"]
    ess = az.ess(posterior[names], method="bulk")
    rhat = az.rhat(posterior[names])
    result = {
        "path": path, "persons": int(survey["participant_id"].nunique()), "rows": len(fit.data),
        "waves_per_person": {int(k): int(v) for k, v in waves.items()},
        "simulate_s": simulate_s, "fit_s": fit_s, "save_s": save_s, "file_mb": file_mb,
        "sampling_s": float(fit.info["sampling_seconds"]),
        "fit_peak_rss_gb": fit_rss_gb, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "cpu_s": sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)),
        "min_ess": float(min(ess[v].min() for v in names)), "max_rhat": float(max(rhat[v].max() for v in names)),
        "divergences": int(fit.idata.sample_stats["diverging"].sum()),
        "arm_mean": [round(float(x), 3) for x in posterior["arm"].mean(("chain", "draw")).values],
        "participant_sd": round(float(posterior["1|participant_id_sigma"].mean()), 3),
    }
    Path(out).write_text(json.dumps(result))


def measure(path: str, persons: int, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--child", path, str(persons), out], stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        tree_peak = 0
        while proc.poll() is None and time.perf_counter() - started < timeout:
            tree_peak = max(tree_peak, tree_rss(proc.pid))
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            os.unlink(out)
            return {"path": path, "persons": persons, "failed": f"stopped after {timeout:.0f} s", "wall_s": timeout}
        wall = time.perf_counter() - started
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
    try:
        if proc.returncode == 0:
            result = json.loads(Path(out).read_text())
            result["wall_s"] = wall
            # PyMC samples its chains in worker processes: the tree's resident memory, polled, counts them.
            result["tree_peak_rss_gb"] = max(tree_peak / 2**30, result["peak_rss_gb"])
            return result
        return {"path": path, "persons": persons, "failed": f"exit {proc.returncode}: {(lines or ['(no output)'])[-1][:160]}",
                "wall_s": wall}
    finally:
        os.unlink(out)


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants now (0 once it has gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        total = root.memory_info().rss
        for proc in root.children(recursive=True):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


def load_average() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def table(results: list[dict]) -> list[str]:
    lines = ["| path | persons | rows | persons with 1 / 2 / 3 waves | fit (s) | of which sampling (s) | save (s) | "
             "peak RSS: fit / with save / with workers (GiB) | CPU (s) | fit file (MB) | min bulk ESS | max R-hat | divergences | "
             "arm effects (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        label = "ours" if r["path"] == "ours" else "plain Bambi"
        if "failed" in r:
            lines.append(f"| {label} | {r['persons']:,} | | | failed: {r['failed']} | | | | | | | | | |")
            continue
        waves = " / ".join(f"{r['waves_per_person'].get(str(k), r['waves_per_person'].get(k, 0)):,}" for k in (1, 2, 3))
        lines.append(f"| {label} | {r['persons']:,} | {r['rows']:,} | {waves} | {r['fit_s']:.1f} | {r['sampling_s']:.1f} | "
                     f"{r['save_s']:.1f} | {r['fit_peak_rss_gb']:.2f} / {r['peak_rss_gb']:.2f} / {r['tree_peak_rss_gb']:.2f} | "
                     f"{r['cpu_s']:.0f} | {r['file_mb']:.0f} | {r['min_ess']:.0f} | "
                     f"{r['max_rhat']:.3f} | {r['divergences']} | {', '.join(f'{x:.2f}' for x in r['arm_mean'])} |")
    return lines


def goal_line(results: list[dict]) -> str:
    big = [r for r in results if r["path"] == "ours" and r["persons"] == GOAL_PERSONS]
    if not big:
        return f"- {GOAL_PERSONS:,} persons in under {GOAL_SECONDS:.0f} s and 4 GB: not measured in this run."
    r = big[0]
    if "failed" in r:
        return f"- {GOAL_PERSONS:,} persons in under {GOAL_SECONDS:.0f} s and 4 GB: **not reached** ({r['failed']})."
    reached = r["fit_s"] < GOAL_SECONDS and r["tree_peak_rss_gb"] < GOAL_GB
    return (f"- {GOAL_PERSONS:,} persons ({r['rows']:,} rows) in under {GOAL_SECONDS:.0f} s and 4 GB: "
            f"**{'reached' if reached else 'not reached'}** (time: the fit; memory: fit and save): fit {r['fit_s']:.0f} s, "
            f"then save {r['save_s']:.0f} s ({r['file_mb']:,.0f} MB file), "
            f"peak RSS {r['fit_peak_rss_gb']:.2f} GiB after the fit, {r['tree_peak_rss_gb']:.2f} GiB after saving "
            f"(the whole process: imports, simulation, fit, save); {r['cpu_s']:.0f} CPU seconds in all.")


def scaling_lines(results: list[dict]) -> list[str]:
    out = []
    for path, label in (("ours", "ours"), ("bambi", "plain Bambi")):
        done = sorted([r for r in results if r["path"] == path and "failed" not in r], key=lambda r: r["persons"])
        if len(done) >= 2:
            a, b = done[0], done[-1]
            rows = b["rows"] / a["rows"]
            out.append(f"- {label}, {a['persons']:,} -> {b['persons']:,} persons (rows x{rows:.1f}): fit time "
                       f"x{b['fit_s'] / a['fit_s']:.1f}, CPU x{b['cpu_s'] / a['cpu_s']:.1f}, peak RSS "
                       f"{a['tree_peak_rss_gb']:.2f} -> {b['tree_peak_rss_gb']:.2f} GiB.")
    return out


def section(results: list[dict], minutes: float, loads: list[str]) -> str:
    import bambi
    import numpy
    import nutpie
    import pymc

    lines = [BEGIN, "## Large unbalanced surveys (issue 14)", "",
             f"Written by `python benchmarks/big_survey.py` in {minutes:.1f} min; {platform.machine()}, "
             f"{os.cpu_count()} cores, 1-minute load average at each fit's start: {', '.join(loads)} "
             f"(other jobs shared the machine). pymc {pymc.__version__}, bambi {bambi.__version__}, "
             f"nutpie {nutpie.__version__}, numpy {numpy.__version__}.", "",
             f"**Protocol.** Data: `benchmarks/big_survey_design.toml` scaled to each size (four towns, three arms, "
             f"three waves, 40% attrition by wave 2, so persons have 1, 2 or 3 waves). Model: `models/wellbeing.toml`; "
             f"both paths {SETTINGS['chains']} chains x ({SETTINGS['tune']} tuning + {SETTINGS['draws']} draws), "
             f"seed {SETTINGS['seed']}. One child process per fit; *fit*: `bayes_trial.sample` (model build, sampling, "
             f"participant intercepts, log-likelihood); *save*: `bayes_trial.save`; peak RSS: the child's maximum "
             f"resident set after the fit and after saving, and its process tree's (PyMC's sampler workers "
             f"included) polled every 0.1 s; imports and simulation included; CPU: child and workers. "
             f"*ours*: the default path; *plain Bambi*: the same "
             f"spec with `sampler=\"pymc\"` (Bambi's full model, `pm.sample`).", "",
             *table(results), "", "Goal:", "", goal_line(results), *scaling_lines(results), "", *READING, "", END]
    return "\n".join(lines)


def measure_cli(persons: int, timeout: float, keep: Path | None = None) -> dict:
    """`bayes-trial fit models/wellbeing.toml --data CSV` in a child process: wall time, polled tree RSS, file size."""
    import copy

    import bayes_trial as bt

    design = copy.deepcopy(bt.load_design(DESIGN))
    for town in design["towns"]:
        town["participants"] = {arm: n * (persons // BASE_PERSONS) for arm, n in town["participants"].items()}
    with tempfile.TemporaryDirectory() as tmp:
        csv, fit = Path(tmp) / "survey.csv", Path(tmp) / "fit.nc"
        survey = bt.simulate(design, seed=SETTINGS["seed"]).survey
        survey.to_csv(csv, index=False)
        command = [sys.executable, "-m", "bayes_trial.cli", "fit", str(HERE.parent / "models" / "wellbeing.toml"),
                   "--data", str(csv), "--out", str(fit), *[f"--{k}={v}" for k, v in SETTINGS.items()]]
        load = load_average()
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        peak = 0
        while proc.poll() is None and time.perf_counter() - started < timeout:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
        wall = time.perf_counter() - started
        queries = [timed_query(fit) for _ in range(QUERY_REPEATS)] if fit.exists() else []
        if keep is not None and fit.exists():
            shutil.copy(fit, keep)
        return {"queries": queries, "persons": persons, "rows": int(survey["wellbeing"].notna().sum()), "wall_s": wall,
                "peak_rss_gb": peak / 2**30, "file_mb": fit.stat().st_size / 2**20 if fit.exists() else float("nan"),
                "exit": proc.returncode, "load": load,
                "stages": [line.strip() for line in output.splitlines()
                           if re.search(r"done in|summarised|drawn|diagnostics (PASS|FAIL)|stored:", line)]}


QUERY_REPEATS = 3
QUERY = "intensive - control > 0"
QUERY_GOAL_SECONDS = 3.0


def timed_query(fit: Path) -> dict:
    """`bayes-trial query FIT QUERY` in a new process: wall time (interpreter start included) and its answer."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bayes_trial.cli", "query", str(fit), QUERY],
                          capture_output=True, text=True)
    return {"wall_s": time.perf_counter() - started, "exit": done.returncode,
            "answer": done.stdout.strip().splitlines()[-2:] if done.stdout.strip() else [done.stderr.strip()[-200:]]}


def query_lines(queries: list[dict]) -> list[str]:
    if not queries:
        return ["- no fit file: the query was not timed."]
    walls = sorted(q["wall_s"] for q in queries)
    reached = all(q["exit"] == 0 for q in queries) and walls[len(walls) // 2] <= QUERY_GOAL_SECONDS
    return [f"- `bayes-trial query fit.nc '{QUERY}'` on this fit, {len(walls)} new processes: "
            f"{', '.join(f'{w:.2f}' for w in walls)} s (median {walls[len(walls) // 2]:.2f} s); goal (at most "
            f"{QUERY_GOAL_SECONDS:g} s) **{'reached' if reached else 'not reached'}**. It printed:",
            "", "```", *queries[-1]["answer"], "```"]


def cli_section(r: dict) -> str:
    reached = r["exit"] == 0 and r["wall_s"] < GOAL_SECONDS and r["peak_rss_gb"] < GOAL_GB
    return "\n".join([
        CLI_BEGIN, "### The command line on the same data", "",
        f"Written by `python benchmarks/big_survey.py --cli {r['persons']}`; 1-minute load average at the start: "
        f"{r['load']} ({os.cpu_count()} cores). `bayes-trial fit models/wellbeing.toml --data survey.csv` with "
        f"{SETTINGS['chains']} chains x ({SETTINGS['tune']} + {SETTINGS['draws']}), seed {SETTINGS['seed']}, on the "
        f"{r['persons']:,}-person survey above ({r['rows']:,} rows) written as CSV: reading, checking, fitting, "
        "diagnosing, printing the standardised estimates and saving, end to end. Peak RSS: the process tree, polled "
        "every 0.1 s.", "",
        f"- wall time **{r['wall_s']:.0f} s**, peak RSS **{r['peak_rss_gb']:.2f} GiB**, fit file {r['file_mb']:,.0f} MB, "
        f"exit {r['exit']}: goal (under {GOAL_SECONDS:.0f} s and 4 GB) **{'reached' if reached else 'not reached'}**.",
        *[f"- `{line}`" for line in r["stages"]], *query_lines(r.get("queries", [])), "", CLI_END])


def timed(command: list[str], env: dict) -> tuple[float, str]:
    """Wall time of one process run from the repository root (interpreter start included) and its standard output."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE.parent)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return wall, done.stdout


def demo_fits_parser(description: str, repeats: int, what: str) -> argparse.ArgumentParser:
    """The options of a benchmark that times this code against a baseline on the demo's stored fits."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fits", default=str(Path(__file__).resolve().parents[1] / "results" / "oss_demo" / "fits"),
                        help="folder with the demo's outflow.nc and wellbeing.nc")
    parser.add_argument("--baseline", default="main", help="git ref of the baseline code (default main)")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"{what} (default {repeats})")
    add_no_write(parser)
    return parser


def add_no_write(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing RESULTS.md")


def publish(text: str, no_write: bool, begin: str, end: str) -> None:
    """Print the section (`--no-write`) or write it into RESULTS.md between its markers."""
    if no_write:
        print(text)
    else:
        write(text, begin, end)
        print(f"wrote {RESULTS}")


def write(text: str, begin: str = BEGIN, end: str = END, path: Path = RESULTS) -> None:
    """Replace the section between `begin` and `end` in `path` by `text` (which holds both markers), or append it."""
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    updated = pattern.sub(lambda _: text, current) if pattern.search(current) else current.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(updated, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", default="1000,2000,4000,10000,30000,100000", help="sizes for our path")
    parser.add_argument("--bambi", default="1000,2000,4000", help="sizes for plain Bambi")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a fit is stopped")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing RESULTS.md")
    parser.add_argument("--cli", type=int, help="measure `bayes-trial fit` end to end on this many persons instead")
    parser.add_argument("--keep", type=Path, help="with --cli: copy the fit file here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    if args.cli:
        result = measure_cli(args.cli, args.timeout, args.keep)
        print(json.dumps(result), flush=True)
        text = cli_section(result)
        if args.no_write:
            print(text)
        else:
            write(text, CLI_BEGIN, CLI_END)
            print(f"wrote {RESULTS}")
        return
    started = time.perf_counter()
    results, loads = [], []
    runs = [("ours", int(n)) for n in args.persons.split(",") if n] + [("bambi", int(n)) for n in args.bambi.split(",") if n]
    for path, persons in runs:
        loads.append(load_average())
        result = measure(path, persons, args.timeout)
        results.append(result)
        print(json.dumps(result), flush=True)
    results.sort(key=lambda r: (r["path"] != "bambi", r["persons"]))
    text = section(results, (time.perf_counter() - started) / 60, loads)
    if args.no_write:
        print(text)
    else:
        write(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
