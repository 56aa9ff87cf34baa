"""Benchmark suite for issue 5: the project's default sampling path against plain Bambi + PyMC NUTS.

    .venv/bin/python benchmarks/run.py            # full suite, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run.py --quick    # smoke run, writes benchmarks/RESULTS-quick.md
    .venv/bin/python benchmarks/run.py --cases survey   # a subset: its own section of RESULTS.md

The full suite writes its report between `<!-- run: begin -->` and `<!-- run: end -->` in RESULTS.md; a subset
of cases writes between `<!-- run SUBSET: begin/end -->` markers; the rest of the file is left as it is.

Per case and seed, both paths fit the same simulated data with the same priors, in the same process:

* default: what `bayes_trial.sample` runs (`fastpaths.sample_nutpie`: nutpie, participant intercepts
  integrated out for Gaussian repeated measures, binary outcomes as binomial cells, compiled-model cache);
* baseline: the Bambi model of the same formula on the raw rows (Bernoulli rows for outflow), sampled
  by `pm.sample` with PyMC's defaults (target_accept 0.8, jitter+adapt_diag), 4 chains on the cores there are.

The suite compiles into a new, empty cache directory (`BAYES_TRIAL_CACHE_DIR`, PyTensor's compile directory with
it), so each case's first compile is what a first-ever fit pays, for both paths. Every process of the suite, PyMC's
chain workers included, runs its BLAS with one thread: the variables below are
set before numpy is imported and workers inherit them. PyMC's own `blas_cores` limit is not applied to workers
started by fork (PyMC issue 7354), and with two chains x default BLAS threads on two cores a PyMC fit of the
collapsed wellbeing model took 418 s against 15.7 s (../shared/notes/compile_cache/README.md).

"Time to ESS 400" is compile + tuning time + draw time x 400 / (minimum bulk ESS over the parameters of
interest), the tuning/draw split taken from the leapfrog steps of each phase. Ratios are medians over
seeds of baseline / default, each measured within the same run on the same machine.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
os.environ.update({name: "1" for name in BLAS_THREAD_VARIABLES})
# A new, empty compiled-model cache (ours and PyTensor's C cache for PyMC): a case's first compile is a first-ever one.
COMPILE_CACHE = tempfile.mkdtemp(prefix="bayes-trial-bench-cache-")
os.environ["BAYES_TRIAL_CACHE_DIR"] = COMPILE_CACHE
atexit.register(shutil.rmtree, COMPILE_CACHE, ignore_errors=True)

import argparse
import copy
import dataclasses
import multiprocessing
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import arviz as az
import numpy as np

import bayes_trial as bt
from bayes_trial.batch.sbc import ranked_parameters
from bayes_trial.sampling import fastpaths
from bayes_trial.modelling import frames as model_mod
from bayes_trial.sampling import build as bambi_build
from big_survey import write as write_section

HERE = Path(__file__).resolve().parent
TARGET_ESS = 400


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark case: a design scaled to a size, a spec, and the data it makes."""
    name: str
    design: str
    spec: str
    table: str
    scale: int = 1
    baseline: bool = True  # the plain Bambi + PyMC baseline runs unless --thorough is needed for it


CASES = {
    "survey": Case("survey", str(HERE / "survey_design.toml"), "wellbeing", "survey"),
    "outflow": Case("outflow", "nl7", "outflow", "register"),
    # PyMC's NUTS on 36,000 rows with 12,000 participant offsets did not finish 250 + 250 iterations in
    # 27 min here: that baseline alone would break the suite's 30-minute budget, so it needs --thorough.
    "survey_10x": Case("survey_10x", str(HERE / "survey_design.toml"), "wellbeing", "survey", 10, baseline=False),
    "outflow_10x": Case("outflow_10x", "nl7", "outflow", "register", 10),
}


def case_data(case: Case, seed: int = 2024):
    """Simulated table for a case: the design with every arm of every town `scale` times larger."""
    design = copy.deepcopy(bt.load_design(case.design))
    for town in design["towns"]:
        town["participants"] = {arm: n * case.scale for arm, n in town["participants"].items()}
    sim = bt.simulate(design, seed=seed)
    return sim.survey if case.table == "survey" else sim.register


