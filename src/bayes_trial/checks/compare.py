"""Comparing fits: the same estimands side by side, what differs in the specs, predictive performance.

A methodologist changes a prior (or a term), refits, and asks what changed. `compare` lines up the
arm effects of several fits, lists the spec settings that differ, and ranks the fits by PSIS-LOO
with Pareto-k warnings and, on request where there are at least three towns, by
leave-one-municipality-out cross-validation (which refits every model once per town).
`prior_grid` refits one fit under several priors, reusing its prepared data, and compares the lot.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import logsumexp
from scipy.stats import norm

from bayes_trial.checks.priors import check_priors, outcome_draws
from bayes_trial.core.errors import SpecError
from bayes_trial.estimands import query
from bayes_trial.modelling.spec import Prior, parse_prior
from bayes_trial.sampling.fastpaths import PARTICIPANT_SIGMA, PARTICIPANT_TERM
from bayes_trial.sampling.fit import Fit, load, refit, sample_prepared, with_log_likelihood

PARETO_K_BAD = 0.7
MIN_TOWNS_FOR_LOMO = 3
TOWN = "municipality"


@dataclass
class Comparison:
    """Several fits side by side.

    estimands: fit, contrast, wave, unit, mean, median, sd, lower, upper, p_gt_0 (as `query.effects`).
    spec_diff: setting, then one column per fit; only the settings that differ.
    loo: one row per fit, best first: elpd_loo, se, p_loo, elpd_diff, dse, weight, pareto_k_bad
        (observations with k > 0.7); elpd_diff and weight only where the fits share their observations.
    lomo: fit, municipality, persons, elpd (log predictive density of the held-out town), or empty.
    lomo_summary: fit, elpd_lomo, se, elpd_diff, dse, or empty.
    draws: fit -> (contrast, wave) -> effect draws, for the densities; fits: the fits compared.
    """

    names: list[str]
    estimands: pd.DataFrame
    spec_diff: pd.DataFrame
    loo: pd.DataFrame
    lomo: pd.DataFrame
    lomo_summary: pd.DataFrame
    interval: float = query.DEFAULT_INTERVAL
    notes: list[str] = field(default_factory=list)
    draws: dict[str, dict[tuple[str, Any], np.ndarray]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    fits: dict[str, Fit] = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------------------------------------
# Estimands and specs
# ---------------------------------------------------------------------------------------------


def _estimands(fits: dict[str, Fit], interval: float) -> tuple[pd.DataFrame, dict]:
    draws = {name: outcome_draws(fit)["effect"] for name, fit in fits.items()}
    rows = [{"fit": name, "contrast": contrast, "wave": wave, "unit": fits[name].spec.outcome_unit,
             **query.summarise_draws(values, interval)}
            for name, effects in draws.items() for (contrast, wave), values in effects.items()]
    return pd.DataFrame(rows), draws


def _settings(fit: Fit) -> dict[str, str]:
    spec = fit.spec
    settings = {"outcome": spec.outcome, "table": spec.table, "family": spec.family, "formula": spec.formula,
                "formula used": fit.prepared.formula, "control arm": spec.control_arm}
    settings |= {f"prior {term}": str(prior) for term, prior in spec.priors.items()}
    settings |= {f"sampler {key}": str(value) for key, value in spec.sampler.items()}
    settings["data (hash)"] = str(fit.info.get("data_hash", ""))[:12]
    return settings


def spec_differences(fits: dict[str, Fit]) -> pd.DataFrame:
    """The settings (formula, priors, sampler, data) in which the fits differ, one column per fit.

    A prior that one spec sets and another leaves to Bambi shows as 'default'.
    """
    settings = {name: _settings(fit) for name, fit in fits.items()}
    keys = list(dict.fromkeys(key for values in settings.values() for key in values))
    rows = []
    for key in keys:
        values = {name: settings[name].get(key, "default" if key.startswith("prior ") else "") for name in fits}
        if len(set(values.values())) > 1:
            rows.append({"setting": key, **values})
    return pd.DataFrame(rows, columns=["setting", *fits])


# ---------------------------------------------------------------------------------------------
# Predictive performance: PSIS-LOO and leave-one-municipality-out
# ---------------------------------------------------------------------------------------------


def _same_observations(fits: dict[str, Fit]) -> bool:
    """Whether the fits predict the very same observations (else their ELPDs are not comparable)."""
    first, *others = [fit.idata.observed_data for fit in fits.values()]
    return all(
        list(other.data_vars) == list(first.data_vars)
        and all(np.array_equal(other[v].to_numpy(), first[v].to_numpy()) for v in first.data_vars)
        for other in others
    )


def loo_table(fits: dict[str, Fit]) -> tuple[pd.DataFrame, list[str]]:
    """PSIS-LOO per fit (ArviZ `loo`), ranked with `az.compare` where the fits share their data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns once per fit; the notes below give counts instead
        elpds = {name: az.loo(with_log_likelihood(fit), pointwise=True) for name, fit in fits.items()}
    bad_k = {name: int(np.sum(e.pareto_k.to_numpy() > PARETO_K_BAD)) for name, e in elpds.items()}
    notes = [f"{name}: {bad} of {elpds[name].n_data_points} observations have Pareto k > {PARETO_K_BAD}; "
             "PSIS-LOO is unreliable for them (leave-one-municipality-out with --lomo refits instead)"
             for name, bad in bad_k.items() if bad]
    if len(fits) > 1 and _same_observations(fits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = az.compare(elpds, ic="loo")
        table = ranked[["elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight"]].copy()
    else:
        if len(fits) > 1:
            notes.append("the fits model different observations (outcome, rows or aggregation differ): "
                         "their LOO values are shown but not compared")
        table = pd.DataFrame({name: {"elpd_loo": e.elpd_loo, "se": e.se, "p_loo": e.p_loo,
                                     "elpd_diff": np.nan, "dse": np.nan, "weight": np.nan}
                              for name, e in elpds.items()}).T
    table["pareto_k_bad"] = [bad_k[name] for name in table.index]
    table = table.rename_axis("fit").reset_index()
    return table.astype({c: float for c in ("elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight")}), notes


def towns(fit: Fit) -> list[str]:
    """The towns (municipalities) of the fit's data, in order of appearance."""
    return sorted(fit.data[TOWN].astype(str).unique()) if TOWN in fit.data else []


def check_lomo(fit: Fit) -> None:
    """Refuse leave-one-municipality-out where it cannot be done."""
    found = towns(fit)
    if len(found) < MIN_TOWNS_FOR_LOMO:
        why = "has no municipality in its model data" if not found else f"has {len(found)} towns"
        raise SpecError(f"leave-one-municipality-out needs at least {MIN_TOWNS_FOR_LOMO} towns; model "
                        f"{fit.spec.name!r} {why}")


def _onto_fitted_levels(train: Fit, held_out: pd.DataFrame) -> pd.DataFrame:
    """The held-out town's rows relabelled onto levels of the training fit.

    `query.new_town_posterior` gives every town the same new-town draws and every consultant
    nested in a town a fresh draw of its own, so a held-out row may borrow any training town, and
    each held-out consultant a distinct training consultant (with that consultant's town): the
    borrowed levels carry new-town draws only. Bambi is left to make new groups for participants
    alone (its new-group draws for town terms index out of range when towns run different arms).
    """
    rows = held_out.copy()
    fitted = train.data
    consultant_term = "consultant_id" in rows and any(
        "consultant_id" in name.split("|", 1)[1] for name in query.town_terms(train))
    if not consultant_term:
        rows[TOWN] = pd.Series(fitted[TOWN].iloc[0], index=rows.index).astype(fitted[TOWN].dtype)
        return rows
    pairs = fitted[[TOWN, "consultant_id"]].drop_duplicates().reset_index(drop=True)
    held = pd.unique(rows["consultant_id"])
    if len(held) > len(pairs):
        raise SpecError(f"leave-one-municipality-out: the held-out town has {len(held)} consultants, more than "
                        f"the {len(pairs)} of the other towns together, so they cannot each get their own new draw")
    position = pd.Series(np.arange(len(held)), index=held)[rows["consultant_id"]].to_numpy()
    for column in (TOWN, "consultant_id"):
        rows[column] = pairs[column].iloc[position].to_numpy()
        rows[column] = rows[column].astype(fitted[column].dtype)
    return rows


def held_out_log_density(train: Fit, held_out: pd.DataFrame) -> np.ndarray:
    """log p(y_i | training data) per held-out row, its town's group effects drawn as for a new town.

    Where the participant intercepts can be integrated out (`Fit.other_terms`), a held-out person's
    intercept is integrated out exactly: each row is Normal(mean, sqrt(sigma^2 + SD^2)) given a draw,
    the density Bambi's new-group draws estimate, without its dense participant term.
    """
    posterior = query.new_town_posterior(train)
    rows = _onto_fitted_levels(train, held_out)
    if train.other_terms is not None and PARTICIPANT_SIGMA in posterior.posterior:
        model = train.mean_model
        # Bambi's predict deep-copies its input: without the (unused) participant intercepts.
        mean = model.predict(az.InferenceData(posterior=posterior.posterior.drop_vars(PARTICIPANT_TERM, errors="ignore")),
                             kind="response_params", data=rows, inplace=False)
        mean = mean.posterior[model.family.likelihood.parent].transpose("chain", "draw", "__obs__").to_numpy()
        sd = np.sqrt(posterior.posterior["sigma"].to_numpy() ** 2 + posterior.posterior[PARTICIPANT_SIGMA].to_numpy() ** 2)
        observed = held_out[train.prepared.response].to_numpy(dtype=float)
        draws = norm.logpdf(observed, mean, sd[..., None]).reshape(-1, len(held_out))
    else:
        predicted = train.model.predict(az.InferenceData(posterior=posterior.posterior), kind="response_params", data=rows,
                                        inplace=False, sample_new_groups=True)
        log_lik = train.model.family.log_likelihood(train.model, predicted.posterior, held_out)
        draws = log_lik.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy().reshape(-1, len(held_out))
    return logsumexp(draws, axis=0) - np.log(draws.shape[0])


def leave_one_municipality_out(fit: Fit, *, progress: bool = False, **sampler_settings: Any) -> pd.DataFrame:
    """Refit without each town and score the held-out town's rows (log predictive density).

    Each town's elpd is the sum over its rows of log p(y_i | other towns), the town's own effects
    (and its consultants' and participants') unknown to the model, as for a town not in the trial.
    Sampler settings default to the fit's own. Columns: municipality, persons, rows, elpd.
    """
    check_lomo(fit)
    spec = fit.spec.with_sampler(**sampler_settings)
    data = fit.data
    rows = []
    for town in towns(fit):
        in_town = (data[TOWN].astype(str) == town).to_numpy()
        train = dataclasses.replace(fit.prepared, data=data.loc[~in_town].reset_index(drop=True))
        train_fit = sample_prepared(spec, train, data_hash=str(fit.info.get("data_hash", "")), progress=progress)
        held_out = data.loc[in_town].reset_index(drop=True)
        rows.append({TOWN: town, "persons": int(fit.prepared.weights[in_town].sum()), "rows": int(in_town.sum()),
                     "elpd": float(held_out_log_density(train_fit, held_out).sum())})
    return pd.DataFrame(rows)


def _lomo_summary(lomo: pd.DataFrame) -> pd.DataFrame:
    """Total elpd per fit and, paired by town, the difference from the best fit with its SE."""
    by_town = lomo.pivot(index=TOWN, columns="fit", values="elpd")
    n = len(by_town)
    best = by_town.sum().idxmax()
    rows = []
    for name in by_town.columns:
        diff = by_town[best] - by_town[name]
        rows.append({"fit": name, "elpd_lomo": by_town[name].sum(), "se": float(np.sqrt(n) * by_town[name].std(ddof=1)),
                     "elpd_diff": float(diff.sum()), "dse": float(np.sqrt(n) * diff.std(ddof=1))})
    return pd.DataFrame(rows).sort_values("elpd_lomo", ascending=False).reset_index(drop=True)


def _lomo(fits: dict[str, Fit], progress: bool, settings: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    notes, tables = [], []
    for name, fit in fits.items():
        try:
            check_lomo(fit)
        except SpecError as exc:
            notes.append(f"{name}: no leave-one-municipality-out: {exc}")
            continue
        tables.append(leave_one_municipality_out(fit, progress=progress, **settings).assign(fit=name))
    if not tables:
        return pd.DataFrame(), pd.DataFrame(), notes
    table = pd.concat(tables, ignore_index=True)[["fit", TOWN, "persons", "rows", "elpd"]]
    summary = _lomo_summary(table)
    if len(tables) < len(fits) or not _same_observations(fits):
        notes.append("leave-one-municipality-out values are shown per fit but not compared: "
                     "the fits differ in their observations")
        summary[["elpd_diff", "dse"]] = np.nan
    return table, summary, notes


# ---------------------------------------------------------------------------------------------
# Compare, prior grid
# ---------------------------------------------------------------------------------------------


def compare(fits: dict[str, Fit], *, lomo: bool = False, interval: float = query.DEFAULT_INTERVAL,
            progress: bool = False, **lomo_sampler_settings: Any) -> Comparison:
    """Compare fits: arm effects side by side, spec differences, PSIS-LOO and (with `lomo`)
    leave-one-municipality-out cross-validation, which refits each model once per town."""
    if not fits:
        raise SpecError("compare: no fits given")
    notes = []
    if len({fit.spec.outcome for fit in fits.values()}) > 1:
        notes.append("the fits model different outcomes: compare their estimands with care")
    estimands, draws = _estimands(fits, interval)
    loo, loo_notes = loo_table(fits)
    notes += loo_notes
    lomo_table = lomo_summary = pd.DataFrame()
    if lomo:
        lomo_table, lomo_summary, lomo_notes = _lomo(fits, progress, lomo_sampler_settings)
        notes += lomo_notes
    return Comparison(list(fits), estimands, spec_differences(fits), loo, lomo_table, lomo_summary, interval, notes,
                      draws, {name: fit.spec.outcome_unit for name, fit in fits.items()}, dict(fits))


def load_fits(paths: list[str | os.PathLike]) -> dict[str, Fit]:
    """Stored fits named by file name (by path without suffix where file names repeat)."""
    paths = [Path(p) for p in paths]
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [str(p.with_suffix("")) for p in paths]
    if len(set(names)) < len(names):
        raise SpecError(f"compare: the same fit file is given twice ({', '.join(map(str, paths))})")
    return {name: load(path) for name, path in zip(names, paths)}


def prior_grid(fit: Fit, grid: dict[str, dict[str, Prior | str]], *, base_label: str = "base", lomo: bool = False,
               progress: bool = False, **sampler_settings: Any) -> Comparison:
    """Refit `fit` under each entry of `grid` ({label: {term: prior}}) and compare with the fit itself.

    Priors may be `Prior`s or strings such as "Normal(0, 2)". Every entry is checked before any
    refit; refits reuse the prepared data and the fit's sampler settings unless overridden.
    """
    if base_label in grid:
        raise SpecError(f"prior grid: label {base_label!r} is taken by the fit itself; rename that grid entry")
    parsed = {
        label: {term: prior if isinstance(prior, Prior) else parse_prior(prior, where=f"prior grid {label!r}: {term}")
                for term, prior in priors.items()}
        for label, priors in grid.items()
    }
    for label, priors in parsed.items():
        check_priors(fit.spec.with_priors(priors))
    fits = {base_label: fit}
    fits |= {label: refit(fit, priors=priors, progress=progress, **sampler_settings) for label, priors in parsed.items()}
    return compare(fits, lomo=lomo, progress=progress, **sampler_settings)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _side_by_side(estimands: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    cells = estimands.assign(
        cell=[f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] P>0={p:.2f}"
              for m, lo, hi, p in zip(estimands["mean"], estimands["lower"], estimands["upper"], estimands["p_gt_0"])],
        wave=estimands["wave"].map(lambda w: "" if w is None or pd.isna(w) else str(int(w))),
    )
    wide = cells.pivot_table(index=["contrast", "wave", "unit"], columns="fit", values="cell", aggfunc="first", sort=False)
    return wide[list(dict.fromkeys(estimands["fit"]))].reset_index()


def format_comparison(comparison: Comparison) -> str:
    """Plain-text report of a comparison for the terminal."""
    parts = [f"Arm effects against control (mean [{comparison.interval:.0%} interval] P(>0)):",
             _side_by_side(comparison.estimands).to_string(index=False)]
    same = "  none (same spec, data and sampler)"
    parts += ["", "Spec differences:", comparison.spec_diff.to_string(index=False) if not comparison.spec_diff.empty else same]
    parts += ["", "Predictive performance by PSIS-LOO (higher elpd is better; "
                  f"pareto_k_bad: observations with k > {PARETO_K_BAD}):",
              comparison.loo.to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    if not comparison.lomo_summary.empty:
        parts += ["", "Leave-one-municipality-out (log predictive density of each held-out town, summed):",
                  comparison.lomo_summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"),
                  comparison.lomo.to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    parts += [f"note: {note}" for note in comparison.notes]
    return "\n".join(parts)


def plot_compare(comparison: Comparison, out_dir: str | os.PathLike) -> list[Path]:
    """Figure `compare_effects` (PNG and SVG): posterior densities of each arm contrast, fits overlaid."""
    from scipy.stats import gaussian_kde

    from bayes_trial.plots.figures import plt, save_figure  # figures picks the Agg backend first

    keys = list(dict.fromkeys(key for effects in comparison.draws.values() for key in effects))
    columns = min(len(keys), 3)
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.3 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (contrast, wave) in zip(axes.ravel(), keys):
        present = {name: effects[(contrast, wave)] for name, effects in comparison.draws.items() if (contrast, wave) in effects}
        low, high = np.quantile(np.concatenate(list(present.values())), [0.002, 0.998])
        grid = np.linspace(low, high, 300)
        for i, name in enumerate(comparison.names):
            if name in present:
                values = present[name]
                density = gaussian_kde(values)(grid) if np.std(values) > 0 else np.zeros_like(grid)
                ax.plot(grid, density, color=colours(i % 10), lw=1.6, label=name)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        units = {comparison.units[name] for name in present}
        ax.set_xlabel(f"effect ({', '.join(sorted(units))})")
        ax.set_title(contrast + ("" if wave is None else f", wave {wave}"), fontsize=10)
        ax.set_yticks([])
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=8)
    fig.suptitle("Arm contrasts: posterior densities by fit", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out_dir, "compare_effects")
