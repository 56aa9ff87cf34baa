"""Summaries of posterior draws and the disclosure rule for observed cells.

Imports only NumPy: every layer that prints a number with an interval uses these.
"""

from __future__ import annotations

import numpy as np

DEFAULT_INTERVAL = 0.9
# Disclosure control: no observed figure is shown for fewer persons than this (never below the floor).
MIN_CELL = 10
MIN_CELL_FLOOR = 5



def summarise_draws(draws: np.ndarray, interval: float = DEFAULT_INTERVAL,
                    weights: np.ndarray | None = None) -> dict[str, float]:
    """Mean, median, equal-tailed interval and P(> 0) of a vector of draws.

    Parameters
    ----------
    draws
        One value per posterior draw.
    interval
        Width of the equal-tailed interval.
    weights
        Importance weights of the draws (any positive scale; e.g. from `estimands.whatif`); None:
        every draw counts the same, as NumPy's mean, quantiles and sample SD.

    Returns
    -------
    dict
        mean, median, sd, lower, upper, p_gt_0.
    """
    tail = (1 - interval) / 2
    if weights is None:
        lower, upper = np.quantile(draws, [tail, 1 - tail])
        return {
            "mean": float(np.mean(draws)), "median": float(np.median(draws)), "sd": float(np.std(draws, ddof=1)),
            "lower": float(lower), "upper": float(upper), "p_gt_0": float(np.mean(draws > 0)),
        }
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    mean = float(np.sum(w * draws))
    # Reliability-weights variance: with equal weights it is the sample variance (ddof=1).
    variance = np.sum(w * (draws - mean) ** 2) / (1 - np.sum(w**2))
    median, lower, upper = weighted_quantile(draws, [0.5, tail, 1 - tail], w)
    return {"mean": mean, "median": float(median), "sd": float(np.sqrt(variance)), "lower": float(lower),
            "upper": float(upper), "p_gt_0": float(np.sum(w * (draws > 0)))}


def weighted_quantile(draws: np.ndarray, probs, weights: np.ndarray) -> np.ndarray:
    """Quantiles of weighted draws, interpolated as NumPy's default (linear) method.

    The sorted draws sit at cumulative weight positions running from 0 (the smallest) to 1 (the
    largest); with equal weights these are NumPy's positions i / (n - 1), so the numbers agree with
    `numpy.quantile` up to float rounding.

    Parameters
    ----------
    draws
        One value per draw.
    probs
        Probabilities in [0, 1].
    weights
        Non-negative weight of each draw (normalised here); draws of weight 0 are left out.

    Returns
    -------
    numpy.ndarray
        One quantile per probability.
    """
    w = np.asarray(weights, dtype=float)
    kept = w > 0  # a draw of weight 0 is not in the distribution
    order = np.argsort(np.asarray(draws, dtype=float)[kept], kind="stable")
    values = np.asarray(draws, dtype=float)[kept][order]
    w = w[kept][order] / w.sum()
    below = np.cumsum(w) - w
    positions = below / below[-1] if below[-1] > 0 else np.zeros_like(below)
    return np.interp(probs, positions, values)


def interval_texts(lower, upper, digits: int = 2, signed: bool = True) -> list[str]:
    """Interval bounds as text, "[+0.12, +0.80]" ("—" where a bound is missing), one per pair."""
    spec = f"{'+' if signed else ''}.{digits}f"
    return ["—" if np.isnan(lo) or np.isnan(hi) else f"[{lo:{spec}}, {hi:{spec}}]"
            for lo, hi in zip(np.asarray(lower, dtype=float), np.asarray(upper, dtype=float))]

