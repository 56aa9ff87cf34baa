"""Posterior predictive checks: can the fitted model reproduce the data it was fitted to?

Replicated outcomes are drawn once (`posterior_predictive`) and compared with the observed ones
through test statistics that suit the outcome: mean and SD for scores and counts, the share at the
ends of a bounded scale, the share of zeros for counts, the proportion for binary outcomes (from
the binomial cells). Each statistic is computed overall, by arm (x wave), by municipality and by arm
x municipality, with a posterior predictive p-value (ppp). Groups of fewer than `min_cell` persons
are left out of every table and figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as sps

from bayes_trial.core.summaries import DEFAULT_INTERVAL
from bayes_trial.families.base import Statistic
from bayes_trial.sampling.fit import Fit, expected_response, with_log_likelihood

MIN_CELL = 10
MAX_DRAWS = 1000
# ppp outside these limits is reported: the model rarely reproduces the observed value.
PPP_LIMITS = (0.05, 0.95)
PERSON_ID = "participant_id"
GROUP_COLUMNS = ("arm", "wave", "municipality")


@dataclass(frozen=True)
class Predictive:
    """Replicated data: `draws` (samples, rows) and `observed` (rows,) on the outcome's own scale."""

    idata: az.InferenceData
    variable: str
    draws: np.ndarray
    observed: np.ndarray
    weights: np.ndarray


def posterior_predictive(fit: Fit, *, max_draws: int = MAX_DRAWS, seed: int | None = None) -> Predictive:
    """Replicated outcomes for every row of the model data from at most `max_draws` posterior draws.

    `idata` holds the thinned posterior, log-likelihood, observed data and the `posterior_predictive`
    group, as `arviz.loo_pit` and `arviz.plot_ppc` need them. Drawn with numpy from the stored draws:
    the likelihood's parameter of each row from `expected_response` (each formula pattern predicted
    once, participant intercepts from the posterior), the replicates from it by the family
    (`Family.predictive_draws`), as Bambi's ``predict(kind="response")`` draws them.
    """
    posterior = fit.posterior
    step = max(1, math.ceil(posterior.sizes["chain"] * posterior.sizes["draw"] / max_draws))
    idata = with_log_likelihood(fit).sel(draw=slice(None, None, step))
    seed = fit.spec.sampler.get("seed") if seed is None else seed
    thinned = idata.posterior
    parameter = expected_response(fit, thinned, fit.data).transpose("chain", "draw", "__obs__", ...).to_numpy()
    replicated = fit.family.predictive_draws(parameter, thinned, fit.prepared.weights, np.random.default_rng(seed))
    # The observed variable's name in the fit (Bambi's: `p(outflow_work, n_trials)` for binomial cells).
    variable = next(iter(idata.observed_data.data_vars))
    idata.add_groups({"posterior_predictive": xr.Dataset(
        {variable: (("chain", "draw", "__obs__"), replicated)},
        coords={"chain": thinned["chain"], "draw": thinned["draw"], "__obs__": idata.observed_data["__obs__"]})})
    replicated = replicated.reshape(-1, replicated.shape[-1])
    observed = fit.data[fit.prepared.response]
    if isinstance(observed.dtype, pd.CategoricalDtype):
        # Ordinal responses are replicated as category codes 0..K-1.
        levels = np.asarray(observed.cat.categories, dtype=float)
        replicated = levels[replicated.astype(int)]
        observed = observed.astype(float)
    return Predictive(idata, variable, replicated.astype(float), observed.to_numpy(dtype=float), fit.prepared.weights)


def statistics_for(fit: Fit) -> dict[str, Statistic]:
    """The test statistics that suit the fit's family, by name."""
    return fit.family.ppc_statistics(fit.spec, fit.categories)


def _groupings(data: pd.DataFrame) -> list[tuple[str, list[str]]]:
    by_arm = [c for c in ("arm", "wave") if c in data]
    found = [("overall", []), (" x ".join(by_arm), by_arm)]
    if "municipality" in data:
        found += [("municipality", ["municipality"]), ("arm x municipality", ["arm", "municipality"])]
    return found


