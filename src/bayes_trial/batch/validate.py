"""Validation at scale: simulation-based calibration, parameter recovery and a reference check.

* :func:`sbc` (Talts et al. 2018; Modrák et al. 2023): on the layout of a simulated trial (towns,
  arms, consultants, participants, responded waves), draw the parameters from the spec's priors
  and the outcome from the model's own likelihood, refit, and record the rank of each true value
  among thinned posterior draws. A calibrated model and sampler give uniform ranks. Outcomes come
  from the model's own graph rather than from :mod:`bayes_trial.simulate`, because SBC is only
  exact when the data are drawn from precisely the prior predictive distribution (the design
  simulator rounds and clips scores and gives persons without a consultant no consultant effect);
  agreement between simulator and model is what :func:`recovery` checks.
* :func:`recovery`: many trials simulated from a design with fixed true values, each fitted with
  the normal fit path; coverage of 50% and 90% intervals, bias and RMSE per parameter.
* The same recovery fits are refitted with a frequentist reference (statsmodels MixedLM for
  Gaussian models, a binomial GLM for outflow), summarised by :func:`reference_table`.

Every fit runs as a task of :func:`bayes_trial.batch.run_batch`, so runs resume and scale out.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_trial.families.base import Family
from bayes_trial.modelling import frames as model_mod
from bayes_trial.sampling import build as bambi_build
from bayes_trial.batch.engine import Task, run_batch
from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import write_atomic
from bayes_trial.simulation.generate import load_design, simulate, validate_design
from bayes_trial.modelling.spec import ModelSpec, load_spec, spec_from_json

__all__ = [
    "SBCResult", "RecoveryResult", "sbc", "sbc_summary", "plot_sbc", "recovery", "coverage_table",
    "reference_table", "combine_recovery", "true_values", "reference_estimates", "parameter_draws", "uniformity_bins",
    "draw_prior", "population_parameters",
]

# Ranks among 99 thinned draws take 100 values, which split evenly into 2, 4, 5, 10 or 20 bins.
RANK_DRAWS = 99
BAND_PROB = 0.95
INTERVALS = (0.5, 0.9)
REFIT_MODES = ("compiled", "fit")
SBC_SETTINGS = {"draws": 1000, "tune": 1000, "chains": 2}
RECOVERY_SETTINGS = {"draws": 500, "tune": 500, "chains": 2}
OUTCOME_DATA = "bayes_trial_outcome"
_TREATMENT = re.compile(r"^(\w+)\[T\.(.+)\]$")
# Zeger, Liang & Albert (1988): a logit-normal random effect of variance s2 attenuates
# population-averaged log-odds by about 1 / sqrt(1 + C2 * s2), C2 = (16 sqrt(3) / (15 pi))^2.
LOGIT_ATTENUATION_C2 = (16 * math.sqrt(3) / (15 * math.pi)) ** 2


def as_spec(spec: ModelSpec | str) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else load_spec(spec)


def as_design(design: dict | str | os.PathLike) -> dict:
    return validate_design(design) if isinstance(design, dict) else load_design(design)


def model_frame(spec: ModelSpec, sim) -> pd.DataFrame:
    return sim.survey if spec.table == "survey" else sim.register


def _element_labels(name: str, dims: tuple[str, ...], coords: dict[str, Any], shape: tuple[int, ...]):
    """(label, index) per scalar element: `arm[intensive]`, `arm:wave[intensive, 1]`, `sigma`."""
    if not shape:
        yield name, ()
        return
    for index in np.ndindex(*shape):
        levels = [str(list(coords[d])[i]) if d in coords else str(i) for d, i in zip(dims, index)]
        yield f"{name}[{', '.join(levels)}]", index


def parameter_draws(posterior, names: list[str]) -> dict[str, np.ndarray]:
    """Draws of every scalar element of the named posterior variables, chains concatenated in order."""
    out = {}
    for name in names:
        values = posterior[name]
        extra = tuple(d for d in values.dims if d not in ("chain", "draw"))
        array = values.transpose("chain", "draw", *extra).to_numpy()
        array = array.reshape(-1, *array.shape[2:])
        coords = {d: values[d].to_numpy() for d in extra}
        for label, index in _element_labels(name, extra, coords, array.shape[1:]):
            out[label] = array[(slice(None), *index)]
    return out


def population_parameters(posterior) -> list[str]:
    """Posterior variables that are not per-level group effects (one value per town, consultant ...)."""
    return [n for n in posterior.data_vars if not any(d.endswith("__factor_dim") for d in posterior[n].dims)]


def sampling_diagnostics(idata, names: list[str]) -> dict[str, float]:
    import arviz as az

    posterior = idata.posterior[names]
    return {
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "min_ess_bulk": float(az.ess(posterior).to_array().min()),
        "max_rhat": float(az.rhat(posterior).to_array().max()) if posterior.sizes["chain"] > 1 else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# Simulation-based calibration
# --------------------------------------------------------------------------------------------


def ranked_parameters(pymc_model) -> list[str]:
    """Population-level parameters: everything sampled except the per-level offsets of group effects."""
    return [rv.name for rv in pymc_model.free_RVs if not rv.name.endswith("_offset")]


def draw_prior(pymc_model, sims: int, seed: int) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """`sims` parameter sets from the prior and one outcome vector for each, from the model's own graph.

    Forward sampling ignores PyMC's `ordered` transform (ordinal thresholds), whose prior is the
    declared distribution restricted to increasing vectors: those are redrawn until increasing.
    Draw i does not depend on `sims`, so a run can be extended with more simulations.
    """
    import pymc as pm
    from pytensor.graph.traversal import ancestors
    from pytensor.graph.replace import graph_replace

    free = list(pymc_model.free_RVs)
    observed = pymc_model.observed_RVs
    if len(observed) != 1:
        raise SpecError(f"SBC needs a model with one observed outcome, this one has {len(observed)}")
    ordered = [rv for rv in free if type(pymc_model.rvs_to_transforms.get(rv)).__name__ == "Ordered"]
    for rv in ordered:
        if any(other in ancestors(rv.owner.inputs) for other in free):
            raise SpecError(f"SBC cannot draw {rv.name}: an ordered parameter whose prior depends on others")
    inputs = {rv: rv.type(name=rv.name) for rv in free}
    outcome_fn = pm.pytensorf.compile(list(inputs.values()), graph_replace(observed[0], inputs, strict=False),
                                      random_seed=seed)
    parameter_fn = pm.pytensorf.compile([], free, random_seed=seed + 1)
    redraw_fn = {rv.name: pm.pytensorf.compile([], rv, random_seed=seed + 2 + i) for i, rv in enumerate(ordered)}
    draws = []
    for _ in range(sims):
        values = dict(zip([rv.name for rv in free], parameter_fn()))
        for name, redraw in redraw_fn.items():
            for _attempt in range(100_000):
                if np.all(np.diff(values[name]) > 0):
                    break
                values[name] = redraw()
            else:
                raise SpecError(f"SBC: could not draw increasing values of {name} from its prior")
        outcome = outcome_fn(*[values[rv.name] for rv in free])
        draws.append((values, np.asarray(outcome)))
    return draws


_COMPILED: dict[str, tuple[Any, list[str]]] = {}


def _compiled_for(structure_key: str, spec_json: str, prepared: model_mod.PreparedData):
    """nutpie-compiled model whose outcome is a shared variable, compiled once per worker process."""
    if structure_key not in _COMPILED:
        import nutpie
        import pytensor

        pymc_model = bambi_build.build(spec_from_json(spec_json), prepared).backend.model
        outcome = pymc_model.observed_RVs[0]
        value = pymc_model.rvs_to_values[outcome]
        # The likelihood reads the observed values through this mapping when the model is compiled;
        # a shared variable there lets each simulation swap in its own outcome without recompiling.
        pymc_model.rvs_to_values[outcome] = pytensor.shared(np.asarray(value.data), name=OUTCOME_DATA)
        names = ranked_parameters(pymc_model)
        _COMPILED[structure_key] = (nutpie.compile_pymc_model(pymc_model, var_names=names), names)
    return _COMPILED[structure_key]


def thin(draws: np.ndarray, n: int) -> np.ndarray:
    """`n` draws evenly spaced over the pooled chains (fewer if there are fewer)."""
    if len(draws) <= n:
        return draws
    return draws[np.linspace(0, len(draws) - 1, n).round().astype(int)]


def _sample_compiled(structure_key: str, spec_json: str, prepared: model_mod.PreparedData, outcome: list,
                     settings: dict, seed: int):
    import nutpie

    compiled, names = _compiled_for(structure_key, spec_json, prepared)
    shared = compiled.shared_data[OUTCOME_DATA]
    idata = nutpie.sample(
        compiled.with_data(**{OUTCOME_DATA: np.asarray(outcome, dtype=shared.dtype)}),
        draws=settings["draws"], tune=settings["tune"], chains=settings["chains"], seed=seed, cores=1,
        target_accept=settings["target_accept"], save_warmup=False, progress_bar=False)
    return idata, names


def _sample_fit_path(spec_json: str, prepared: model_mod.PreparedData, outcome: list, settings: dict, seed: int,
                     names: list[str]):
    """The simulated outcome fitted like any data set: `fit.sample_prepared`, fast paths included."""
    from bayes_trial.sampling.fit import sample_prepared

    spec = spec_from_json(spec_json).with_sampler(**{**settings, "seed": seed})
    data = prepared.data.copy()
    column = data[prepared.response]
    if isinstance(column.dtype, pd.CategoricalDtype):
        data[prepared.response] = pd.Categorical.from_codes(np.asarray(outcome), dtype=column.dtype)
    else:
        data[prepared.response] = np.asarray(outcome, dtype=column.dtype)
    fit = sample_prepared(spec, replace(prepared, data=data), data_hash=f"sbc-{seed}", progress=False)
    return fit.idata, names


def sbc_fit(structure_key: str, spec_json: str, prepared: model_mod.PreparedData, outcome: list,
            truth: dict[str, float], settings: dict, seed: int, rank_draws: int, refit: str = "compiled",
            names: list[str] | None = None) -> dict:
    """One SBC replication on a worker: refit the simulated outcome, rank each true value."""
    started = time.perf_counter()
    if refit == "fit":
        idata, names = _sample_fit_path(spec_json, prepared, outcome, settings, seed, names)
    else:
        idata, names = _sample_compiled(structure_key, spec_json, prepared, outcome, settings, seed)
    seconds = time.perf_counter() - started
    draws = parameter_draws(idata.posterior, names)
    ranks = {label: int(np.sum(thin(values, rank_draws) < truth[label])) for label, values in draws.items()}
    means = {label: float(np.mean(values)) for label, values in draws.items()}
    return {"ranks": ranks, "truth": truth, "posterior_mean": means, "sampling_seconds": round(seconds, 3),
            **sampling_diagnostics(idata, names)}


def _truth_labels(pymc_model, values: dict[str, np.ndarray], names: list[str]) -> dict[str, float]:
    out = {}
    for name in names:
        dims = tuple(pymc_model.named_vars_to_dims.get(name) or ())
        array = np.asarray(values[name])
        for label, index in _element_labels(name, dims, pymc_model.coords, array.shape):
            out[label] = float(array[index])
    return out


def _structure_key(spec: ModelSpec, prepared: model_mod.PreparedData) -> str:
    layout = prepared.data.drop(columns=[prepared.response]).to_csv(index=False)
    return hashlib.sha256((spec.to_json() + prepared.formula + layout).encode()).hexdigest()[:16]


@dataclass
class SBCResult:
    """Ranks (one row per simulation and parameter), per-fit diagnostics, uniformity summary, files."""

    ranks: pd.DataFrame
    fits: pd.DataFrame
    summary: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def sbc(spec: ModelSpec | str, design: dict | str, sims: int = 100, *, out: str | os.PathLike,
        seed: int = 1, rank_draws: int = RANK_DRAWS, refit: str = "compiled", scheduler: str | None = None,
        n_workers: int | None = None, progress: bool = True, **sampler_settings) -> SBCResult:
    """Simulation-based calibration of `spec` on the layout of one trial simulated from `design`.

    `refit="compiled"` compiles the plain Bambi model once per worker and swaps in each simulated
    outcome (seconds per replication); `refit="fit"` fits every replication through
    `bayes_trial.fit` like any data set, fast paths included (a compile per replication), which
    checks the path that analyses use.

    Writes to `out`: `runs/` (one record per simulation; rerunning resumes), `ranks.csv`, `fits.csv`,
    `summary.csv` and `sbc_ecdf.png`/`.svg`. Sampler settings default to 2 chains x 1000 draws
    (after 1000 tuning steps), thinned to `rank_draws` for the ranks.
    """
    spec = as_spec(spec)
    design = as_design(design)
    if sims < 1:
        raise SpecError(f"sims: expected a positive number of simulations, got {sims}")
    if refit not in REFIT_MODES:
        raise SpecError(f"refit: expected one of {', '.join(REFIT_MODES)}, got {refit!r}")
    settings = {**spec.sampler, **SBC_SETTINGS, **{k: v for k, v in sampler_settings.items() if v is not None}}
    spec = spec.with_sampler(**settings)
    prepared = model_mod.prepare(spec, model_frame(spec, simulate(design, seed=seed)))
    # `auto` priors resolved once, on the simulated design's rows: the draws and every refit then use
    # the same numbers (resolved on each simulated outcome they would differ from the drawing prior).
    spec = model_mod.resolve_priors(spec, prepared).spec
    pymc_model = bambi_build.build(spec, prepared).backend.model
    names = ranked_parameters(pymc_model)
    key = _structure_key(spec, prepared)
    tasks = []
    for i, (values, outcome) in enumerate(draw_prior(pymc_model, sims, seed)):
        tasks.append(Task(f"sim{i:05d}", sbc_fit, {
            "structure_key": key, "spec_json": spec.to_json(), "prepared": prepared, "outcome": outcome.tolist(),
            "truth": _truth_labels(pymc_model, values, names), "settings": spec.sampler,
            "seed": seed * 100_003 + i, "rank_draws": rank_draws, "refit": refit, "names": names}))
    out = Path(out)
    manifest = {"kind": "sbc", "spec": spec.to_dict(), "design": design, "seed": seed, "rank_draws": rank_draws,
                "refit": refit}
    batch = run_batch(tasks, out / "runs", scheduler=scheduler, n_workers=n_workers, manifest=manifest,
                      progress=progress, label=f"sbc {spec.name}")
    ranks, fits = _sbc_frames(batch.results(), rank_draws)
    summary = sbc_summary(ranks, rank_draws)
    result = SBCResult(ranks, fits, summary, {k: batch.records[k]["error"] for k in batch.failed})
    if not ranks.empty:
        result.files = _write_sbc(result, out, f"SBC of {spec.name} on design {design['name']!r}", rank_draws)
    return result


def _sbc_frames(results: dict[str, dict], rank_draws: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, fits = [], []
    for key, res in results.items():
        for label, rank in res["ranks"].items():
            rows.append({"sim": key, "parameter": label, "truth": res["truth"][label],
                         "posterior_mean": res["posterior_mean"][label], "rank": rank, "max_rank": rank_draws})
        fits.append({"sim": key, **{k: res[k] for k in ("divergences", "min_ess_bulk", "max_rhat", "sampling_seconds")}})
    return pd.DataFrame(rows), pd.DataFrame(fits)


def uniformity_bins(sims: int, rank_draws: int = RANK_DRAWS, min_expected: float = 5.0) -> int:
    """Most bins (dividing the rank_draws + 1 rank values evenly, at most 20) with >= 5 expected ranks each."""
    divisors = [b for b in range(2, 21) if (rank_draws + 1) % b == 0 and sims / b >= min_expected]
    return max(divisors, default=2)


@functools.lru_cache(maxsize=32)
def _band(sims: int, rank_draws: int, prob: float = BAND_PROB) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation points and the simultaneous band for the ECDF of sims uniform fractional ranks."""
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    points = np.arange(1, rank_draws + 1) / (rank_draws + 1)
    lower, upper = ecdf_confidence_band(sims, points, points, prob=prob, method="optimized")
    return points, lower, upper


