"""The tipping-point figure of a delta-adjusted sensitivity analysis (`estimands.sensitivity`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayes_trial.estimands.sensitivity import DeltaAdjusted  # noqa: E402

#: Most lines drawn for the other arms' deltas in a product grid.
MAX_LINES = 5


def _curves(result: DeltaAdjusted) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows against the first arm's delta) per value of the other arms' deltas, at most `MAX_LINES`.

    The curve where every other arm is at delta = 0 is always among them.
    """
    arms = list(result.ranges)
    x_column = f"delta_{arms[0]}"
    others = [f"delta_{arm}" for arm in arms[1:]]
    if not others:
        return [("", result.grid.sort_values(x_column))]
    groups = list(result.grid.groupby(others, sort=True))
    chosen = set(np.linspace(0, len(groups) - 1, min(MAX_LINES, len(groups))).round().astype(int))
    chosen |= {i for i, (key, _) in enumerate(groups) if np.all(np.atleast_1d(key) == 0)}
    return [(", ".join(f"{c} = {v:g}" for c, v in zip(others, np.atleast_1d(key))), rows.sort_values(x_column))
            for i, (key, rows) in enumerate(groups) if i in chosen]


def _where(deltas: dict[str, float]) -> str:
    return ", ".join(f"delta_{arm} = {'0' if value == 0 else f'{value:+g}'}" for arm, value in deltas.items())


def _annotate(top, bottom, row: pd.Series, text: str) -> None:
    """Circle the grid point `row` (of the first arm's delta) in both panels and label it in the top one."""
    x = row[[c for c in row.index if str(c).startswith("delta_")][0]]
    for axis, value in ((top, row["p_hypothesis"]), (bottom, row["mean"])):
        axis.plot([x], [value], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="firebrick",
                  linestyle="none")
    # The text sits inside the panel (lower left) with an arrow, so a long label never widens the figure.
    top.annotate(text, (x, row["p_hypothesis"]), xytext=(0.02, 0.06), textcoords="axes fraction", color="firebrick",
                 fontsize=8, arrowprops={"arrowstyle": "->", "color": "firebrick", "linewidth": 0.8})


def plot_delta_adjusted(result: DeltaAdjusted):
    """Two panels against delta: P(hypothesis) with the threshold, and the contrast with its interval and zero.

    With several shifted arms the x axis is the first arm's delta and each line one value of the
    others' (at most five lines, always the one where they are 0). The MAR answer (delta = 0) is
    marked in both panels and the tipping point, if any, annotated.

    Returns
    -------
    matplotlib.figure.Figure
    """
    arms = list(result.ranges)
    x_column = f"delta_{arms[0]}"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for label, rows in _curves(result):
        x = rows[x_column].to_numpy()
        line, = top.plot(x, rows["p_hypothesis"], marker=".", label=label or None)
        bottom.plot(x, rows["mean"], color=line.get_color(), label=label or None)
        bottom.fill_between(x, rows["lower"], rows["upper"], color=line.get_color(), alpha=0.15, linewidth=0)
    top.axhline(result.threshold, color="firebrick", linestyle="--", linewidth=1,
                label=f"threshold {result.threshold:.2f}")
    bottom.axhline(result.crossing, color="black", linewidth=0.8)
    for axis, value in ((top, result.mar["p_hypothesis"]), (bottom, result.mar["mean"])):
        axis.axvline(0, color="grey", linestyle=":", linewidth=1)
        axis.plot([0], [value], marker="D", color="black", linestyle="none", label="missing at random (delta = 0)")
    point = result.tipping_point
    if point is not None:
        why = " and ".join({"probability": f"P < {result.threshold:.2f}",
                            "interval": f"interval includes {result.crossing:g}"}[r] for r in point.reasons)
        holds = result.holds_from()
        if point.size == 0 and holds is not None:
            # Fails at MAR already: what a reader needs is where it would start to hold.
            row = result.grid.loc[(result.grid[[f"delta_{arm}" for arm in holds]] == pd.Series(
                {f"delta_{arm}": value for arm, value in holds.items()})).all(axis=1)].iloc[0]
            _annotate(top, bottom, row, f"fails at delta = 0 ({why});\nholds from {_where(holds)}")
        elif point.size > 0:
            _annotate(top, bottom, pd.Series({"p_hypothesis": point.p_hypothesis, "mean": point.mean,
                                              **{f"delta_{arm}": v for arm, v in point.deltas.items()}}),
                      f"tips at {_where(point.deltas)}\n({why})")
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel(f"P({result.hypothesis})")
    unit = "percentage points" if result.unit == "pp" else result.unit
    bottom.set_ylabel(f"contrast ({unit}), {result.interval:.0%} interval")
    bottom.set_xlabel(f"delta_{arms[0]} ({result.scale}): shift of {arms[0]} non-responders' imputed outcomes")
    top.set_title(f"{result.model}, wave {result.wave}: sensitivity to answers missing not at random", fontsize=10)
    top.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