def _persons(fit: Fit, rows: np.ndarray) -> int:
    data = fit.data
    if fit.prepared.aggregated:
        return int(fit.prepared.weights[rows].sum())
    if PERSON_ID in data:
        return int(data[PERSON_ID].iloc[rows].nunique())
    return len(rows)


def group_label(row: dict | pd.Series) -> str:
    """`intensive · wave 1`, `Oss`, `all`: a group's name in tables and figures."""
    parts = [f"wave {row['wave']}" if column == "wave" else str(row[column])
             for column in GROUP_COLUMNS if column in row and not pd.isna(row[column])]
    return " · ".join(parts) or "all"


def _groups(fit: Fit, min_cell: int) -> Iterator[tuple[str, dict, np.ndarray | None]]:
    """(grouping, levels, row positions) for each group; positions None when under `min_cell` persons."""
    data = fit.data
    for by, columns in _groupings(data):
        if not columns:
            yield by, {}, np.arange(len(data))
            continue
        for key, rows in data.groupby(columns, observed=True, sort=True).indices.items():
            key = key if isinstance(key, tuple) else (key,)
            levels = {c: (int(v) if c == "wave" else str(v)) for c, v in zip(columns, key)}
            yield by, levels, (rows if _persons(fit, rows) >= min_cell else None)


def _ppp(replicated: np.ndarray, observed: float) -> float:
    """P(T(y_rep) > T(y)) with ties counted half, so that discrete statistics are not biased."""
    return float(np.mean(replicated > observed) + 0.5 * np.mean(replicated == observed))


def _statistic_draws(fit: Fit, predictive: Predictive, min_cell: int) -> tuple[list[dict], int]:
    """Per group and statistic: observed value and replicated draws; and how many groups were left out."""
    statistics = statistics_for(fit)
    rows, suppressed = [], 0
    for by, levels, positions in _groups(fit, min_cell):
        if positions is None:
            suppressed += 1
            continue
        weights = predictive.weights[positions]
        observed = predictive.observed[positions]
        replicated = predictive.draws[:, positions]
        for name, statistic in statistics.items():
            rows.append({"by": by, **{c: levels.get(c) for c in GROUP_COLUMNS if c in fit.data},
                         "group": group_label(levels), "statistic": name, "persons": _persons(fit, positions),
                         "observed": float(statistic(observed, weights)),
                         "replicated": statistic(replicated, weights)})
    return rows, suppressed