def _fractional_ranks(ranks: np.ndarray, rank_draws: int) -> np.ndarray:
    # (rank + 1) / (L + 1) is uniform on {1, ..., L+1} / (L+1): its ECDF equals the uniform CDF at k / (L+1).
    return (np.asarray(ranks) + 1) / (rank_draws + 1)


def sbc_summary(ranks: pd.DataFrame, rank_draws: int = RANK_DRAWS) -> pd.DataFrame:
    """Per parameter: chi-square test of uniform ranks and whether the rank ECDF stays in the 95% band."""
    from scipy import stats

    rows = []
    for label, group in ranks.groupby("parameter", sort=False):
        r = group["rank"].to_numpy()
        bins = uniformity_bins(len(r), rank_draws)
        counts = np.bincount(r * bins // (rank_draws + 1), minlength=bins)
        chi2, p_value = stats.chisquare(counts)
        points, lower, upper = _band(len(r), rank_draws)
        ecdf = (_fractional_ranks(r, rank_draws)[:, None] <= points[None, :]).mean(axis=0)
        rows.append({"parameter": label, "sims": len(r), "bins": bins, "chi2": float(chi2), "p_value": float(p_value),
                     "in_band": bool(np.all((ecdf >= lower) & (ecdf <= upper))),
                     "mean_rank": float(r.mean() / rank_draws)})
    return pd.DataFrame(rows)


def plot_sbc(ranks: pd.DataFrame, summary: pd.DataFrame, title: str, rank_draws: int = RANK_DRAWS):
    """Rank ECDF-difference plots with simultaneous 95% bands, one panel per parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary["parameter"])
    ncols = min(4, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    for ax, (_, row) in zip(axes.ravel(), summary.iterrows()):
        r = ranks.loc[ranks["parameter"] == row["parameter"], "rank"].to_numpy()
        points, lower, upper = _band(len(r), rank_draws)
        ecdf = (_fractional_ranks(r, rank_draws)[:, None] <= points[None, :]).mean(axis=0)
        ax.fill_between(points, lower - points, upper - points, step="post", color="0.85", label="95% band")
        ax.step(points, ecdf - points, where="post", color="C3" if not row["in_band"] else "C0", lw=1.4)
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_title(f"{row['parameter']}\nchi2 p = {row['p_value']:.2f}", fontsize=8.5)
    for ax in axes.ravel()[len(labels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fractional rank")
    for ax in axes[:, 0]:
        ax.set_ylabel("ECDF - uniform")
    fig.suptitle(f"{title}: rank ECDF differences, {int(summary['sims'].max())} simulations "
                 f"(grey: simultaneous {BAND_PROB:.0%} band)", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, out: Path, stem: str) -> dict[str, Path]:
    """`figures.save_figure`, keyed for a result's `files`: STEM_png, STEM_svg."""
    from bayes_trial.plots.figures import save_figure as save

    return dict(zip((f"{stem}_png", f"{stem}_svg"), save(fig, out, stem)))


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, lambda handle: table.to_csv(handle, index=False, float_format="%.6g", lineterminator="\n"))