def interest(pymc_model) -> list[str]:
    """Parameters of interest: population effects, group-level SDs, residual/auxiliary parameters (as SBC ranks)."""
    return ranked_parameters(pymc_model)


def diagnostics(idata, names: list[str]) -> dict:
    posterior = idata.posterior[names]
    ess = az.ess(posterior, method="bulk")
    rhat = az.rhat(posterior)
    return {
        "min_ess": float(min(ess[v].min() for v in names)),
        "max_rhat": float(max(rhat[v].max() for v in names)),
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "min_bfmi": float(np.min(az.bfmi(idata))),
    }


def tuning_share(idata) -> float:
    """Share of the leapfrog steps (so of sampling time) spent tuning."""
    tune = float(idata.warmup_sample_stats["n_steps"].sum()) if "warmup_sample_stats" in idata.groups() else 0.0
    draws = float(idata.sample_stats["n_steps"].sum())
    return tune / (tune + draws) if tune + draws else 0.0


def timing(compile_s: float, sampling_s: float, idata, stats: dict) -> dict:
    tune_s = sampling_s * tuning_share(idata)
    draws_s = sampling_s - tune_s
    to_target = tune_s + draws_s * TARGET_ESS / max(stats["min_ess"], 1.0)
    return {"compile_s": compile_s, "sampling_s": sampling_s, "wall_s": compile_s + sampling_s,
            "to_ess_s": compile_s + to_target, "to_ess_sampling_s": to_target}


def run_default(full, prepared, settings, names, **options) -> dict:
    started = time.perf_counter()
    idata = fastpaths.sample_nutpie(full, prepared, settings, save_warmup=True, **options)
    wall = time.perf_counter() - started
    attrs = idata.sample_stats.attrs
    stats = diagnostics(idata, names)
    return {**stats, **timing(float(attrs["compile_seconds"]), wall - float(attrs["compile_seconds"]), idata, stats),
            "cached": bool(attrs["compile_cached"])}


def run_baseline(full, settings, names, cores: int) -> dict:
    import pymc as pm

    started = time.perf_counter()
    with full.backend.model:
        idata = pm.sample(draws=settings["draws"], tune=settings["tune"], chains=settings["chains"], cores=cores,
                          random_seed=settings["seed"], var_names=names, discard_tuned_samples=False,
                          progressbar=False, compute_convergence_checks=False)
    wall = time.perf_counter() - started
    sampling = float(idata.sample_stats.attrs["sampling_time"])
    stats = diagnostics(idata, names)
    return {**stats, **timing(wall - sampling, sampling, idata, stats), "cached": False}


def all_centred(spec, prepared):
    """The same model (same priors) with every group term centred (`parametrisation = "centred"`)."""
    return bambi_build.build(dataclasses.replace(spec, parametrisation="centred"), prepared)


def blas_threads() -> list[int]:
    """Thread counts of the BLAS libraries loaded in this process (threadpoolctl), distinct and sorted."""
    from threadpoolctl import threadpool_info

    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


