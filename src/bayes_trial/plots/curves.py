"""Figures of outflow over time from a discrete-time hazard fit: cumulative outflow and contrasts by month."""

from __future__ import annotations

import numpy as np

from bayes_trial.core.summaries import DEFAULT_INTERVAL, MIN_CELL
from bayes_trial.estimands.curves import arm_names, contrasts_at, cumulative_incidence, month_grid, observed_curves
from bayes_trial.plots.figures import arm_colours, plt
from bayes_trial.sampling.fit import Fit


def plot_cumulative_incidence(fit: Fit, *, interval: float = DEFAULT_INTERVAL, min_cell: int = MIN_CELL):
    """Posterior curves with bands per arm, against the observed Kaplan-Meier style steps."""
    curves = cumulative_incidence(fit, interval=interval)
    observed = observed_curves(fit, min_cell=min_cell)
    colours = arm_colours(arm_names(fit))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for arm, curve in curves.groupby("arm", sort=False):
        month = np.concatenate([[0], curve["month"]])
        ax.fill_between(month, np.concatenate([[0], curve["lower"]]), np.concatenate([[0], curve["upper"]]),
                        color=colours[arm], alpha=0.2, lw=0)
        ax.plot(month, np.concatenate([[0], curve["mean"]]), color=colours[arm], label=f"{arm} (model)")
        steps = observed[observed["arm"] == arm]
        ax.step(np.concatenate([[0], steps["month"]]), np.concatenate([[0], steps["cumulative"]]), where="post",
                color=colours[arm], lw=1, ls="--", label=f"{arm} (observed)")
    ax.set_xlabel("months since start")
    ax.set_ylabel("left for paid work (%)")
    ax.set_title(f"{fit.spec.name}: cumulative outflow by arm, {interval:.0%} interval")
    ax.set_xlim(0, curves["month"].max())
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def plot_outflow_contrast(fit: Fit, *, interval: float = DEFAULT_INTERVAL):
    """Each arm against control over the months, in percentage points, with its band."""
    table = contrasts_at(fit, month_grid(fit), interval=interval)
    colours = arm_colours(arm_names(fit))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for contrast, rows in table.groupby("contrast", sort=False):
        arm = contrast.split(" - ")[0]
        ax.fill_between(rows["month"], rows["lower"], rows["upper"], color=colours[arm], alpha=0.2, lw=0)
        ax.plot(rows["month"], rows["mean"], color=colours[arm], label=contrast)
    ax.axhline(0, color="black", lw=0.8, ls="--")
    ax.set_xlabel("months since start")
    ax.set_ylabel("difference in % left for paid work (pp)")
    ax.set_title(f"{fit.spec.name}: difference from {fit.spec.control_arm} over time, {interval:.0%} interval")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
