"""Recovery of known values, and a frequentist reference on the same simulated data.

* :func:`recovery`: many trials simulated from a design with fixed true values, each fitted with
  the normal fit path; coverage of 50% and 90% intervals, bias and RMSE per parameter.
* The same recovery fits are refitted with a frequentist reference (statsmodels MixedLM for
  Gaussian models, a binomial GLM for outflow), summarised by :func:`reference_table`.

Every fit runs as a task of :func:`bayes_trial.batch.engine.run_batch`, so runs resume and scale out.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_trial.batch.engine import Task, run_batch
from bayes_trial.batch.simulated import (
    as_design,
    as_spec,
    model_frame,
    parameter_draws,
    population_parameters,
    sampling_diagnostics,
    save_figure,
    true_values,
    write_csv,
)
from bayes_trial.core.errors import SpecError
from bayes_trial.families.base import Family
from bayes_trial.modelling import frames as model_mod
from bayes_trial.modelling.spec import ModelSpec, spec_from_json
from bayes_trial.simulation.generate import simulate

__all__ = ["RecoveryResult", "recovery", "coverage_table", "reference_table", "combine_recovery", "true_values",
           "reference_estimates"]

RECOVERY_SETTINGS = {"draws": 500, "tune": 500, "chains": 2}
_TREATMENT = re.compile(r"^(\w+)\[T\.(.+)\]$")
# Zeger, Liang & Albert (1988): a logit-normal random effect of variance s2 attenuates
# population-averaged log-odds by about 1 / sqrt(1 + C2 * s2), C2 = (16 sqrt(3) / (15 pi))^2.
LOGIT_ATTENUATION_C2 = (16 * math.sqrt(3) / (15 * math.pi)) ** 2


def reference_estimates(prepared: model_mod.PreparedData, control_arm: str, family: Family) -> tuple[str, dict[str, dict]]:
    """Frequentist estimates keyed like the posterior labels: (method, {label: {estimate, se}}).

    Gaussian: statsmodels MixedLM (REML) with town as the group and every other group term of
    the formula as a variance component nested in town. Binomial cells: a GLM of outflow on arm,
    which estimates population-averaged log-odds (see `reference_table`). Other families: none.
    """
    if family.reference == "mixedlm":
        return "MixedLM (REML)", _mixedlm(prepared, control_arm)
    if family.reference == "glm" and prepared.aggregated:
        return "GLM binomial (logit), arm only", _binomial_glm(prepared)
    return "none", {}


def _fixed_label(name: str) -> str | None:
    """statsmodels 'arm[T.intensive]:wave[T.2]' -> Bambi 'arm:wave[intensive, 2]'."""
    if name == "Intercept":
        return "Intercept"
    parts = [_TREATMENT.match(part) for part in name.split(":")]
    if not all(parts):
        return None
    return f"{':'.join(p[1] for p in parts)}[{', '.join(p[2] for p in parts)}]"


def _fixed_rhs(prepared: model_mod.PreparedData) -> str:
    rhs = prepared.formula.split("~", 1)[1]
    return re.sub(r"\(\s*[^()|]+\|[^()|]+\)", "", rhs).replace(" ", "").strip("+").replace("++", "+") or "1"


def _mixedlm(prepared: model_mod.PreparedData, control_arm: str) -> dict[str, dict]:
    import statsmodels.formula.api as smf

    data = prepared.data.copy()
    for col in ("arm", "wave"):  # string levels, so that statsmodels names them as Bambi does
        if col in data:
            data[col] = pd.Categorical(data[col].astype(str), categories=[str(c) for c in data[col].cat.categories])
    terms = {f"{expr}|{factor}" for expr, factor in model_mod.group_terms(prepared.formula)}
    vc, sd_names = {}, {}
    arms = [str(a) for a in data["arm"].cat.categories if str(a) != control_arm]
    if "arm|municipality" in terms:
        for i, arm in enumerate(arms):
            data[f"arm_is_{i}"] = (data["arm"].astype(str) == arm).astype(float)
            vc[f"arm_{i}"] = f"0 + arm_is_{i}"
            sd_names[f"arm_{i}"] = f"arm|municipality_sigma[{arm}]"
    for term, name, formula in (("1|participant_id", "participant", "0 + C(participant_id)"),
                                ("1|municipality:consultant_id", "consultant", "0 + C(consultant_id)"),
                                ("1|municipality:wave", "town_wave", "0 + C(wave)")):
        if term in terms:
            vc[name] = formula
            sd_names[name] = f"{term}_sigma"
    town = bool(terms & {"1|municipality", "arm|municipality"})
    model = smf.mixedlm(f"{prepared.response} ~ {_fixed_rhs(prepared)}", data, groups=data["municipality"],
                        re_formula="1" if town else "0", vc_formula=vc or None)
    fits = []
    for method in ("powell", "lbfgs"):
        # L-BFGS alone can stop at a poorer local maximum of the REML likelihood (seen with 8 towns):
        # keep the better of two optimisers.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fits.append(model.fit(reml=True, method=method))
            except (np.linalg.LinAlgError, ValueError):
                continue
    if not fits:
        return {}
    fitted = max(fits, key=lambda f: f.llf if np.isfinite(f.llf) else -np.inf)
    out = {}
    for name, value in fitted.fe_params.items():
        label = _fixed_label(name)
        if label:
            out[label] = {"estimate": float(value), "se": float(fitted.bse_fe[name])}
    for name, variance in zip(model.exog_vc.names, fitted.vcomp):
        out[sd_names[name]] = {"estimate": float(np.sqrt(max(variance, 0.0))), "se": float("nan")}
    if town:
        out["1|municipality_sigma"] = {"estimate": float(np.sqrt(max(fitted.cov_re.iloc[0, 0], 0.0))), "se": float("nan")}
    out["sigma"] = {"estimate": float(np.sqrt(fitted.scale)), "se": float("nan")}
    return out


def _binomial_glm(prepared: model_mod.PreparedData) -> dict[str, dict]:
    import statsmodels.api as sm
    from patsy import dmatrix

    data = prepared.data
    X = dmatrix("arm", data, return_type="dataframe")
    successes = data[prepared.response].to_numpy(dtype=float)
    trials = data[model_mod.TRIALS].to_numpy(dtype=float)
    fitted = sm.GLM(np.column_stack([successes, trials - successes]), X, family=sm.families.Binomial()).fit()
    out = {}
    for name in X.columns:
        label = _fixed_label(name)
        if label:
            out[label] = {"estimate": float(fitted.params[name]), "se": float(fitted.bse[name])}
    return out


def population_averaged(draws: dict[str, np.ndarray], control_arm: str) -> dict[str, np.ndarray]:
    """Approximate population-averaged log-odds of a random-effects logit model (Zeger et al. 1988).

    What a GLM without random effects estimates: each arm's mean log-odds divided by
    sqrt(1 + C2 * variance of the group effects on that arm's log-odds).
    """
    def total_variance(arm: str | None):
        keys = ["1|municipality_sigma", "1|municipality:consultant_id_sigma"]
        if arm is not None:
            keys.append(f"arm|municipality_sigma[{arm}]")
        return sum(draws[k] ** 2 for k in keys if k in draws)

    control = draws["Intercept"] / np.sqrt(1 + LOGIT_ATTENUATION_C2 * total_variance(None))
    out = {"Intercept": control}
    for label in [k for k in draws if k.startswith("arm[")]:
        arm = label[4:-1]
        treated = (draws["Intercept"] + draws[label]) / np.sqrt(1 + LOGIT_ATTENUATION_C2 * total_variance(arm))
        out[label] = treated - control
    return out


def recovery_fit(spec_json: str, design: dict, seed: int, settings: dict, reference: bool) -> dict:
    """One recovery replication on a worker: simulate, fit, summarise each parameter with a known value."""
    import arviz as az

    from bayes_trial.sampling.fit import sample

    spec = spec_from_json(spec_json)
    sim = simulate(design, seed=seed)
    fit = sample(spec, model_frame(spec, sim), progress=False, **settings)
    posterior = fit.idata.posterior
    names = population_parameters(posterior)
    draws = parameter_draws(posterior, names)
    truth = true_values(spec, sim.truth, list(draws))
    mcse = parameter_draws(az.mcse(posterior[names]).expand_dims(chain=[0], draw=[0]), names)
    ess = parameter_draws(az.ess(posterior[names]).expand_dims(chain=[0], draw=[0]), names)
    method, ref = reference_estimates(fit.prepared, spec.control_arm, fit.family) if reference else ("none", {})
    averaged = population_averaged(draws, spec.control_arm) if fit.family.link == "logit" and fit.prepared.aggregated else {}
    rows = []
    for label in truth:
        values = draws[label]
        q = np.quantile(values, [0.05, 0.25, 0.75, 0.95])
        rows.append({"parameter": label, "truth": truth[label], "mean": float(values.mean()), "sd": float(values.std(ddof=1)),
                     "q05": q[0], "q25": q[1], "q75": q[2], "q95": q[3], "mcse_mean": float(mcse[label][0]),
                     "ess_bulk": float(ess[label][0]),
                     "population_averaged": float(averaged[label].mean()) if label in averaged else None,
                     "reference": ref.get(label, {}).get("estimate"), "reference_se": ref.get(label, {}).get("se")})
    return {"parameters": rows, "reference_method": method, "sampling_seconds": fit.info["sampling_seconds"],
            **sampling_diagnostics(fit.idata, names)}


@dataclass
class RecoveryResult:
    """Per simulation and parameter: truth, posterior summaries, reference estimate; and the tables."""

    estimates: pd.DataFrame
    coverage: pd.DataFrame
    reference: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def recovery(spec: ModelSpec | str, design: dict | str, sims: int = 50, *, out: str | os.PathLike,
             seed: int = 1, reference: bool = True, scheduler: str | None = None, n_workers: int | None = None,
             progress: bool = True, **sampler_settings) -> RecoveryResult:
    """Fit `sims` trials simulated from `design` (seeds seed, seed+1, ...) and check the known values.

    Writes to `out`: `runs/` (one record per simulated trial; reruns resume), `estimates.csv`,
    `coverage.csv` and, when `reference`, `reference.csv`.
    """
    spec = as_spec(spec)
    design = as_design(design)
    if sims < 1:
        raise SpecError(f"sims: expected a positive number of simulations, got {sims}")
    settings = {**RECOVERY_SETTINGS, **{k: v for k, v in sampler_settings.items() if v is not None}}
    spec = spec.with_sampler(**settings)
    tasks = [Task(f"sim{seed + i:05d}", recovery_fit, {"spec_json": spec.to_json(), "design": design,
                                                       "seed": seed + i, "settings": spec.sampler,
                                                       "reference": reference})
             for i in range(sims)]
    out = Path(out)
    manifest = {"kind": "recovery", "spec": spec.to_dict(), "design": design, "reference": reference}
    batch = run_batch(tasks, out / "runs", scheduler=scheduler, n_workers=n_workers, manifest=manifest,
                      progress=progress, label=f"recovery {spec.name} on {design['name']}")
    estimates = pd.DataFrame([{"sim": key, "design": design["name"], "model": spec.name, **row,
                               **{k: res[k] for k in ("divergences", "max_rhat")}}
                              for key, res in batch.results().items() for row in res["parameters"]])
    result = RecoveryResult(estimates, coverage_table(estimates), reference_table(estimates),
                            {k: batch.records[k]["error"] for k in batch.failed})
    if not estimates.empty:
        result.files = {name: write_csv(getattr(result, name), out / f"{name}.csv")
                        for name in ("estimates", "coverage", "reference")}
    return result


def combine_recovery(folder: str | os.PathLike) -> dict[str, Path]:
    """One coverage and one reference table over every recovery run in `folder`'s subfolders."""
    folder = Path(folder)
    parts = [pd.read_csv(path) for path in sorted(folder.glob("*/estimates.csv"))]
    if not parts:
        raise SpecError(f"{folder}: no recovery runs (no */estimates.csv)")
    estimates = pd.concat(parts, ignore_index=True)
    coverage = coverage_table(estimates)
    return {"coverage": write_csv(coverage, folder / "coverage.csv"),
            "reference": write_csv(reference_table(estimates), folder / "reference.csv"),
            **save_figure(plot_coverage(coverage), folder, "coverage")}


def plot_coverage(coverage: pd.DataFrame):
    """Coverage of the 50% and 90% intervals per parameter and run, with +-2 binomial SE, against nominal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(coverage.groupby(["model", "design"], sort=False))
    height = sum(len(g) for _, g in runs) * 0.22 + 1.2 * len(runs)
    fig, axes = plt.subplots(len(runs), 1, figsize=(7.5, height), squeeze=False)
    for ax, ((model, design), g) in zip(axes[:, 0], runs):
        y = np.arange(len(g))[::-1]
        for level, colour, shift in ((50, "C0", 0.15), (90, "C1", -0.15)):
            ax.errorbar(g[f"coverage_{level}"], y + shift, xerr=2 * g[f"coverage_{level}_se"], fmt="o", ms=4,
                        color=colour, capsize=2, label=f"{level}% interval")
            ax.axvline(level / 100, color=colour, ls="--", lw=0.8)
        ax.set_yticks(y, [f"{name} (true {truth:.3g})" for name, truth in zip(g["parameter"], g["truth"])], fontsize=7.5)
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(f"{model} on design {design}: {int(g['sims'].max())} simulated trials", fontsize=9)
    axes[0, 0].legend(fontsize=7.5, loc="lower left")
    axes[-1, 0].set_xlabel("coverage: share of trials whose interval holds the truth (+-2 SE)")
    fig.tight_layout()
    return fig


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def coverage_table(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per parameter: how often the central 50% and 90% intervals hold the truth, bias, RMSE."""
    if estimates.empty:
        return pd.DataFrame()
    rows = []
    keys = ["design", "model", "parameter"]
    for (design, model, label), g in estimates.groupby(keys, sort=False):
        inside50 = ((g["q25"] <= g["truth"]) & (g["truth"] <= g["q75"])).mean()
        inside90 = ((g["q05"] <= g["truth"]) & (g["truth"] <= g["q95"])).mean()
        error = g["mean"] - g["truth"]
        rows.append({"design": design, "model": model, "parameter": label, "sims": len(g),
                     "truth": g["truth"].iloc[0], "mean_estimate": g["mean"].mean(),
                     "bias": error.mean(), "bias_se": error.std(ddof=1) / math.sqrt(len(g)) if len(g) > 1 else float("nan"),
                     "rmse": math.sqrt((error ** 2).mean()), "mean_posterior_sd": g["sd"].mean(),
                     "coverage_50": inside50, "coverage_50_se": _binomial_se(0.5, len(g)),
                     "coverage_90": inside90, "coverage_90_se": _binomial_se(0.9, len(g))})
    return pd.DataFrame(rows)


def reference_table(estimates: pd.DataFrame) -> pd.DataFrame:
    """Bayesian posterior means against the frequentist reference on the same simulated data.

    `difference` = posterior mean - reference estimate, averaged over simulations with its standard
    error across simulations; `mcse` is the average Monte Carlo error of the posterior means, so a
    difference many times both is a real difference between the methods, not sampling noise.
    For outflow, `population_averaged` converts the posterior to what the GLM estimates.
    """
    if estimates.empty or estimates["reference"].isna().all():
        return pd.DataFrame()
    rows = []
    est = estimates.dropna(subset=["reference"])
    for (design, model, label), g in est.groupby(["design", "model", "parameter"], sort=False):
        diff = g["mean"] - g["reference"]
        row = {"design": design, "model": model, "parameter": label, "sims": len(g), "truth": g["truth"].iloc[0],
               "posterior_mean": g["mean"].mean(), "reference": g["reference"].mean(),
               "difference": diff.mean(), "difference_se": diff.std(ddof=1) / math.sqrt(len(g)) if len(g) > 1 else float("nan"),
               "mean_abs_difference": diff.abs().mean(), "mcse": g["mcse_mean"].mean(),
               "mean_posterior_sd": g["sd"].mean(), "reference_se": g["reference_se"].mean(),
               "reference_at_zero": float((g["reference"] <= 1e-4).mean()) if "sigma" in label else float("nan")}
        if g["population_averaged"].notna().any():
            averaged = g["population_averaged"] - g["reference"]
            row["population_averaged"] = g["population_averaged"].mean()
            row["population_averaged_difference"] = averaged.mean()
        rows.append(row)
    return pd.DataFrame(rows)