def checked_blas_threads() -> str:
    """BLAS threads here and in a child started as PyMC starts its chain workers; raises unless all are 1."""
    with multiprocessing.get_context().Pool(1) as pool:  # PyMC's workers use the default context too
        worker = pool.apply(blas_threads)
    here = blas_threads()
    if here != [1] or worker != [1]:
        raise RuntimeError(f"BLAS threads not limited to 1: {here} here, {worker} in a worker process")
    return (f"BLAS limited to 1 thread per process ({', '.join(BLAS_THREAD_VARIABLES)}=1 set before numpy is imported; "
            f"checked with threadpoolctl here and in a {multiprocessing.get_start_method()}ed worker process, as PyMC "
            "starts one per chain)")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Seeds and chain lengths of one suite run."""

    seeds: list[int]
    default: dict  # chains, tune, draws of the default path (the spec's own chain count)
    baseline: dict  # PyMC's defaults: chains = max(2, cores up to 4)
    large_seeds: int  # baseline and ablation seeds for the 10x cases (they cost 10x)
    large_length: int  # tuning and draw iterations of the 10x baselines
    ablation_seeds: int
    thorough: bool


def bench_case(case: Case, plan: Plan, ablations: bool, cores: int) -> dict:
    frame = case_data(case)
    spec = bt.load_spec(case.spec)
    prepared = model_mod.prepare(spec, frame)
    started = time.perf_counter()
    full = bambi_build.build(spec, prepared)
    build_s = time.perf_counter() - started
    plain_prepared = model_mod.prepare(dataclasses.replace(spec, aggregate=False), frame)
    plain = bambi_build.build(spec, plain_prepared) if plain_prepared.aggregated != prepared.aggregated else full
    names = interest(full.backend.model)
    baseline_seeds = [] if not (case.baseline or plan.thorough) else (
        plan.seeds if case.scale == 1 else plan.seeds[:plan.large_seeds])
    baseline_settings = plan.baseline if case.scale == 1 else {**plan.baseline, "tune": plan.large_length,
                                                                "draws": plan.large_length}
    out = {"case": case, "rows": len(frame), "model_rows": len(prepared.data), "notes": prepared.notes,
           "formula": prepared.formula, "build_s": build_s, "default": [], "baseline": [], "ablations": {},
           "baseline_settings": baseline_settings}
    fastpaths.clear_cache()
    target = spec.sampler["target_accept"]
    for seed in plan.seeds:
        say(f"[{case.name}] seed {seed}: default path")
        out["default"].append(run_default(full, prepared, {**plan.default, "seed": seed, "target_accept": target}, names))
        if seed in baseline_seeds:
            say(f"[{case.name}] seed {seed}: plain Bambi + PyMC NUTS")
            out["baseline"].append(run_baseline(plain, {**baseline_settings, "seed": seed, "target_accept": 0.8}, names, cores))
    if ablations:
        seeds = plan.seeds[:plan.ablation_seeds if case.scale == 1 else plan.large_seeds]
        out["ablations"] = bench_ablations(case, spec, full, prepared, plain, plain_prepared, names, seeds,
                                           {**plan.default, "target_accept": target})
    return out


def bench_ablations(case, spec, full, prepared, plain, plain_prepared, names, seeds, settings) -> dict:
    """One fast path switched off (or an option switched on) at a time, against the default path."""
    variants = {"low-rank mass matrix": (full, prepared, {"low_rank": True})}
    if fastpaths.can_marginalise(prepared):
        centred = all_centred(spec, prepared)
        variants.update({
            "participant intercepts integrated out, coefficients sampled": (full, prepared, {"collapse": False}),
            "same, centred group effects": (centred, prepared, {"collapse": False}),
            "nothing integrated out (the Bambi model in nutpie)": (full, prepared, {"marginalise": False}),
        })
    else:
        variants["all group effects centred"] = (all_centred(spec, prepared), prepared, {})
    if plain_prepared.aggregated != prepared.aggregated:
        variants["Bernoulli rows (no aggregation)"] = (plain, plain_prepared, {})
    results = {}
    for label, (model, data, options) in variants.items():
        results[label] = []
        for seed in seeds:
            say(f"[{case.name}] seed {seed}: {label}")
            try:
                results[label].append(run_default(model, data, {**settings, "seed": seed}, names, **options))
            except RuntimeError as error:  # reported, so that one failing variant does not lose the case's results
                say(f"[{case.name}] seed {seed}: {label} failed: {error}")
                failed = str(error).splitlines()[0]
                results.pop(label)
                results[f"{label} (failed: {failed})"] = []
                break
    return results


def bench_cache(seed: int) -> list[dict]:
    """First fit, refit with a new prior, refit with a new seed, through `bayes_trial.sample`: compile seconds."""
    short = {"draws": 300, "tune": 300, "chains": 4}
    rows = []
    for case, prior in ((CASES["outflow"], "Normal(0, 0.3)"), (CASES["survey"], "Normal(0, 0.3)")):
        frame = case_data(case)
        spec = bt.load_spec(case.spec)
        fastpaths.clear_cache()
        steps = [("first fit", spec, seed), (f"new prior arm={prior}", spec.with_priors({"arm": bt.parse_prior(prior)}), seed),
                 ("new seed", spec, seed + 1)]
        for label, this_spec, this_seed in steps:
            say(f"[cache] {case.name}: {label}")
            fit = bt.sample(this_spec, frame, progress=False, **short, seed=this_seed)
            attrs = fit.idata.sample_stats.attrs
            rows.append({"case": case.name, "step": label, "compile_s": float(attrs["compile_seconds"]),
                         "cached": bool(attrs["compile_cached"]), "sampler_s": float(fit.info["sampling_seconds"]),
                         "arm_sd": float(fit.idata.posterior["arm"].std())})
    return rows


# ---------------------------------------------------------------------------------------------
# RESULTS.md
# ---------------------------------------------------------------------------------------------


def median(values) -> float:
    return float(statistics.median(values))


def summary(runs: list[dict]) -> dict:
    return {
        "compile": f"{runs[0]['compile_s']:.1f}" + (f" / {median([r['compile_s'] for r in runs[1:]]):.1f}" if len(runs) > 1 else ""),
        "sampling": f"{median([r['sampling_s'] for r in runs]):.1f}",
        "to_ess": f"{median([r['to_ess_sampling_s'] for r in runs]):.1f}",
        "min_ess": " / ".join(f"{r['min_ess']:.0f}" for r in runs),
        "div": " / ".join(str(r["divergences"]) for r in runs),
        "rhat": f"{max(r['max_rhat'] for r in runs):.3f}",
        "bfmi": f"{min(r['min_bfmi'] for r in runs):.2f}",
    }


def speedups(res: dict) -> tuple[list[float], list[float]]:
    """Per seed with a baseline run: baseline / default time to ESS 400, with and without compile.

    With compile, the default path is charged its first (uncached) compile on every seed.
    """
    first_compile = res["default"][0]["compile_s"]
    pairs = list(zip(res["baseline"], res["default"]))
    cold = [b["to_ess_s"] / (d["to_ess_sampling_s"] + first_compile) for b, d in pairs]
    warm = [b["to_ess_sampling_s"] / d["to_ess_sampling_s"] for b, d in pairs]
    return cold, warm


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("pymc", "pytensor", "bambi", "nutpie", "arviz", "numpy"))
    return [f"- machine: {platform.machine()} {cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}; {versions}"]


def report(results: list[dict], cache: list[dict], plan: Plan, elapsed: float, loads: list[float], quick: bool,
           blas: str, command: str, partial: bool = False) -> str:
    d, b = plan.default, plan.baseline
    lines = [f"# Benchmarks{' (quick smoke run)' if quick else ''}{' (INCOMPLETE: the run stopped here)' if partial else ''}", "",
             f"Written by `{command}` in {elapsed / 60:.1f} min.", "",
             *machine(),
             f"- 1-minute load average during the run: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores "
             "(other jobs shared the machine: seconds are inflated and noisy, ratios are measured within the run)", "",
             "**Protocol.** *default*: what `bayes_trial.sample` runs (nutpie; for Gaussian participant-intercept models "
             "the coefficients and participant intercepts integrated out and drawn afterwards; binary outcomes as "
             f"binomial cells), {d['chains']} chains x ({d['tune']} tuning + {d['draws']} draws), target_accept from the "
             f"spec. *baseline*: the same Bambi model (same priors) on the raw rows, `pm.sample` with PyMC's defaults: "
             f"{b['chains']} chains (max(2, cores)) x ({b['tune']} + {b['draws']}), target_accept 0.8, jitter+adapt_diag; "
             f"the 10x cases run {plan.large_seeds} baseline seed(s) of {plan.large_length} + {plan.large_length}"
             f"{'' if plan.thorough else ' (survey_10x: no baseline without --thorough)'}; {blas}, for both paths; "
             "the suite compiles into a new, empty compiled-model cache (ours and PyTensor's), so a first compile is a "
             "first-ever one. *to ESS 400*: tuning time + draw time "
             "x 400 / min bulk ESS (the split by leapfrog steps); the parameters of interest are all sampled parameters "
             "of the Bambi model but the per-level offsets (population effects, group SDs, sigma). The default path's "
             "sampling time includes drawing the integrated-out coefficients. Building the Bambi model (the same for "
             "both) is listed under Cases, not counted. Compile: first fit / median of later fits of the same structure "
             "(compiled-model cache).", ""]
    lines += ["## Default path against plain Bambi + PyMC NUTS", "",
              "| case | rows (model rows) | path | compile (s) | sampling (s) | to ESS 400, no compile (s) | min bulk ESS per seed | "
              "divergences per seed | max R-hat | min E-BFMI |", "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for path in [p for p in ("default", "baseline") if res[p]]:
            f = summary(res[path])
            rows = f"{res['rows']} ({res['model_rows'] if path == 'default' else res['rows']})"
            lines.append(f"| {res['case'].name} | {rows} | {path} | {f['compile']} | {f['sampling']} | {f['to_ess']} | "
                         f"{f['min_ess']} | {f['div']} | {f['rhat']} | {f['bfmi']} |")
    lines += ["", "| case | speed-up to ESS 400 incl. first compile: median (per seed) | excl. compile: median (per seed) |",
              "|---|---|---|"]
    for res in [r for r in results if r["baseline"]]:
        cold, warm = speedups(res)
        lines.append(f"| {res['case'].name} | **{median(cold):.1f}x** ({', '.join(f'{r:.1f}' for r in cold)}) | "
                     f"{median(warm):.1f}x ({', '.join(f'{r:.1f}' for r in warm)}) |")
    lines += ["", *goals(results, cache), ""]
    ablated = [res for res in results if res["ablations"]]
    if ablated:
        lines += ["## Each fast path on its own", "",
                  "Each variant changes one thing against the default path of the same case and seed(s); *default's "
                  "speed-up* = variant / default time to ESS 400, compile excluded (> 1: the default is faster).", "",
                  "| case | variant | compile (s) | sampling (s) | to ESS 400, no compile (s) | min bulk ESS | divergences | "
                  "max R-hat | default's speed-up |", "|---|---|---|---|---|---|---|---|---|"]
        for res in ablated:
            seeds = max(len(runs) for runs in res["ablations"].values()) or 1
            for label, runs in [("default", res["default"][:seeds]), *res["ablations"].items()]:
                if not runs:
                    lines.append(f"| {res['case'].name} | {label} | - | - | - | - | - | - | - |")
                    continue
                f = summary(runs)
                speed = [v["to_ess_sampling_s"] / dflt["to_ess_sampling_s"] for v, dflt in zip(runs, res["default"])]
                lines.append(f"| {res['case'].name} | {label} | {f['compile']} | {f['sampling']} | {f['to_ess']} | "
                             f"{f['min_ess']} | {f['div']} | {f['rhat']} | {median(speed):.2f}x |")
        lines.append("")
    lines += ["## Compiled-model cache (through `bayes_trial.sample`, 4 chains x (300 + 300))", "",
              "| case | fit | compile (s) | cached | sampler incl. compile (s) | posterior SD of arm |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['step']} | {r['compile_s']:.2f} | {'yes' if r['cached'] else 'no'} | {r['sampler_s']:.1f} | "
              f"{r['arm_sd']:.3f} |" for r in cache]
    lines += ["", "## Cases", ""]
    for res in results:
        notes = "; ".join(res["notes"]) or "no notes"
        design = res["case"].design.replace(str(HERE.parent) + "/", "")
        lines.append(f"- **{res['case'].name}**: design {design} with x{res['case'].scale} participants, spec "
                     f"`{res['case'].spec}`: `{res['formula']}`; {notes}; Bambi build {res['build_s']:.1f} s.")
    return "\n".join(lines) + "\n"


def goals(results: list[dict], cache: list[dict]) -> list[str]:
    by_name = {res["case"].name: res for res in results}
    out = ["## Goals", ""]
    if "survey" in by_name:
        res = by_name["survey"]
        cold, warm = speedups(res)
        divergences = sum(d["divergences"] for d in res["default"])
        default_ess = min(d["min_ess"] for d in res["default"])
        baseline_ess = median([b["min_ess"] for b in res["baseline"]])
        reached = median(cold) >= 10 and divergences == 0 and default_ess >= max(TARGET_ESS, baseline_ess)
        out.append(f"- survey model >= 10x faster than plain Bambi + PyMC, equal or better min ESS, zero divergences: "
                   f"**{'reached' if reached else 'not reached'}**: {median(cold):.1f}x to ESS 400 including the first "
                   f"compile, {median(warm):.1f}x without it (a refit of the same structure); "
                   f"{divergences} divergences in {len(res['default'])} default runs; min bulk ESS {default_ess:.0f} "
                   f"(lowest default run of {res['default_draws']} draws) against a baseline "
                   f"median of {baseline_ess:.0f}.")
    for small, large in (("outflow", "outflow_10x"), ("survey", "survey_10x")):
        if small in by_name and large in by_name:
            before = median([d["to_ess_sampling_s"] for d in by_name[small]["default"]])
            after = median([d["to_ess_sampling_s"] for d in by_name[large]["default"]])
            verdict = ("**reached**" if after / before <= 1.5 else "**not reached**") if small == "outflow" else "(no goal set)"
            out.append(f"- {small} time with 10x participants{' grows <= 1.5x' if small == 'outflow' else ''}: {verdict}: "
                       f"{before:.1f} s -> {after:.1f} s to ESS 400 without compile (x{after / before:.2f}); model rows "
                       f"{by_name[small]['model_rows']} -> {by_name[large]['model_rows']}.")
    later = [r for r in cache if r["step"] != "first fit"]
    if later:
        skipped = all(r["cached"] for r in later)
        out.append(f"- a second fit of the same structure (new prior, new seed) skips compilation: "
                   f"**{'reached' if skipped else 'not reached'}**: " + "; ".join(
                       f"{r['case']} {r['step']}: {r['compile_s']:.2f} s" for r in cache) + ".")
    return out


def section(text: str, names: list[str]) -> tuple[str, str, str]:
    """The report between its markers, and the markers: `run` for the full suite, `run CASES` for a subset.

    A subset's headings move one level down, under a title naming its cases.
    """
    if set(names) == set(CASES):
        begin, end = "<!-- run: begin -->", "<!-- run: end -->"
    else:
        cases = ",".join(names)
        begin, end = f"<!-- run {cases}: begin -->", f"<!-- run {cases}: end -->"
        title, rest = text.split("\n", 1)
        rest = "\n".join(f"#{line}" if line.startswith("#") else line for line in rest.split("\n"))
        text = f"{title.replace('# Benchmarks', f'## Benchmark suite, case(s) {cases}', 1)}\n{rest}"
    return f"{begin}\n{text.rstrip()}\n{end}", begin, end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1x cases, one seed, short chains, no ablations")
    parser.add_argument("--cases", help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--seeds", type=int, help="number of sampler seeds (default 3, quick 1)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the one-fast-path-at-a-time variants")
    parser.add_argument("--thorough", action="store_true", help="all seeds at full length for the 10x baselines and the ablations (about 3x longer)")
    parser.add_argument("--out", help="report file (default benchmarks/RESULTS.md, quick RESULTS-quick.md)")
    args = parser.parse_args(argv)
    names = args.cases.split(",") if args.cases else (["survey", "outflow"] if args.quick else list(CASES))
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(CASES)}")
    cores = os.cpu_count() or 1
    seeds = [101 + i for i in range(args.seeds or (1 if args.quick else 3))]
    length = {"tune": 300, "draws": 300} if args.quick else {"tune": 1000, "draws": 1000}
    plan = Plan(seeds=seeds, default={**length, "chains": 4}, baseline={**length, "chains": max(2, min(cores, 4))},
                large_seeds=len(seeds) if args.thorough else 1, ablation_seeds=len(seeds) if args.thorough else 1,
                large_length=length["draws"] if args.thorough else length["draws"] // 4, thorough=args.thorough)
    out = Path(args.out) if args.out else HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    blas = checked_blas_threads()
    command = " ".join([".venv/bin/python benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    loads: list[float] = []
    started = time.perf_counter()
    results = []
    for name in names:
        loads.append(os.getloadavg()[0])
        results.append(bench_case(CASES[name], plan, ablations=not (args.quick or args.no_ablations) and name != "survey_10x",
                                  cores=cores))
        results[-1]["default_draws"] = plan.default["chains"] * plan.default["draws"]
        # Written after every case, so that an interrupted suite keeps what it measured.
        write_section(*section(report(results, [], plan, time.perf_counter() - started, loads, args.quick, blas, command,
                                      partial=True), names), path=out)
    cache = bench_cache(seeds[0])
    loads.append(os.getloadavg()[0])
    text = report(results, cache, plan, time.perf_counter() - started, loads, args.quick, blas, command)
    write_section(*section(text, names), path=out)
    print(text)
    say(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
