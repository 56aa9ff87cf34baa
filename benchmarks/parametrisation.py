"""Centred, non-centred or per-term (`auto`) group effects on the outflow model at x1 and x10 (issue 16, item 5).

    python benchmarks/parametrisation.py                 # writes its section of benchmarks/RESULTS.md
    python benchmarks/parametrisation.py --no-write      # prints it
    python benchmarks/parametrisation.py --seeds 1 --variants auto --cases outflow_10x --no-write

Cases and timing as `benchmarks/run.py` (the same data, the default nutpie path, 4 chains x (1000 + 1000)):
each variant is the spec with `parametrisation` set, built by `sampling.build`; time to ESS 400 without
compile = tuning time + draw time x 400 / min bulk ESS over the parameters of interest. A variant may also
be a per-term table written `term=choice,term=choice` (e.g. `1|municipality=centred`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import arviz as az
import numpy as np
from big_survey import add_no_write, publish

import run

import bayes_trial as bt
from bayes_trial.modelling import frames
from bayes_trial.modelling.parametrisation import summary
from bayes_trial.sampling import build as bambi_build
from bayes_trial.sampling import fastpaths

BEGIN, END = "<!-- parametrisation: begin -->", "<!-- parametrisation: end -->"
SECTION = "## Group-effect parametrisation per term (issue 16, item 5)"
GOAL = 1.5
VARIANTS = ("auto", "noncentred", "centred")


def parse_variant(text: str) -> str | dict[str, str]:
    if "=" not in text:
        return text
    return dict(part.split("=", 1) for part in text.split(","))


def lowest_ess(idata, names: list[str]) -> str:
    """The parameter (and level) with the smallest bulk ESS, and that ESS."""
    ess = az.ess(idata.posterior[names], method="bulk")
    name = min(names, key=lambda n: float(ess[n].min()))
    values = ess[name]
    position = np.unravel_index(int(np.argmin(values.to_numpy())), values.shape)
    level = ", ".join(str(values[dim].values[i]) for dim, i in zip(values.dims, position))
    return f"{name}{f' [{level}]' if level else ''}: {float(values.min()):.0f}"


def steps_to_ess(idata, min_ess: float) -> float:
    """Leapfrog steps (gradients) of tuning, plus those of drawing x 400 / min bulk ESS."""
    tune = float(idata.warmup_sample_stats["n_steps"].sum())
    return tune + float(idata.sample_stats["n_steps"].sum()) * run.TARGET_ESS / max(min_ess, 1.0)


def measure(case: run.Case, variant: str, seeds: list[int]) -> dict:
    frame = run.case_data(case)
    spec = dataclasses.replace(bt.load_spec(case.spec), parametrisation=parse_variant(variant))
    prepared = frames.prepare(spec, frame)
    model = bambi_build.build(spec, prepared)
    names = run.interest(model.backend.model)
    settings = {"draws": 1000, "tune": 1000, "chains": 4, "target_accept": spec.sampler["target_accept"]}
    runs = []
    for seed in seeds:
        run.say(f"[{case.name}] {variant} seed {seed} (load {os.getloadavg()[0]:.1f})")
        started = time.perf_counter()
        idata = fastpaths.sample_nutpie(model, prepared, {**settings, "seed": seed}, save_warmup=True)
        wall = time.perf_counter() - started
        compile_s = float(idata.sample_stats.attrs["compile_seconds"])
        stats = run.diagnostics(idata, names)
        runs.append({**stats, **run.timing(compile_s, wall - compile_s, idata, stats), "lowest": lowest_ess(idata, names),
                     "steps_to_ess": steps_to_ess(idata, stats["min_ess"]),
                     "steps_per_draw": float(idata.sample_stats["n_steps"].mean()),
                     "tuning_steps": float(idata.warmup_sample_stats["n_steps"].sum()),
                     "step_size": float(idata.sample_stats["step_size"].mean())})
    return {"case": case.name, "variant": variant, "choice": summary(model.parametrisation), "runs": runs}


def cell(text: str) -> str:
    """Text for a Markdown table cell: group terms' bars escaped."""
    return text.replace("|", "\\|")


def median(values) -> float:
    return float(statistics.median(values))


