"""The whole loop (issue 16, item 7): fit -> 5 queries -> refit with a new prior -> 5 queries -> report.

    python benchmarks/whole_loop.py                    # outflow and wellbeing; writes its section of RESULTS.md
    python benchmarks/whole_loop.py --specs outflow --no-write
    python benchmarks/whole_loop.py --quick --no-write  # smoke check: 2 chains x (50 + 50), nothing written

Data: design `oss` (one town, three arms), simulated once with data seed 1 by `bayes-trial simulate`
(not timed). For each spec the same loop runs three times, one after the other:

- *ours, cold*: the loop as a user types it, each step a new `python -m bayes_trial.cli` process
  (interpreter start and imports included): `fit SPEC --data DIR --out FIT`, five `query FIT EXPR --json`,
  `fit ... --prior 'arm=Normal(0, 0.25)'`, five queries on the refit, `report FIT REFIT --out DIR`; with a
  new, empty compiled-model cache (`BAYES_TRIAL_CACHE_DIR`) and no `PYTENSOR_FLAGS`: first-ever use;
- *ours, warm*: the same again with that cache: a user's second session;
- *ours, one process*: the same loop through the Python API in one child process, as a notebook user
  (imports paid once, like the baseline): `bt.sample`, five `bt.hypothesis`, `bt.refit` with the new
  prior, five `bt.hypothesis`, `bt.report.report`; with the cache of the runs above;
- *baseline*: one child Python process doing the same with plain Bambi + PyMC + ArviZ, as a notebook
  user would (imports paid once): `bmb.Model` on the raw rows (Bernoulli rows for outflow) with the
  formula and priors that `fit` used (read from the cold fit), `model.fit` (= `pm.sample`) with the
  spec's draws, tuning, chains, target_accept and seed; each query by `model.predict(kind="response_params")`
  on counterfactual copies of the persons (everyone given each arm, the g-computation `query` does),
  averaged per draw; the refit; a report: `az.summary`, `az.plot_trace`, `az.plot_ppc` after
  `model.predict(kind="response")`, `model.compute_log_likelihood` + `az.loo` for both fits, `az.compare`,
  figures saved as PNG. BLAS limited to one thread per process (OMP/OPENBLAS/MKL_NUM_THREADS=1):
  with the default threads PyMC's chains were found 25x slower on this 2-core machine.

Timed: each process's wall time, from the parent; the baseline's steps from inside the child, and its
interpreter start + imports as the process wall minus the steps. No timed assertion anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from big_survey import add_no_write, publish, timed

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEGIN, END = "<!-- whole_loop: begin -->", "<!-- whole_loop: end -->"
DESIGN, DATA_SEED = "oss", 1
NEW_PRIOR = ("arm", "Normal", {"mu": 0.0, "sigma": 0.25})
QUICK = {"draws": 50, "tune": 50, "chains": 2}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GOAL = 10.0
TABLES = {"outflow": "register.csv", "wellbeing": "survey.csv"}


@dataclass(frozen=True)
class Query:
    """One hypothesis, `plus - minus COMPARE threshold` on the outcome's natural scale (probabilities for pp)."""

    plus: str
    minus: str
    compare: str = ">"
    threshold: float = 0.0
    wave: int | None = None
    by_wave: bool = False
    rope: tuple[float, float] | None = None

    def args(self, unit: str) -> list[str]:
        """The `bayes-trial query` arguments after the fit."""
        args = [f"{self.plus} - {self.minus} {self.compare} {in_unit(self.threshold, unit)}"]
        if self.wave is not None:
            args += ["--wave", str(self.wave)]
        if self.by_wave:
            args += ["--by", "wave"]
        if self.rope:
            args.append(f"--rope={in_unit(self.rope[0], unit)},{in_unit(self.rope[1], unit)}")
        return args


QUERIES = {
    "outflow": [Query("intensive", "control"), Query("self_direction", "control"),
                Query("intensive", "self_direction"), Query("self_direction", "control", ">", 0.05),
                Query("intensive", "control", rope=(-0.02, 0.02))],
    "wellbeing": [Query("intensive", "control"), Query("self_direction", "control"),
                  Query("intensive", "control", wave=1), Query("intensive", "control", "<", -0.5),
                  Query("self_direction", "control", by_wave=True)],
}


