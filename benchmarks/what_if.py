"""Prior what-ifs by re-weighting (issue 16, item 3): re-weighted answers against real refits.

    python benchmarks/what_if.py             # writes its section of benchmarks/RESULTS.md
    python benchmarks/what_if.py --no-write  # prints it
    python benchmarks/what_if.py --fit /tmp/outflow_demo.nc  # keeps the demo fit there for the next run

Data: the demo's outflow trial (design nl7, data seed 1, as `workflows/oss_demo.toml`), model
`models/outflow.toml` with its `auto` priors, SETTINGS draws. For each prior change in CHANGES the
stored draws are re-weighted (`bayes_trial.what_if` without refit) and the model is refitted with the
new prior and the same sampler seed (`bayes_trial.refit`); both answer "intensive - control > 0" on
the outcome scale (pp). Monte Carlo standard errors: the refit's from ArviZ (`mcse` of the mean and of
the indicator of the hypothesis); the re-weighted estimate's is the self-normalised importance
sampling one, sqrt(Σ w² (f − f̄_w)²), divided by the square root of the relative efficiency (ESS /
draws) of the terms w (f − f̄_w), whose autocorrelation comes from the weights as well as from f. |diff| / MCSE uses both in quadrature.
Wall times in one process after a warm-up (compiled-model cache warm for the refits, which is the
refit's best case), plus one `bayes-trial what-if` end to end (imports and loading included).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import arviz as az
import numpy as np

import bayes_trial as bt
from bayes_trial.estimands import query, whatif
from big_survey import add_no_write, publish

HERE = Path(__file__).resolve().parent
SETTINGS = {"chains": 4, "tune": 1000, "draws": 1000, "seed": 2024}
HYPOTHESIS = "intensive - control > 0"
CHANGES = [
    ("arm", "Normal(0, 0.1)"),
    ("arm", "Normal(0, 0.25)"),
    ("arm", "Normal(0, 1)"),
    ("arm", "Normal(0, 2)"),
    ("arm", "Normal(0.3, 0.25)"),
    ("arm", "Normal(0.8, 0.1)"),  # drastic: far from where the draws lie
    ("arm|municipality", "HalfNormal(0.1)"),
    ("1|municipality:consultant_id", "HalfNormal(1)"),
]
BEGIN, END = "<!-- what_if: begin -->", "<!-- what_if: end -->"


def contrast(fit: bt.Fit) -> np.ndarray:
    """Draws (chain x draw) of the hypothesis' contrast in pp."""
    parsed = query.parse_hypothesis(HYPOTHESIS, query.arms(fit), fit.spec.outcome_unit)
    draws = query.contrast_draws(fit, parsed, query.population(fit), None) * query.scale_factor(fit)
    posterior = fit.idata.posterior
    return draws.reshape(posterior.sizes["chain"], posterior.sizes["draw"])


def weighted_mcse(values: np.ndarray, weights: np.ndarray) -> float:
    """MCSE of the self-normalised weighted mean of `values` (chain x draw), with the draws' autocorrelation.

    The estimate's error is that of Σ w_i (f_i − f̄_w): its terms' autocorrelation (through the weights,
    which follow slowly mixing SDs, as well as through f) sets the relative efficiency.
    """
    flat = values.ravel()
    terms = weights * (flat - np.sum(weights * flat))
    efficiency = np.asarray(az.ess(terms.reshape(values.shape), method="mean")).item() / flat.size
    # Constant terms (an indicator that is always 1) have no ESS (NaN): their error is zero anyway.
    relative_efficiency = min(1.0, efficiency) if np.isfinite(efficiency) else 1.0
    return float(np.sqrt(np.sum(terms**2) / relative_efficiency))


def measure(fit: bt.Fit, term: str, text: str) -> dict:
    prior = bt.parse_prior(text)
    started = time.perf_counter()
    table = whatif.what_if(fit, {term: prior}, [HYPOTHESIS], refit_if_needed=False, progress=False)
    what_if_s = time.perf_counter() - started
    started = time.perf_counter()
    weights = whatif.prior_weights(fit, {term: prior}).weights
    weights_s = time.perf_counter() - started
    old = contrast(fit)
    started = time.perf_counter()
    new_fit = bt.refit(fit, priors={term: prior}, progress=False)
    new = contrast(new_fit)
    refit_s = time.perf_counter() - started
    row = table.iloc[0]
    result = {"prior": f"{term} ~ {text}", "old": str(fit.used_spec.priors[term]), "khat": row["khat"],
              "ess": row["ess"], "what_if_s": what_if_s, "weights_s": weights_s,
              "divergences": int(new_fit.idata.sample_stats["diverging"].sum()), "refit_s": refit_s}
    for name, values_old, values_new, answer in (("p", old > 0, new > 0, "p_new"), ("mean", old, new, "mean_new")):
        reweighted = row[answer]
        refitted = float(np.mean(values_new))
        mcse_rw = weighted_mcse(values_old.astype(float), weights)
        mcse_refit = az.mcse(values_new.astype(float), method="mean").item()
        result |= {f"{name}_rw": reweighted, f"{name}_refit": refitted, f"{name}_old": float(np.mean(values_old)),
                   f"{name}_z": abs(reweighted - refitted) / np.hypot(mcse_rw, mcse_refit),
                   f"{name}_mcse_rw": mcse_rw, f"{name}_mcse_refit": mcse_refit}
    return result