def test_statistics(fit: Fit, predictive: Predictive | None = None, *, min_cell: int = MIN_CELL,
                    interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Observed test statistics against their posterior predictive distribution, per group.

    Columns: by, arm, wave, municipality (as present), group, statistic, persons, observed,
    predicted (mean of the replicated statistic), lower, upper (equal-tailed `interval`), ppp.
    The number of groups left out for having fewer than `min_cell` persons is in
    `table.attrs["suppressed_groups"]`.
    """
    predictive = predictive or posterior_predictive(fit)
    return _statistic_table(*_statistic_draws(fit, predictive, min_cell), interval)


# The name follows the PPC literature; this keeps pytest from collecting it when a test imports it.
test_statistics.__test__ = False


def _statistic_table(rows: list[dict], suppressed: int, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    tail = (1 - interval) / 2
    summarised = []
    for row in rows:
        replicated = row["replicated"]
        lower, upper = np.quantile(replicated, [tail, 1 - tail])
        summarised.append({**{k: v for k, v in row.items() if k != "replicated"},
                           "predicted": float(np.mean(replicated)), "lower": float(lower), "upper": float(upper),
                           "ppp": _ppp(replicated, row["observed"])})
    table = pd.DataFrame(summarised)
    if "wave" in table:
        table["wave"] = table["wave"].astype("Int64")
    table.attrs["suppressed_groups"] = suppressed
    return table


@dataclass(frozen=True)
class LooPit:
    """LOO-PIT values (uniform for a calibrated model), their distance from the uniform, and the
    PSIS-smoothed leave-one-out log weights they came from (rows x samples; `arviz.plot_loo_pit` takes them)."""

    values: np.ndarray
    ks_distance: float
    p_value: float
    log_weights: np.ndarray = field(repr=False, compare=False)


def loo_log_weights(predictive: Predictive) -> np.ndarray:
    """PSIS-smoothed log importance weights of leaving out each row: (rows, samples), as `arviz.loo_pit` makes them.

    The relative efficiency is the posterior's mean ESS over the number of samples, as ArviZ takes
    it (1 for one chain). Computing them once spares ArviZ's LOO-PIT plot doing it again (PSIS and
    an ESS over every participant intercept: 2.4 s of a demo survey fit's report).
    """
    idata = predictive.idata
    log_likelihood = idata.log_likelihood[predictive.variable].stack(__sample__=("chain", "draw"))
    posterior = idata.posterior
    reff = 1.0
    if posterior.sizes["chain"] > 1:
        ess = az.ess(posterior, method="mean")
        reff = np.hstack([ess[name].to_numpy().ravel() for name in ess.data_vars]).mean() / log_likelihood.sizes["__sample__"]
    return az.psislw(-log_likelihood, reff=reff)[0].to_numpy()


def loo_pit(fit: Fit, predictive: Predictive | None = None) -> LooPit:
    """Leave-one-out probability integral transform (`arviz.loo_pit`) with a Kolmogorov-Smirnov distance.

    The p-value treats the values as independent, which LOO-PIT values are only roughly; and for
    discrete outcomes ArviZ smooths the data first. Read it as a summary, not as a test.
    """
    predictive = predictive or posterior_predictive(fit)
    log_weights = loo_log_weights(predictive)
    values = np.asarray(az.loo_pit(predictive.idata, y=predictive.variable, log_weights=log_weights), dtype=float)
    result = sps.kstest(values, "uniform")
    return LooPit(values, float(result.statistic), float(result.pvalue), log_weights)


def _extreme(table: pd.DataFrame) -> pd.DataFrame:
    low, high = PPP_LIMITS
    return table[(table["ppp"] < low) | (table["ppp"] > high)]


def _statistic_lines(table: pd.DataFrame) -> list[str]:
    low, high = PPP_LIMITS
    lines = []
    for name, block in table.groupby("statistic", sort=False):
        extreme = _extreme(block)
        if extreme.empty:
            lines.append(f"{name} ({len(block)} groups): all ppp within [{low:g}, {high:g}]")
            continue
        worst = extreme.assign(distance=(extreme["ppp"] - 0.5).abs()).sort_values("distance", ascending=False)
        named = ", ".join(f"{r.group} ({r.by}) {r.ppp:.2f}" for r in worst.head(3).itertuples())
        more = f" and {len(worst) - 3} more" if len(worst) > 3 else ""
        lines.append(f"{name}: ppp outside [{low:g}, {high:g}] in {len(extreme)} of {len(block)} groups: {named}{more}")
    return lines


def _loo_pit_line(result: LooPit) -> str:
    return (f"LOO-PIT: largest ECDF distance from uniform {result.ks_distance:.3f} "
            f"(KS p = {result.p_value:.2f}, {len(result.values)} observations)")


def summarise(fit: Fit, predictive: Predictive | None = None, *, min_cell: int = MIN_CELL) -> list[str]:
    """One line per test statistic (naming the worst groups), one for LOO-PIT, one for left-out groups."""
    predictive = predictive or posterior_predictive(fit)
    table = test_statistics(fit, predictive, min_cell=min_cell)
    lines = _statistic_lines(table) + [_loo_pit_line(loo_pit(fit, predictive))]
    if table.attrs["suppressed_groups"]:
        lines.append(f"{table.attrs['suppressed_groups']} groups with fewer than {min_cell} persons left out")
    return lines


def _percent(name: str) -> bool:
    return name.startswith(("share", "proportion"))


def _axis_label(fit: Fit, name: str) -> str:
    unit = "%" if _percent(name) else fit.spec.outcome_unit
    return f"{name} of {fit.spec.outcome} ({unit})"


def _scale(name: str) -> float:
    return 100.0 if _percent(name) else 1.0


def _plot_distribution(fit: Fit, predictive: Predictive, min_cell: int):
    """Observed against replicated distribution; None for binary outcomes (see the group figure)."""
    from matplotlib.figure import Figure

    kind = fit.family.ppc_distribution()
    if kind is None:
        return None, ""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    if kind == "density":
        az.plot_ppc(predictive.idata, var_names=[predictive.variable], num_pp_samples=100, ax=ax,
                    random_seed=fit.spec.sampler.get("seed"), legend=True)
        _tidy_arviz_axes(ax, f"{fit.spec.outcome} ({fit.spec.outcome_unit})", "density")
        ax.set_title("Observed distribution against 100 replicated data sets", fontsize=10)
        return fig, f"density of observed {fit.spec.outcome} against 100 replicated data sets"
    values, labels = fit.family.frequency_values(predictive.observed, fit.categories, min_cell)
    observed = _frequencies(predictive.observed[None, :], values)[0]
    replicated = _frequencies(predictive.draws, values)
    tail = (1 - DEFAULT_INTERVAL) / 2
    lower, upper = np.quantile(replicated, [tail, 1 - tail], axis=0)
    shown = observed >= min_cell
    x = np.arange(len(values))
    ax.bar(x[shown], observed[shown], color="0.75", label="observed")
    ax.errorbar(x, replicated.mean(0), yerr=[replicated.mean(0) - lower, upper - replicated.mean(0)], fmt="o",
                color="C0", markersize=4, capsize=2, label=f"replicated: mean and {DEFAULT_INTERVAL:.0%} interval")
    ax.set_xticks(x, labels, fontsize=8, rotation=0 if len(x) <= 15 else 90)
    ax.set_xlabel(f"{fit.spec.outcome} ({fit.spec.outcome_unit})")
    if fit.family.square_root_axis():
        ax.set_yscale("function", functions=(np.sqrt, np.square))
        ax.set_ylabel("responses (square-root scale)")
    else:
        ax.set_ylabel("responses")
    note = "" if shown.all() else f"; observed bars under {min_cell} responses not shown"
    ax.set_title(f"Observed against replicated frequencies{note}", fontsize=10)
    ax.legend(fontsize=8)
    return fig, f"frequencies of {fit.spec.outcome}: observed bars against replicated means and intervals"


def _frequencies(samples: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts of each value per row of `samples`; the last value counts everything at or above it."""
    counts = [(samples == v).sum(-1) for v in values[:-1]]
    counts.append((samples >= values[-1]).sum(-1))
    return np.stack(counts, axis=-1).astype(float)


def _plot_groups(fit: Fit, table: pd.DataFrame):
    """Per group and statistic: replicated interval and mean against the observed value."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    groups = table[table["by"] != "overall"]
    names = list(dict.fromkeys(groups["statistic"]))
    order = list(dict.fromkeys(zip(groups["by"], groups["group"])))
    fig = Figure(figsize=(1.8 + 3.0 * len(names), 1.4 + 0.32 * len(order)), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names):
        block = groups[groups["statistic"] == name].set_index(["by", "group"]).loc[order]
        scale = _scale(name)
        y = np.arange(len(order))[::-1]
        ax.hlines(y, block["lower"] * scale, block["upper"] * scale, color="C0", linewidth=2)
        ax.plot(block["predicted"] * scale, y, "o", color="C0", markersize=4)
        ax.plot(block["observed"] * scale, y, "D", color="black", markersize=4, fillstyle="none")
        ax.set_xlabel(_axis_label(fit, name), fontsize=9)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        for boundary in np.flatnonzero([a[0] != b[0] for a, b in zip(order[:-1], order[1:])]):
            ax.axhline(y[boundary] - 0.5, color="0.6", linewidth=0.8)
    axes[0].set_yticks(np.arange(len(order))[::-1], [f"{group} ({by})" for by, group in order], fontsize=8)
    fig.legend(handles=[Line2D([], [], color="C0", marker="o", label=f"replicated: mean and {DEFAULT_INTERVAL:.0%} interval"),
                        Line2D([], [], color="black", marker="D", fillstyle="none", linestyle="", label="observed")],
               loc="outside lower center", ncols=2, fontsize=8)
    subject = ("observed against predicted proportion per arm and town" if names == ["proportion"]
               else "observed against replicated statistics per group")
    return fig, f"{subject} ({len(_extreme(groups))} of {len(groups)} ppp outside {list(PPP_LIMITS)})"


def _plot_statistics(fit: Fit, rows: list[dict]):
    """Overall: histogram of each replicated statistic with the observed value."""
    from matplotlib.figure import Figure

    overall = [r for r in rows if r["by"] == "overall"]
    fig = Figure(figsize=(3.4 * len(overall), 3.2), layout="constrained")
    axes = fig.subplots(1, len(overall), squeeze=False)[0]
    for ax, row in zip(axes, overall):
        scale = _scale(row["statistic"])
        ax.hist(row["replicated"] * scale, bins=30, color="C0", alpha=0.6, label="replicated")
        ax.axvline(row["observed"] * scale, color="black", linewidth=2, label="observed")
        ax.set_title(f"{row['statistic']}: ppp {_ppp(row['replicated'], row['observed']):.2f}", fontsize=10)
        ax.set_xlabel(_axis_label(fit, row["statistic"]), fontsize=9)
        ax.set_ylabel("replicated data sets")
    axes[0].legend(fontsize=8)
    ppps = [_ppp(r["replicated"], r["observed"]) for r in overall]
    return fig, "overall test statistics, ppp " + ", ".join(f"{r['statistic']} {p:.2f}" for r, p in zip(overall, ppps))


def _tidy_arviz_axes(ax, xlabel: str, ylabel: str) -> None:
    """ArviZ sets large fonts and puts its legend over the data: bring them in line with the other figures."""
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)


def _plot_loo_pit(predictive: Predictive, result: LooPit):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    az.plot_loo_pit(predictive.idata, y=predictive.variable, log_weights=result.log_weights, ecdf=True, ax=ax)
    _tidy_arviz_axes(ax, "LOO-PIT value", "ECDF minus uniform")
    ax.set_title(f"LOO-PIT: inside the band is calibrated (KS distance {result.ks_distance:.3f})", fontsize=10)
    return fig, _loo_pit_line(result)


def plot_ppc(fit: Fit, out_dir: str | os.PathLike, predictive: Predictive | None = None, *,
             min_cell: int = MIN_CELL) -> list[tuple[Path, str]]:
    """Posterior predictive figures as PNG and SVG in `out_dir`: (path, one-line summary) per file.

    ppc_distribution (scores: density overlay; ordinal and counts: frequencies; not for binary
    outcomes), ppc_groups (statistics per group; for binary outcomes the proportion per arm and
    town), ppc_statistics (overall statistics) and ppc_loo_pit.
    """
    from bayes_trial.plots.figures import save_figure

    predictive = predictive or posterior_predictive(fit)
    out_dir = Path(out_dir)
    rows, suppressed = _statistic_draws(fit, predictive, min_cell)
    table = _statistic_table(rows, suppressed)
    figures = [
        ("ppc_distribution", *_plot_distribution(fit, predictive, min_cell)),
        ("ppc_groups", *_plot_groups(fit, table)),
        ("ppc_statistics", *_plot_statistics(fit, rows)),
        ("ppc_loo_pit", *_plot_loo_pit(predictive, loo_pit(fit, predictive))),
    ]
    written = []
    for name, fig, description in figures:
        if fig is not None:
            written += [(path, description) for path in save_figure(fig, out_dir, name)]
    return written
