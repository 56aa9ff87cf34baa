"""Report figures on the outcome scale: effects per town, contrast densities, consultants, trajectories.

Every plotting function takes a `Fit` (and what it needs to compute), returns a matplotlib Figure,
and `save_figure` writes it as PNG and SVG. Observed means shown beside predictions come from cells
of at least `min_cell` persons only (disclosure control).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayes_trial.modelling import frames as model_mod  # noqa: E402
from bayes_trial.estimands import query  # noqa: E402
from bayes_trial.sampling.fit import Fit  # noqa: E402

ARM_COLOURS = ("#4d4d4d", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")


def arm_colours(arm_names: list[str]) -> dict[str, str]:
    """One colour per arm (control grey), the same in every figure."""
    return {arm: ARM_COLOURS[i % len(ARM_COLOURS)] for i, arm in enumerate(arm_names)}


def save_figure(fig, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write `fig` as NAME.png and NAME.svg in `out_dir`, close it, and return the paths.

    The SVG carries no date, so the same fit gives byte-identical figures.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Laid out and measured once for both files: with bbox_inches="tight" each savefig runs the
    # layout engine and measures every artist again, which was half of a report's time.
    # A figure keeps a placeholder engine after `tight_layout` or "none", and savefig then draws the
    # whole figure once more before printing; without any engine it prints from the layout made here.
    fig.draw_without_rendering()
    bbox = fig.get_tightbbox().padded(matplotlib.rcParams["savefig.pad_inches"])
    with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)
    paths = []
    for fmt, options in (("png", {"dpi": 120}), ("svg", {"metadata": {"Date": None}})):
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, bbox_inches=bbox, **options)
        paths.append(path)
    plt.close(fig)
    return paths


def save_figure_as(fig, path: str | os.PathLike) -> list[Path]:
    """`save_figure` for a path: PATH.png and PATH.svg (a .png/.svg suffix on `path` is dropped)."""
    path = Path(path)
    return save_figure(fig, path.parent, path.stem if path.suffix.lower() in (".png", ".svg") else path.name)


def _unit_label(fit: Fit) -> str:
    unit = fit.spec.outcome_unit
    return "percentage points" if unit == "pp" else unit


def plot_effects_by_town(fit: Fit, interval: float = query.DEFAULT_INTERVAL):
    """Forest plot: each arm's effect against control per town, pooled over towns, and for a new town.

    None for a model without towns in its data.
    """
    if "municipality" not in fit.data:
        return None
    control = fit.spec.control_arm
    treated = [arm for arm in query.arms(fit) if arm != control]
    colours = arm_colours(query.arms(fit))
    tables = {arm: query.hypothesis(fit, query.contrast_text(arm, control), by="municipality", interval=interval) for arm in treated}
    pooled = {arm: query.hypothesis(fit, query.contrast_text(arm, control), interval=interval).to_dict("records")[0] for arm in treated}
    labels = list(tables[treated[0]]["municipality"])
    rows = labels[:-1] + ["all towns (pooled)"] + labels[-1:]
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) * len(treated) + 1.6))
    offsets = np.linspace(-0.2, 0.2, len(treated)) if len(treated) > 1 else [0.0]
    for offset, arm in zip(offsets, treated):
        table = tables[arm]
        estimates = table.to_dict("records")
        estimates = estimates[:-1] + [pooled[arm]] + estimates[-1:]
        for y, row in enumerate(estimates):
            marker = "D" if rows[y] == "all towns (pooled)" else ("o" if y < len(rows) - 1 else "s")
            ax.errorbar(row["mean"], y + offset, xerr=[[row["mean"] - row["lower"]], [row["upper"] - row["mean"]]], fmt=marker,
                        color=colours[arm], capsize=3, label=f"{arm} - {control}" if y == 0 else None)
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.axhline(len(rows) - 2.5, color="grey", lw=0.5)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel(f"effect against {control} ({_unit_label(fit)}), {interval:.0%} interval")
    wave_note = f" at wave {query.waves(fit)[-1]}" if query.waves(fit) else ""
    ax.set_title(f"{fit.spec.name}: arm effects by municipality{wave_note}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_contrast(fit: Fit, expression: str, *, wave: int | None = None, municipality: str | None = None):
    """Posterior density of one contrast with the region where the hypothesis holds shaded."""
    parsed = query.parse_hypothesis(expression, query.arms(fit))
    chosen_wave = wave if wave is not None else (query.waves(fit)[-1] if query.waves(fit) else None)
    frame = query.population(fit)
    assign, new_groups = {}, False
    if municipality in ("new", query.NEW_MUNICIPALITY):
        assign, new_groups = {"municipality": query.NEW_MUNICIPALITY}, True
    elif municipality is not None:
        frame = frame[frame["municipality"] == municipality]
    scale = query.scale_factor(fit)
    draws = query.contrast_draws(fit, parsed, frame, chosen_wave, new_groups=new_groups, **assign) * scale
    threshold = parsed.threshold * scale
    grid = np.linspace(*np.quantile(draws, [0.001, 0.999]), 400)
    density = _kde(draws, grid)
    compare = query.COMPARISONS[parsed.compare]
    holds = compare(grid, threshold)
    probability = np.mean(compare(draws, threshold))
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(grid, density, color="black")
    ax.fill_between(grid, density, where=holds, color="#1b9e77", alpha=0.4,
                    label=f"P({parsed.text.split(parsed.compare)[0].strip()} {parsed.compare} {threshold:g}) = {probability:.2f}")
    ax.axvline(threshold, color="grey", ls="--", lw=0.8)
    ax.set_xlabel(f"{parsed.text.split(parsed.compare)[0].strip()} ({_unit_label(fit)})")
    ax.set_ylabel("posterior density")
    where = f", {municipality}" if municipality else ""
    ax.set_title(f"{fit.spec.name}{'' if chosen_wave is None else f', wave {chosen_wave}'}{where}")
    ax.set_yticks([])
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _kde(draws: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from scipy.stats import gaussian_kde

    return gaussian_kde(draws)(grid)


def consultant_term(fit: Fit) -> str | None:
    """The fit's consultant group term (`1|municipality:consultant_id`), if it has one."""
    terms = [v for v in fit.idata.posterior.data_vars if "consultant" in v and "|" in v and not v.endswith("_sigma")]
    return terms[0] if terms else None


