"""Who answered the survey: response by arm x wave with intervals, and each arm's differential against control."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_trial.plots.figures import arm_colours, plt


def plot_response(rates: pd.DataFrame, differentials: pd.DataFrame, *, control: str, title: str = "Survey response"):
    """Two panels: response (%) by wave per arm, and each arm minus control (pp) by wave.

    Parameters
    ----------
    rates
        arm, wave, mean, lower, upper (%), as `estimands.attrition.ResponseRates.rates`; cells
        left out (suppressed) are not drawn.
    differentials
        wave, arm, mean, lower, upper (pp), as `ResponseRates.differentials`.
    control
        The control arm (drawn first, in grey).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    arms = [control] + [arm for arm in dict.fromkeys(rates["arm"]) if arm != control]
    colours = arm_colours(arms)
    waves = sorted(set(rates["wave"]) | set(differentials["wave"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    offsets = dict(zip(arms, np.linspace(-0.12, 0.12, len(arms)) if len(arms) > 1 else [0.0]))
    for arm in arms:
        rows = rates[rates["arm"] == arm].sort_values("wave")
        if rows.empty:
            continue
        x = rows["wave"].to_numpy(dtype=float) + offsets[arm]
        left.errorbar(x, rows["mean"], yerr=[rows["mean"] - rows["lower"], rows["upper"] - rows["mean"]], fmt="o-",
                      color=colours[arm], capsize=3, label=arm)
        rows = differentials[differentials["arm"] == arm].sort_values("wave")
        if not rows.empty:
            x = rows["wave"].to_numpy(dtype=float) + offsets[arm]
            right.errorbar(x, rows["mean"], yerr=[rows["mean"] - rows["lower"], rows["upper"] - rows["mean"]],
                           fmt="o", color=colours[arm], capsize=3, label=f"{arm} - {control}")
    left.set(xlabel="wave", ylabel="answered (%)", ylim=(0, 100), xticks=waves, title="Response by arm")
    right.axhline(0, color="#999999", lw=1)
    right.set(xlabel="wave", ylabel="percentage points", xticks=waves, title="Differential against control")
    for ax in (left, right):
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
