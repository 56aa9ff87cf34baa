"""The discrete-time hazard model against the binomial outflow model on the same data (issue 16, item 6).

    python benchmarks/hazard_vs_binomial.py             # writes its section of benchmarks/RESULTS.md
    python benchmarks/hazard_vs_binomial.py --no-write  # prints it

Data: the demo's trial (design nl7, data seed 1: 3,888 randomised in 7 towns). Both bundled specs,
`outflow` (outflow within follow-up, binomial cells) and `outflow_hazard` (monthly hazard, person-months
in binomial cells), are fitted in this one process with their own sampler settings (4 chains x 1000
draws after 1000 tuning steps), each after a warm-up fit of 50 draws that takes compilation out of the
comparison. Reported: wall time of the timed fit, its sampling time, the smallest bulk ESS over the
population parameters, and the time to a bulk ESS of 400 (wall time x 400 / smallest ESS).
"""

from __future__ import annotations

import argparse
import os
import time

from big_survey import add_no_write, publish

import bayes_trial as bt
from bayes_trial.batch.simulated import population_parameters, sampling_diagnostics

SECTION = "## Hazard model against the binomial outflow model"
BEGIN, END = "<!-- hazard_vs_binomial: begin -->", "<!-- hazard_vs_binomial: end -->"
SPECS = ("outflow", "outflow_hazard")
GOAL = 3.0


def measure(register, spec_name: str) -> dict:
    """Warm-up fit (compilation), then the timed fit with the spec's own sampler settings."""
    spec = bt.load_spec(spec_name)
    bt.sample(spec, register, progress=False, draws=50, tune=50, chains=1)
    started = time.perf_counter()
    fit = bt.sample(spec, register, progress=False)
    wall = time.perf_counter() - started
    diagnostics = sampling_diagnostics(fit.idata, population_parameters(fit.idata.posterior))
    return {"spec": spec_name, "rows": len(fit.prepared.data), "wall": wall, "sampling": fit.info["sampling_seconds"],
            **diagnostics, "to_ess_400": wall * 400 / diagnostics["min_ess_bulk"]}


def section(rows: list[dict], load: tuple[str, str]) -> str:
    binomial, hazard = rows
    ratio = hazard["to_ess_400"] / binomial["to_ess_400"]
    lines = [BEGIN, SECTION, "",
             "`python benchmarks/hazard_vs_binomial.py`: both outflow specs on the demo's nl7 data (seed 1), compilation "
             f"taken out by a warm-up fit; one process, one after the other. Load average {load[0]} at the start, "
             f"{load[1]} at the end (2 cores, shared).", "",
             "| spec | model rows (binomial cells) | timed fit wall (s) | sampling (s) | min bulk ESS | divergences | "
             "max R-hat | time to bulk ESS 400 (s) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['spec']} | {r['rows']:,} | {r['wall']:.1f} | {r['sampling']:.1f} | {r['min_ess_bulk']:.0f} | "
              f"{r['divergences']} | {r['max_rhat']:.3f} | {r['to_ess_400']:.1f} |" for r in rows]
    lines += ["", f"Hazard / binomial, time to bulk ESS 400: **{ratio:.1f}x** (goal: within {GOAL:g}x: "
              f"{'reached' if ratio <= GOAL else 'not reached'}). Where it comes from: the hazard model has "
              f"{hazard['rows'] / binomial['rows']:.0f}x the binomial cells (person-months grouped by town, arm, "
              f"consultant, stock and month, against persons grouped by town, arm, consultant and stock), its "
              f"sampling took {hazard['sampling'] / binomial['sampling']:.0f}x as long, and its smallest bulk ESS "
              f"was {hazard['min_ess_bulk']:.0f} against {binomial['min_ess_bulk']:.0f}.", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_no_write(parser)
    args = parser.parse_args()
    register = bt.simulate(bt.load_design("nl7"), seed=1).register
    start = f"{os.getloadavg()[0]:.1f}"
    rows = [measure(register, name) for name in SPECS]
    publish(section(rows, (start, f"{os.getloadavg()[0]:.1f}")), args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