def consultant_effects(fit: Fit, interval: float = query.DEFAULT_INTERVAL) -> pd.DataFrame:
    """Each consultant's effect (link scale) with its interval and the arm(s) it serves."""
    term = consultant_term(fit)
    if term is None:
        return pd.DataFrame()
    values = fit.idata.posterior[term]
    level_dim = [d for d in values.dims if d not in ("chain", "draw")][0]
    draws = values.stack(sample=("chain", "draw")).transpose(level_dim, "sample").to_numpy()
    levels = [str(v) for v in values[level_dim].to_numpy()]
    data = fit.data.assign(group=fit.data["municipality"].astype(str) + ":" + fit.data["consultant_id"].astype(str))
    served = data.groupby("group", observed=True)["arm"].agg(lambda s: "/".join(sorted(map(str, s.unique()))))
    tail = (1 - interval) / 2
    lower, upper = np.quantile(draws, [tail, 1 - tail], axis=1)
    table = pd.DataFrame({"consultant": [_consultant_label(level) for level in levels], "mean": draws.mean(axis=1),
                          "lower": lower, "upper": upper, "arm": [served.get(level, "") for level in levels]})
    return table.sort_values("mean").reset_index(drop=True)


def _consultant_label(level: str) -> str:
    """`Town:none:ARM` (the persons of a town's arm without a consultant) said in words."""
    town, _, consultant = level.partition(":")
    kind, _, arm = consultant.partition(":")
    return f"{town}: no consultant ({arm})" if kind == model_mod.NO_CONSULTANT and arm else level


