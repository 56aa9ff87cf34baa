"""Simulation-based calibration (Talts et al. 2018; Modrák et al. 2023).

:func:`sbc`: on the layout of a simulated trial (towns, arms, consultants, participants, responded
waves), draw the parameters from the spec's priors and the outcome from the model's own
likelihood, refit, and record the rank of each true value among thinned posterior draws. A
calibrated model and sampler give uniform ranks. Outcomes come from the model's own graph rather
than from :mod:`bayes_trial.simulation.generate`, because SBC is only exact when the data are drawn
from precisely the prior predictive distribution (the design simulator rounds and clips scores and
gives persons without a consultant no consultant effect); agreement between simulator and model is
what :func:`bayes_trial.batch.recovery.recovery` checks.

Every fit runs as a task of :func:`bayes_trial.batch.engine.run_batch`, so runs resume and scale out.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_trial.batch.engine import Task, run_batch
from bayes_trial.batch.simulated import (
    as_design,
    as_spec,
    element_labels,
    model_frame,
    parameter_draws,
    sampling_diagnostics,
    save_figure,
    write_csv,
)
from bayes_trial.core.cache import LruCache
from bayes_trial.core.errors import SpecError
from bayes_trial.modelling import frames as model_mod
from bayes_trial.modelling.spec import ModelSpec, spec_from_json
from bayes_trial.sampling import build as bambi_build
from bayes_trial.simulation.generate import simulate

__all__ = ["SBCResult", "sbc", "sbc_summary", "adjusted_band_prob", "resummarise", "plot_sbc", "uniformity_bins", "draw_prior"]

# Ranks among 99 thinned draws take 100 values, which split evenly into 2, 4, 5, 10 or 20 bins.
RANK_DRAWS = 99
BAND_PROB = 0.95
REFIT_MODES = ("compiled", "fit")
SBC_SETTINGS = {"draws": 1000, "tune": 1000, "chains": 2}
OUTCOME_DATA = "bayes_trial_outcome"


def ranked_parameters(pymc_model) -> list[str]:
    """Population-level parameters: everything sampled except the per-level group effects.

    Those are `_offset` variables where a term is non-centred and the effects themselves (beside their
    `_sigma`) where it is centred (`modelling.parametrisation`).
    """
    names = {rv.name for rv in pymc_model.free_RVs}
    return [rv.name for rv in pymc_model.free_RVs if not rv.name.endswith("_offset") and f"{rv.name}_sigma" not in names]


def draw_prior(pymc_model, sims: int, seed: int) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """`sims` parameter sets from the prior and one outcome vector for each, from the model's own graph.

    Forward sampling ignores PyMC's `ordered` transform (ordinal thresholds), whose prior is the
    declared distribution restricted to increasing vectors: those are redrawn until increasing.
    Draw i does not depend on `sims`, so a run can be extended with more simulations.
    """
    import pymc as pm
    from pytensor.graph.replace import graph_replace
    from pytensor.graph.traversal import ancestors

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


_COMPILED = LruCache(4)


def _compiled_for(structure_key: str, spec_json: str, prepared: model_mod.PreparedData):
    """nutpie-compiled model whose outcome is a shared variable, compiled once per worker process."""

    def make():
        import nutpie
        import pytensor

        pymc_model = bambi_build.build(spec_from_json(spec_json), prepared).backend.model
        outcome = pymc_model.observed_RVs[0]
        value = pymc_model.rvs_to_values[outcome]
        # The likelihood reads the observed values through this mapping when the model is compiled;
        # a shared variable there lets each simulation swap in its own outcome without recompiling.
        pymc_model.rvs_to_values[outcome] = pytensor.shared(np.asarray(value.data), name=OUTCOME_DATA)
        names = ranked_parameters(pymc_model)
        return nutpie.compile_pymc_model(pymc_model, var_names=names), names

    return _COMPILED.get_or_make(structure_key, make)[0]


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
        for label, index in element_labels(name, dims, pymc_model.coords, array.shape):
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


def adjusted_band_prob(n_parameters: int, prob: float = BAND_PROB) -> float:
    """Per-parameter band level that keeps the chance of any false exit among `n_parameters` at 1 - `prob`.

    With a 95% band for each of 14 parameters, about half of all calibrated runs would show an exit;
    the Bonferroni level 1 - 0.05 / 14 keeps a false "calibration failed" to 5% of runs.
    """
    return 1 - (1 - prob) / max(n_parameters, 1)


def sbc_summary(ranks: pd.DataFrame, rank_draws: int = RANK_DRAWS) -> pd.DataFrame:
    """Per parameter: chi-square test of uniform ranks and whether the rank ECDF stays in its bands.

    `in_band`: inside the parameter's simultaneous 95% band. `in_adjusted_band`: inside the band at
    `adjusted_band_prob` over the run's parameters, the test that decides whether a run failed.
    """
    from scipy import stats

    adjusted = adjusted_band_prob(ranks["parameter"].nunique())
    rows = []
    for label, group in ranks.groupby("parameter", sort=False):
        r = group["rank"].to_numpy()
        bins = uniformity_bins(len(r), rank_draws)
        counts = np.bincount(r * bins // (rank_draws + 1), minlength=bins)
        chi2, p_value = stats.chisquare(counts)
        points, lower, upper = _band(len(r), rank_draws)
        ecdf = (_fractional_ranks(r, rank_draws)[:, None] <= points[None, :]).mean(axis=0)
        _, wide_lower, wide_upper = _band(len(r), rank_draws, adjusted)
        rows.append({"parameter": label, "sims": len(r), "bins": bins, "chi2": float(chi2), "p_value": float(p_value),
                     "in_band": bool(np.all((ecdf >= lower) & (ecdf <= upper))),
                     "in_adjusted_band": bool(np.all((ecdf >= wide_lower) & (ecdf <= wide_upper))),
                     "mean_rank": float(r.mean() / rank_draws)})
    return pd.DataFrame(rows)


def plot_sbc(ranks: pd.DataFrame, summary: pd.DataFrame, title: str, rank_draws: int = RANK_DRAWS):
    """Rank ECDF-difference plots with simultaneous 95% bands, one panel per parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary["parameter"])
    adjusted = adjusted_band_prob(len(labels))
    ncols = min(4, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    for ax, (_, row) in zip(axes.ravel(), summary.iterrows()):
        r = ranks.loc[ranks["parameter"] == row["parameter"], "rank"].to_numpy()
        points, lower, upper = _band(len(r), rank_draws)
        ecdf = (_fractional_ranks(r, rank_draws)[:, None] <= points[None, :]).mean(axis=0)
        _, wide_lower, wide_upper = _band(len(r), rank_draws, adjusted)
        ax.fill_between(points, wide_lower - points, wide_upper - points, step="post", color="0.93")
        ax.fill_between(points, lower - points, upper - points, step="post", color="0.83")
        colour = "C0" if row["in_band"] else "C1" if row["in_adjusted_band"] else "C3"
        ax.step(points, ecdf - points, where="post", color=colour, lw=1.4)
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_title(f"{row['parameter']}\nchi2 p = {row['p_value']:.2f}", fontsize=8.5)
    for ax in axes.ravel()[len(labels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fractional rank")
    for ax in axes[:, 0]:
        ax.set_ylabel("ECDF - uniform")
    fig.suptitle(f"{title}: rank ECDF differences, {int(summary['sims'].max())} simulations\n"
                 f"dark grey: simultaneous {BAND_PROB:.0%} band; light grey: {adjusted:.2%} band, {BAND_PROB:.0%} over the "
                 f"{len(labels)} parameters (orange: leaves the first, red: leaves both, a failed run)", fontsize=9.5)
    fig.tight_layout()
    return fig


def resummarise(out: str | os.PathLike, title: str) -> SBCResult:
    """Summary and figure of an SBC run folder made again from its `ranks.csv` and `fits.csv`.

    The per-fit records under `runs/` are not kept with the committed results; the ranks are all that
    a new uniformity test or figure needs.
    """
    out = Path(out)
    ranks, fits = pd.read_csv(out / "ranks.csv"), pd.read_csv(out / "fits.csv")
    rank_draws = int(ranks["max_rank"].max())
    result = SBCResult(ranks, fits, sbc_summary(ranks, rank_draws))
    result.files = _write_sbc(result, out, title, rank_draws)
    return result


def _write_sbc(result: SBCResult, out: Path, title: str, rank_draws: int) -> dict[str, Path]:
    files = {name: write_csv(getattr(result, name), out / f"{name}.csv") for name in ("ranks", "fits", "summary")}
    files.update(save_figure(plot_sbc(result.ranks, result.summary, title, rank_draws), out, "sbc_ecdf"))
    return files