def in_unit(value: float, unit: str) -> str:
    if value == 0:
        return "0"
    return f"{value * 100:g}pp" if unit == "pp" else f"{value:g}"


# ---------------------------------------------------------------------------------------------- ours


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "bayes_trial.cli", *map(str, args)]


def ours_env(cache: Path) -> dict:
    env = {**os.environ, "BAYES_TRIAL_CACHE_DIR": str(cache), "BAYES_TRIAL_HOME": str(ROOT),
           "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    env.pop("PYTENSOR_FLAGS", None)  # a base_compiledir there would bypass the package's cache
    return env


def answers_of(stdout: str) -> list[dict]:
    return [{k: row.get(k) for k in ("mean", "p_hypothesis", "p_rope", "wave")} for row in json.loads(stdout)["results"]]


def ours(spec: str, data: Path, folder: Path, cache: Path, sampler: list[str]) -> dict:
    """The loop as separate `bayes-trial` processes: seconds per step and the answers."""
    env = ours_env(cache)
    unit = load_spec(spec)["unit"]
    folder.mkdir(parents=True)
    fits = [folder / "fit.nc", folder / "refit.nc"]
    steps, answers = [], []
    term, dist, params = NEW_PRIOR
    for index, fit in enumerate(fits):
        extra = ["--prior", f"{term}={prior_text(dist, params)}"] if index else []
        steps.append(("refit" if index else "fit", timed(cli("fit", spec, "--data", data, "--out", fit, *sampler, *extra),
                                                         env)[0]))
        for number, query in enumerate(QUERIES[spec], start=1 + 5 * index):
            wall, out = timed(cli("query", fit, *query.args(unit), "--json"), env)
            steps.append((f"query {number}", wall))
            answers.append(answers_of(out))
    steps.append(("report", timed(cli("report", *fits, "--out", folder / "report"), env)[0]))
    return {"steps": steps, "answers": answers, "fit": str(fits[0])}


def prior_text(dist: str, params: dict) -> str:
    return f"{dist}({', '.join(f'{v:g}' for v in params.values())})"


def load_spec(spec: str) -> dict:
    with open(ROOT / "models" / f"{spec}.toml", "rb") as handle:
        return tomllib.load(handle)


def ours_one_process(spec: str, data: Path, folder: Path, cache: Path) -> dict:
    """The loop through the Python API in one child process: seconds per step (start + imports as wall minus steps)."""
    folder.mkdir(parents=True)
    task_file, result_file = folder / "task.json", folder / "result.json"
    task_file.write_text(json.dumps({"spec": spec, "data": str(data), "out": str(folder / "report")}))
    wall, _ = timed([sys.executable, __file__, "--ours-child", str(task_file), str(result_file)], ours_env(cache))
    result = json.loads(result_file.read_text())
    return {**result, "steps": [("start + imports", wall - sum(s for _, s in result["steps"])), *result["steps"]]}


def ours_child(task_file: str, result_file: str) -> None:
    """The loop with `import bayes_trial`, one process; runs with `--ours-child`."""
    import bayes_trial as bt
    from bayes_trial.data.contract import load_for_spec

    task = json.loads(Path(task_file).read_text())
    spec = bt.load_spec(task["spec"])
    data = Path(task["data"])
    # As `bayes-trial fit --data DIR` does: a survey is padded with everyone in the folder's register.
    register = data / TABLES["outflow"] if spec.table == "survey" else None
    term, dist, params = NEW_PRIOR
    steps, answers, fits = [], [], []
    for index in range(2):
        started = time.perf_counter()
        fits.append(bt.refit(fits[0], priors={term: bt.parse_prior(prior_text(dist, params))}, progress=False) if index
                    else bt.sample(spec, load_for_spec(spec, data / TABLES[task["spec"]], register=register), progress=False))
        steps.append(("refit" if index else "fit", time.perf_counter() - started))
        for number, query in enumerate(QUERIES[task["spec"]], start=1 + 5 * index):
            started = time.perf_counter()
            table = bt.hypothesis(fits[-1], query.args(spec.outcome_unit)[0], wave=query.wave,
                                  by="wave" if query.by_wave else None, rope=query.rope)
            steps.append((f"query {number}", time.perf_counter() - started))
            answers.append([{k: (None if k not in row or row[k] != row[k] else row[k])
                             for k in ("mean", "p_hypothesis", "p_rope", "wave")}
                            for row in table.to_dict(orient="records")])
    started = time.perf_counter()
    bt.report.report(fits, task["out"])
    steps.append(("report", time.perf_counter() - started))
    Path(result_file).write_text(json.dumps({"steps": steps, "answers": answers}, default=float))


# ------------------------------------------------------------------------------------------ baseline


def baseline_task(spec: str, data: Path, fit: Path, settings: dict, folder: Path) -> dict:
    """What the baseline child needs: raw rows, the formula and priors `fit` used, sampler settings, queries."""
    from bayes_trial.sampling.fit import load

    info = load(fit).info
    described = load_spec(spec)
    return {"spec": spec, "data": str(data / TABLES[spec]), "outcome": described["outcome"],
            "formula": f"{described['outcome']} ~ {info['formula_used'].split('~', 1)[1].strip()}",
            "family": described["family"], "control": described["control_arm"],
            "priors": json.loads(info["graph_priors"]), "new_prior": list(NEW_PRIOR), "settings": settings,
            "queries": [asdict(q) for q in QUERIES[spec]], "out": str(folder)}


def baseline(task: dict, folder: Path) -> dict:
    """Run the baseline child: its steps, its answers, and its start + imports as wall minus steps."""
    folder.mkdir(parents=True)
    task_file, result_file = folder / "task.json", folder / "result.json"
    task_file.write_text(json.dumps({**task, "out": str(folder)}))
    env = {**os.environ, **ONE_THREAD, "MPLBACKEND": "Agg"}
    env.pop("PYTENSOR_FLAGS", None)  # PyTensor's default compile directory, warm from earlier runs
    wall, _ = timed([sys.executable, __file__, "--baseline-child", str(task_file), str(result_file)], env)
    result = json.loads(result_file.read_text())
    imports = wall - sum(seconds for _, seconds in result["steps"])
    return {**result, "steps": [("start + imports", imports), *result["steps"]]}


def baseline_child(task_file: str, result_file: str) -> None:
    """The loop in plain Bambi + PyMC + ArviZ, one process; runs with `--baseline-child`."""
    steps = []
    import arviz as az
    import bambi as bmb
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    task = json.loads(Path(task_file).read_text())
    out = Path(task["out"])

    def bambi_priors(graph_priors: list[dict], new: list | None = None) -> dict:
        priors = {}
        for prior in graph_priors:
            params = {k: v for k, v in prior["params"].items() if not (k == "loc" and v == 0)}
            made = bmb.Prior(prior["distribution"], **params)
            priors[prior["term"]] = bmb.Prior("Normal", mu=0, sigma=made) if "|" in prior["term"] else made
        if new:
            priors[new[0]] = bmb.Prior(new[1], **new[2])
        return priors

    def fit(new_prior: list | None):
        rows = pd.read_csv(task["data"]).dropna(subset=[task["outcome"]])
        arms = [task["control"], *sorted(set(rows["arm"]) - {task["control"]})]
        rows["arm"] = pd.Categorical(rows["arm"], categories=arms)
        if "wave" in rows:
            rows["wave"] = pd.Categorical(rows["wave"])
        model = bmb.Model(task["formula"], rows, family=task["family"],
                          priors=bambi_priors(task["priors"], new_prior))
        settings = task["settings"]
        idata = model.fit(draws=settings["draws"], tune=settings["tune"], chains=settings["chains"],
                          target_accept=settings["target_accept"], random_seed=settings["seed"], progressbar=False)
        return model, idata, rows

    def mean_response(model, idata, persons: pd.DataFrame, assign: dict) -> np.ndarray:
        """Draws (chain x draw) of the mean expected outcome with every person given `assign`."""
        copy = persons.copy()
        for column, value in assign.items():
            copy[column] = pd.Categorical([value] * len(copy), categories=persons[column].cat.categories)
        predicted = model.predict(idata, kind="response_params", data=copy, inplace=False)
        return predicted.posterior[model.family.likelihood.parent].mean("__obs__").values

    def answer(model, idata, rows: pd.DataFrame, query: dict) -> list[dict]:
        persons = rows.drop_duplicates("participant_id", keep="first").reset_index(drop=True)
        waves = list(rows["wave"].cat.categories) if "wave" in rows else [None]
        asked = waves if query["by_wave"] else [query["wave"] if query["wave"] is not None else waves[-1]]
        found = []
        for wave in asked:
            at = {} if wave is None else {"wave": wave}
            draws = (mean_response(model, idata, persons, {"arm": query["plus"], **at})
                     - mean_response(model, idata, persons, {"arm": query["minus"], **at}))
            holds = draws > query["threshold"] if query["compare"] == ">" else draws < query["threshold"]
            ess = float(az.ess(holds.astype(float)))  # NaN when every draw agrees
            row = {"mean": float(draws.mean()), "p_hypothesis": float(holds.mean()),
                   "wave": None if wave is None else int(wave), "ess": ess if np.isfinite(ess) else float(holds.size)}
            if query["rope"]:
                low, high = query["rope"]
                row["p_rope"] = float(((draws >= low) & (draws <= high)).mean())
            found.append(row)
        return found

    answers, fits = [], {}
    for index, new_prior in enumerate([None, task["new_prior"]]):
        name = "refit" if index else "fit"
        started = time.perf_counter()
        fits[name] = fit(new_prior)
        steps.append((name, time.perf_counter() - started))
        for number, query in enumerate(task["queries"], start=1 + 5 * index):
            started = time.perf_counter()
            answers.append(answer(*fits[name], query))
            steps.append((f"query {number}", time.perf_counter() - started))
    started = time.perf_counter()
    for name, (model, idata, _) in fits.items():
        az.summary(idata).to_csv(out / f"{name}_summary.csv")
        az.plot_trace(idata)
        plt.savefig(out / f"{name}_trace.png")
        model.predict(idata, kind="response")
        az.plot_ppc(idata)
        plt.savefig(out / f"{name}_ppc.png")
        plt.close("all")
        model.compute_log_likelihood(idata)
        az.loo(idata)
    az.compare({name: idata for name, (_, idata, _) in fits.items()}).to_csv(out / "compare.csv")
    steps.append(("report", time.perf_counter() - started))
    Path(result_file).write_text(json.dumps({"steps": steps, "answers": answers}))


# ------------------------------------------------------------------------------------------- section


def totals(run: dict) -> float:
    return sum(seconds for _, seconds in run["steps"])


def step_table(spec: str, runs: dict[str, dict]) -> list[str]:
    names = list(dict.fromkeys(["start + imports", *(name for run in runs.values() for name, _ in run["steps"])]))
    unit = load_spec(spec)["unit"]
    labels = {f"query {n}": f"query {n}: `{' '.join(q.args(unit))}`"
              for n, q in enumerate(QUERIES[spec] * 2, start=1)}
    labels["refit"] = f"refit with `{NEW_PRIOR[0]}={prior_text(NEW_PRIOR[1], NEW_PRIOR[2])}`"
    lines = [f"| {spec}: step | " + " | ".join(f"{name} (s)" for name in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    for name in names:
        cells = [next((f"{s:.1f}" for n, s in run["steps"] if n == name), "in each step") for run in runs.values()]
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{totals(run):.1f}**" for run in runs.values()) + " |")
    return lines


def agreement(spec: str, runs: dict[str, dict]) -> tuple[list[str], int, int]:
    """P(hypothesis) on both sides, the difference in Monte Carlo SEs; rows that agree within 3 SEs, rows."""
    unit = load_spec(spec)["unit"]
    ours_answers, base_answers = runs["ours, cold"]["answers"], runs["baseline"]["answers"]
    lines = [f"| {spec}: query | fit | ours: mean, P | baseline: mean, P | abs. difference / MCSE |",
             "|---|---|---|---|---:|"]
    agree = total = 0
    scale = 100 if unit == "pp" else 1
    for number, (query, mine, theirs) in enumerate(zip(QUERIES[spec] * 2, ours_answers, base_answers), start=1):
        for a, b in zip(mine, theirs):
            keys = ["p_hypothesis", "p_rope"] if query.rope else ["p_hypothesis"]
            for key in keys:
                p = (a[key] + b[key]) / 2
                # Both sides' MCSE taken as the baseline's, sqrt(P(1-P)/ESS of the indicator): see the protocol.
                mcse = (2 * p * (1 - p) / max(b["ess"], 1.0)) ** 0.5
                gap = abs(a[key] - b[key]) / mcse if mcse > 0 else (0.0 if a[key] == b[key] else float("inf"))
                agree, total = agree + (gap <= 3), total + 1
                what = " ".join(query.args(unit)) + (f" (wave {b['wave']})" if query.by_wave else "")
                what += " P(ROPE)" if key == "p_rope" else ""
                lines.append(f"| `{what}` | {'refit' if number > 5 else 'fit'} | {a['mean']:.2f}, {a[key]:.3f} | "
                             f"{b['mean'] * scale:.2f}, {b[key]:.3f} | {gap:.1f} |")
    return lines, agree, total


def settings_text(settings: dict) -> str:
    return (f"{settings['chains']} chains x ({settings['tune']} tuning + {settings['draws']} draws), target_accept "
            f"{settings['target_accept']}, seed {settings['seed']}")


def section(results: dict[str, dict], settings: dict[str, dict], loads: tuple[str, str], minutes: float) -> str:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("pymc", "pytensor", "bambi", "arviz", "nutpie", "numpy"))
    lines = [BEGIN, "## The whole loop: fit, 5 queries, refit with a new prior, 5 queries, report (issue 16)", "",
             f"Written by `python benchmarks/whole_loop.py` in {minutes:.1f} min; {platform.machine()}, "
             f"{os.cpu_count()} cores; Python {platform.python_version()}; {versions}. 1-minute load average "
             f"{loads[0]} at the start and {loads[1]} at the end (other sessions' jobs may have shared "
             "the machine; the benchmark lock kept other benchmarks out; the three runs of each spec ran back to back).", "",
             f"**Protocol.** Design `{DESIGN}` (one town, three arms, 345 persons), data seed {DATA_SEED}; "
             f"sampler settings: {'; '.join(f'{spec} {settings_text(s)}' for spec, s in settings.items())}, "
             "each spec's own, the same on both sides. *ours*: each step a new "
             "`python -m bayes_trial.cli` process (`fit`, `query ... --json`, `fit --prior`, `report FIT REFIT`), "
             "wall time with interpreter start and imports; *cold*: a new, empty compiled-model cache "
             "(`BAYES_TRIAL_CACHE_DIR`; first-ever use; the refit reuses what the first fit compiled); *warm*: the "
             "same loop again with that cache (a second session); *one process*: the same loop through the Python API "
             "(`bt.sample`, `bt.hypothesis`, `bt.refit`, `bt.report.report`) in one process with that cache, as a "
             "notebook user, its start + imports the process wall minus the steps timed inside. *baseline*: one Python process with plain Bambi + "
             "PyMC + ArviZ, as a notebook user: `bmb.Model` on the raw rows (Bernoulli rows for outflow), the formula "
             "and priors `fit` used, `model.fit` (`pm.sample`, PyMC's default 2 processes for 4 chains) with "
             "OMP/OPENBLAS/MKL_NUM_THREADS=1 (with the default BLAS threads PyMC's chains were found 25x slower on "
             "this machine); each query from `model.predict(kind=\"response_params\")` on every person given each arm "
             "in turn, averaged per draw (the g-computation `query` does); the report: `az.summary`, `az.plot_trace`, "
             "`az.plot_ppc` after `model.predict(kind=\"response\")`, `compute_log_likelihood` + `az.loo` for both "
             "fits and `az.compare`, PNGs saved. The baseline's PyTensor compile directory is PyTensor's default "
             "(warm from earlier runs on this machine: its best case). Its start + imports: process wall minus the "
             "steps timed inside.", ""]
    goal_lines = []
    for spec, runs in results.items():
        base = totals(runs["baseline"])
        cold, warm = totals(runs["ours, cold"]), totals(runs["ours, warm"])
        one = totals(runs["ours, one process"]) if "ours, one process" in runs else float("nan")
        table_lines, agree, total = agreement(spec, runs)
        lines += [*step_table(spec, runs), "",
                  f"{spec}: baseline / ours = **{base / cold:.1f}x** cold, **{base / warm:.1f}x** warm, "
                  f"**{base / one:.1f}x** in one process ({base:.0f} s against {cold:.0f} s, {warm:.0f} s and "
                  f"{one:.0f} s).", "",
                  *table_lines, "",
                  f"{agree} of {total} probabilities agree within 3 Monte Carlo SEs; the cold and warm runs of ours "
                  f"printed {'the same' if runs['ours, cold']['answers'] == runs['ours, warm']['answers'] else 'different'} "
                  "answers.", ""]
        goal_lines.append(f"- {spec}: **{'reached' if base / cold >= GOAL else 'not reached'}** "
                          f"cold ({base / cold:.1f}x), **{'reached' if base / warm >= GOAL else 'not reached'}** warm "
                          f"({base / warm:.1f}x), **{'reached' if base / one >= GOAL else 'not reached'}** in one "
                          f"process like the baseline ({base / one:.1f}x).")
    lines += ["MCSE of a difference: sqrt(2 P (1 - P) / ESS), with ESS the baseline's bulk ESS of the indicator "
              "draws, taken for both sides (in the default-path table at the top of this file ours' ESS was the larger); "
              "means in the outcome's unit.", "",
              f"Goal: the whole loop >= {GOAL:.0f}x faster than plain Bambi + PyMC + ArviZ end to end:", "",
              *goal_lines, END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default="outflow,wellbeing", help="specs to run (default outflow,wellbeing)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke check: {QUICK['chains']} chains x ({QUICK['tune']} + {QUICK['draws']}); nothing written")
    parser.add_argument("--baseline-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--ours-child", nargs=2, help=argparse.SUPPRESS)
    add_no_write(parser)
    args = parser.parse_args()
    if args.baseline_child:
        baseline_child(*args.baseline_child)
        return
    if args.ours_child:
        ours_child(*args.ours_child)
        return
    started = time.perf_counter()
    start_load = f"{os.getloadavg()[0]:.1f}"
    results, used = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timed(cli("simulate", "--design", DESIGN, "--seed", DATA_SEED, "--out", tmp / "data"), ours_env(tmp / "unused"))
        for spec in args.specs.split(","):
            settings = {**load_spec(spec)["sampler"], **(QUICK if args.quick else {})}
            sampler = [f"--{k}={v}" for k, v in QUICK.items()] if args.quick else []
            cache = tmp / f"cache_{spec}"
            runs = {}
            for label in ("ours, cold", "ours, warm"):
                runs[label] = ours(spec, tmp / "data", tmp / spec / label.replace(", ", "_"), cache, sampler)
                print(spec, label, f"{totals(runs[label]):.1f} s", runs[label]["steps"], flush=True)
            runs["ours, one process"] = ours_one_process(spec, tmp / "data", tmp / spec / "one_process", cache)
            print(spec, "ours, one process", f"{totals(runs['ours, one process']):.1f} s",
                  runs["ours, one process"]["steps"], flush=True)
            task = baseline_task(spec, tmp / "data", Path(runs["ours, cold"]["fit"]), settings, tmp)
            runs["baseline"] = baseline(task, tmp / spec / "baseline")
            print(spec, "baseline", f"{totals(runs['baseline']):.1f} s", runs["baseline"]["steps"], flush=True)
            results[spec], used[spec] = runs, settings
            # Written after each spec, so that a run stopped later still leaves what it measured.
            text = section(results, used, (start_load, f"{os.getloadavg()[0]:.1f}"), (time.perf_counter() - started) / 60)
            if not (args.no_write or args.quick):
                publish(text, False, BEGIN, END)
    print(text)


if __name__ == "__main__":
    main()