def section(results: list[dict], minutes: float, loads: list[float]) -> str:
    lines = [BEGIN, SECTION, "",
             f"`python benchmarks/parametrisation.py` in {minutes:.1f} min; 1-minute load average {min(loads):.1f} to "
             f"{max(loads):.1f} on {os.cpu_count()} cores (shared: seconds are noisy). Cases `outflow` and `outflow_10x` "
             "of `benchmarks/run.py` (design nl7 at x1 and x10 participants, 89 binomial cells either way), the default "
             "nutpie path, 4 chains x (1000 + 1000), target_accept 0.95; each variant sets the spec's `parametrisation`. "
             "Time to ESS 400 excludes compilation (tuning + draws x 400 / min bulk ESS over population effects, group "
             "SDs; not the per-level effects); *leapfrog steps to ESS 400* counts gradients the same way (tuning steps + "
             "draw steps x 400 / min bulk ESS). Each gradient costs the same at x1 and x10 (the same 89 cells), so the "
             "goal is judged on steps; seconds depend on what else ran.", "",
             "| case | parametrisation | terms | to ESS 400, no compile (s): median (per seed) | leapfrog steps to ESS 400 "
             "(thousands, median) | leapfrog steps per draw | step size | min bulk ESS per seed | divergences per seed | "
             "max R-hat | lowest-ESS parameter (first seed) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        runs = res["runs"]
        times = [r["to_ess_sampling_s"] for r in runs]
        per_seed = ", ".join(f"{t:.1f}" for t in times)
        ess = " / ".join(f"{r['min_ess']:.0f}" for r in runs)
        divergences = " / ".join(str(r["divergences"]) for r in runs)
        # Leapfrog steps to ESS 400 (tuning steps + draw steps x 400 / min ESS): the machine-load-free cost,
        # each step one gradient of the same 89 cells at x1 and x10.
        to_ess_steps = median([r["steps_to_ess"] for r in runs])
        lines.append(f"| {res['case']} | {cell(res['variant'])} | {cell(res['choice'])} | {median(times):.1f} ({per_seed}) | "
                     f"{to_ess_steps / 1000:.0f} | {median([r['steps_per_draw'] for r in runs]):.0f} | "
                     f"{median([r['step_size'] for r in runs]):.3f} | {ess} | {divergences} | "
                     f"{max(r['max_rhat'] for r in runs):.3f} | `{cell(runs[0]['lowest'])}` |")
    by = {(r["case"], r["variant"]): r["runs"] for r in results}
    for variant in [v for v in VARIANTS if ("outflow", v) in by and ("outflow_10x", v) in by]:
        small, large = [median([x["to_ess_sampling_s"] for x in by[(case, variant)]]) for case in ("outflow", "outflow_10x")]
        steps, per_draw, tuning = ([median([x[key] for x in by[(case, variant)]]) for case in ("outflow", "outflow_10x")]
                                   for key in ("steps_to_ess", "steps_per_draw", "tuning_steps"))
        # Judged on leapfrog steps: a step is one gradient of the same 89 cells at x1 and x10, so steps are
        # the time on an idle machine, while seconds on this shared one also measure the other jobs.
        lines += ["", f"Goal, outflow with 10x participants <= {GOAL:g}x the time to ESS 400, {variant}: "
                  f"**{'reached' if steps[1] / steps[0] <= GOAL else 'not reached'}**: leapfrog steps to ESS 400 "
                  f"{steps[0] / 1000:.0f}k -> {steps[1] / 1000:.0f}k (x{steps[1] / steps[0]:.2f}); seconds "
                  f"{small:.1f} -> {large:.1f} (x{large / small:.2f}); steps per draw {per_draw[0]:.0f} -> {per_draw[1]:.0f}, "
                  f"tuning steps {tuning[0] / 1000:.0f}k -> {tuning[1] / 1000:.0f}k."]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_no_write(parser)
    parser.add_argument("--cases", default="outflow,outflow_10x")
    parser.add_argument("--variants", default=";".join(VARIANTS), help="';'-separated: auto, centred, noncentred or term=choice,...")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = [101 + i for i in range(args.seeds)]
    started, loads, results = time.perf_counter(), [], []
    for name in args.cases.split(","):
        for variant in args.variants.split(";"):
            loads.append(os.getloadavg()[0])
            results.append(measure(run.CASES[name], variant, seeds))
    loads.append(os.getloadavg()[0])
    publish(section(results, (time.perf_counter() - started) / 60, loads), args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