def _write_sbc(result: SBCResult, out: Path, title: str, rank_draws: int) -> dict[str, Path]:
    files = {name: write_csv(getattr(result, name), out / f"{name}.csv") for name in ("ranks", "fits", "summary")}
    files.update(save_figure(plot_sbc(result.ranks, result.summary, title, rank_draws), out, "sbc_ecdf"))
    return files


# --------------------------------------------------------------------------------------------
# Recovery of known values, and the frequentist reference on the same data
# --------------------------------------------------------------------------------------------


def true_values(spec: ModelSpec, truth: dict, labels: list[str]) -> dict[str, float]:
    """The simulator's true value of each posterior label it defines (keys as in `parameter_draws`).

    Bambi's `arm*wave` has `arm` at baseline and `arm:wave` as the change from it, while the
    design states the arm's total effect at each wave; thresholds are the design's cutpoints.
    """
    if spec.table == "register":
        o = truth["outflow"]
        simple = {"Intercept": o["log_odds"][truth["control_arm"]], "1|municipality_sigma": o["town_sd"],
                  "1|municipality:consultant_id_sigma": o["consultant_sd"]}
        by_arm = {"arm": o["log_odds_ratio"], "arm|municipality_sigma": {a: o["town_arm_sd"] for a in o["log_odds_ratio"]}}
    else:
        o = truth["outcomes"][spec.outcome]
        simple = {"Intercept": o.get("intercept"), "sigma": o.get("residual_sd"), "alpha": o.get("alpha"),
                  "1|participant_id_sigma": o["participant_sd"], "1|municipality:consultant_id_sigma": o["consultant_sd"],
                  "1|municipality_sigma": o.get("town_sd"), "1|municipality:wave_sigma": o.get("town_wave_sd")}
        effects = o["arm_effects"]
        by_arm = {"arm": {a: e["0"] for a, e in effects.items()},
                  "arm|municipality_sigma": {a: o.get("town_arm_sd") for a in effects},
                  "wave": o["wave_effects"],
                  "threshold": {str(k): c for k, c in enumerate(o.get("cutpoints", []))},
                  "arm:wave": {f"{a}, {w}": e[w] - e["0"] for a, e in effects.items() for w in e if w != "0"}}
    out = {}
    for label in labels:
        name, _, level = label.partition("[")
        value = simple.get(name) if not level else by_arm.get(name, {}).get(level.rstrip("]"))
        if value is not None:
            out[label] = float(value)
    return out


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