def plot_consultants(fit: Fit, interval: float = query.DEFAULT_INTERVAL):
    """Caterpillar plot of consultant effects, coloured by the arm each consultant serves."""
    table = consultant_effects(fit, interval)
    if table.empty:
        return None
    colours = arm_colours(query.arms(fit))
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(table) + 1.6))
    for y, row in enumerate(table.itertuples()):
        colour = colours.get(row.arm, "#999999")
        ax.plot([row.lower, row.upper], [y, y], color=colour, lw=1.5)
        ax.plot(row.mean, y, "o", color=colour, ms=4)
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(table)), table["consultant"], fontsize=7 if len(table) > 30 else 8)
    scale = _unit_label(fit) if fit.family.link == "identity" else fit.family.effect_label(fit.spec)
    ax.set_xlabel(f"consultant effect ({scale}), {interval:.0%} interval")
    handles = [plt.Line2D([], [], color=colours.get(arm, "#999999"), marker="o", lw=1.5, label=arm)
               for arm in sorted(table["arm"].unique())]
    ax.legend(handles=handles, title="arm served", fontsize=8, loc="lower right")
    ax.set_title(f"{fit.spec.name}: consultant effects (partially pooled)")
    fig.tight_layout()
    return fig


def plot_trajectories(fit: Fit, interval: float = query.DEFAULT_INTERVAL, min_cell: int = query.MIN_CELL):
    """Outcome by arm over survey waves: standardised predictions with bands, observed means as points."""
    all_waves = query.waves(fit)
    if not all_waves:
        return None
    colours = arm_colours(query.arms(fit))
    observed = query.observed_means(fit, ["arm", "wave"], min_cell)
    scale = query.scale_factor(fit)
    tail = (1 - interval) / 2
    fig, ax = plt.subplots(figsize=(6.5, 4))
    means = query.standardised_means(fit, [{"arm": arm, "wave": w} for arm in query.arms(fit) for w in all_waves])
    for i, arm in enumerate(query.arms(fit)):
        shift = (i - 1) * 0.05
        draws = np.stack(means[i * len(all_waves):(i + 1) * len(all_waves)]) * scale
        lower, upper = np.quantile(draws, [tail, 1 - tail], axis=1)
        x = np.asarray(all_waves, dtype=float) + shift
        ax.fill_between(x, lower, upper, color=colours[arm], alpha=0.2)
        ax.plot(x, draws.mean(axis=1), color=colours[arm], label=f"{arm} (predicted)")
        seen = observed[observed["arm"] == arm]
        ax.plot(np.asarray(seen["wave"], dtype=float) + shift, seen["mean"], "o", color=colours[arm], mfc="white",
                label=f"{arm} (observed)")
    ax.set_xticks(all_waves, [f"wave {w}" for w in all_waves])
    ax.set_ylabel(f"{fit.spec.outcome} ({_unit_label(fit)})" if fit.spec.outcome_unit != "points" else fit.spec.outcome)
    ax.set_title(f"{fit.spec.name}: mean by arm and wave ({interval:.0%} bands)")
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def report_figures(fit: Fit, out_dir: str | os.PathLike, queries: list[str] | None = None,
                   min_cell: int = query.MIN_CELL) -> dict[str, list[Path]]:
    """Every standard figure for one fit, written to `out_dir`; returns name -> paths."""
    control = fit.spec.control_arm
    expressions = queries or [f"{query.contrast_text(arm, control)} > 0" for arm in query.arms(fit) if arm != control]
    figures = {f"{fit.spec.name}_effects_by_town": plot_effects_by_town(fit),
               f"{fit.spec.name}_consultants": plot_consultants(fit),
               f"{fit.spec.name}_trajectories": plot_trajectories(fit, min_cell=min_cell)}
    for i, expression in enumerate(expressions, start=1):
        figures[f"{fit.spec.name}_contrast_{i}"] = plot_contrast(fit, expression)
    return {name: save_figure(fig, out_dir, name) for name, fig in figures.items() if fig is not None}