def cli_seconds(fit: bt.Fit, repeats: int = 3) -> dict:
    """Medians over `repeats` fresh processes: one `bayes-trial what-if` end to end (and the what-if time it
    prints), and importing the what-if module alone."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    totals, inside, imports = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = bt.save(fit, Path(tmp) / "outflow.nc")
        command = [str(Path(sys.executable).with_name("bayes-trial")), "what-if", str(path), "--prior",
                   "arm=Normal(0, 0.25)", HYPOTHESIS]
        for _ in range(repeats):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            totals.append(time.perf_counter() - started)
            line = done.stdout.splitlines()[1]
            inside.append(float(line.rsplit("; ", 1)[1].removesuffix(" s")))
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import bayes_trial.estimands.whatif"], check=True, env=env)
            imports.append(time.perf_counter() - started)
    return {"total": np.median(totals), "inside": np.median(inside), "import": np.median(imports), "line": line,
            "repeats": repeats}


def cell(text: str) -> str:
    """Text for a Markdown table cell (term names such as `arm|municipality` hold pipes)."""
    return text.replace("|", "\\|")


def section(fit: bt.Fit, rows: list[dict], cli: dict, minutes: float) -> str:
    posterior = fit.idata.posterior
    draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    lines = [
        BEGIN, "## Prior what-ifs by re-weighting (issue 16)", "",
        f"Written by `python benchmarks/what_if.py` in {minutes:.1f} min; {platform.machine()}, {os.cpu_count()} cores, "
        f"1-minute load average at the start {os.getloadavg()[0]:.2f}; bambi {metadata.version('bambi')}, "
        f"nutpie {metadata.version('nutpie')}, arviz {metadata.version('arviz')}.", "",
        f"**Protocol.** The demo's outflow trial (nl7, data seed 1), `models/outflow.toml` with its `auto` priors, "
        f"{SETTINGS['chains']} chains x ({SETTINGS['tune']} + {SETTINGS['draws']}) draws ({draws} stored), seed "
        f"{SETTINGS['seed']}. Each prior change: the stored draws re-weighted by new / old prior with PSIS "
        f"(`bayes_trial.what_if`, no refit) against a refit with the new prior and the same seed "
        f"(`bayes_trial.refit`); both answer `{HYPOTHESIS}` (standardised, pp). P is P(hypothesis); "
        "|diff| / MCSE divides the re-weighted minus refitted answer by both Monte Carlo standard errors in "
        "quadrature (re-weighted: self-normalised IS error, with the relative efficiency of its terms "
        "w (f − f̄_w); refit: ArviZ). "
        "Times: in one process after a warm-up, the refit with nutpie's compiled model cached (its best case) "
        "and its answer included; *what-if* is the whole `what_if` call (the fitted and the re-weighted answers: "
        "two g-computations of the contrast), *of which weights* the prior densities and PSIS.", "",
        "| prior | fitted with | k-hat | ESS of weights | P fitted | P re-weighted | P refit | \\|diff\\| / MCSE | "
        "mean fitted (pp) | mean re-weighted | mean refit | \\|diff\\| / MCSE | what-if (s) | of which weights (s) | "
        "refit (s) | refit divergences |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flag = " (> 0.7: `what-if` refits)" if r["khat"] > whatif.KHAT_THRESHOLD else ""
        lines.append(
            f"| {cell(r['prior'])} | {r['old']} | {r['khat']:.2f}{flag} | {r['ess']:.0f} | {r['p_old']:.3f} | "
            f"{r['p_rw']:.3f} | {r['p_refit']:.3f} | {r['p_z']:.1f} | {r['mean_old']:+.2f} | {r['mean_rw']:+.2f} | "
            f"{r['mean_refit']:+.2f} | {r['mean_z']:.1f} | {r['what_if_s']:.2f} | {r['weights_s']:.3f} | {r['refit_s']:.2f} | {r['divergences']} |")
    trusted = [r for r in rows if r["khat"] <= whatif.KHAT_THRESHOLD]
    worst = max(trusted, key=lambda r: max(r["p_z"], r["mean_z"]))
    lines += [
        "",
        f"- k-hat <= 0.7 ({len(trusted)} of {len(rows)} changes): re-weighted and refitted answers differ by at most "
        f"{max(worst['p_z'], worst['mean_z']):.1f} Monte Carlo standard errors (`{worst['prior']}`, ESS of the "
        f"weights {worst['ess']:.0f}); median {np.median([max(r['p_z'], r['mean_z']) for r in trusted]):.1f}.",
        f"- `bayes-trial what-if FIT --prior 'arm=Normal(0, 0.25)' '{HYPOTHESIS}'` end to end in a fresh process "
        f"(imports, loading the fit, answers), median of {cli['repeats']}: **{cli['total']:.1f} s** (goal 2 s: "
        f"{'reached' if cli['total'] <= 2 else 'not reached'}); the `what_if` call inside it {cli['inside']:.2f} s, "
        f"the rest Python imports and loading the fit (neither PyMC, Bambi, ArviZ nor scipy.stats is imported "
        f"unless k-hat calls for a refit); `import bayes_trial.estimands.whatif` alone {cli['import']:.1f} s in a "
        f"separate process. It printed: `{cli['line']}`",
        "", END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_no_write(parser)
    parser.add_argument("--fit", type=Path, help="reuse this stored demo fit if it exists, else store it there")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.fit and args.fit.exists():
        fit = bt.load(args.fit)
    else:
        sim = bt.simulate(bt.load_design("nl7"), seed=1)
        fit = bt.sample(bt.load_spec("outflow"), sim.register, progress=False, **SETTINGS)
        if args.fit:
            bt.save(fit, args.fit)
    measure(fit, *CHANGES[1])  # warm-up: Bambi's predict, the compiled-model cache
    rows = []
    for term, text in CHANGES:
        rows.append(measure(fit, term, text))
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    text = section(fit, rows, cli_seconds(fit), (time.perf_counter() - started) / 60)
    publish(text, args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
