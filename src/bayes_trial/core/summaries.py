"""Summaries of posterior draws and the disclosure rule for observed cells.

Imports only NumPy: every layer that prints a number with an interval uses these.
"""

from __future__ import annotations

import numpy as np

DEFAULT_INTERVAL = 0.9
# Disclosure control: no observed figure is shown for fewer persons than this (never below the floor).
MIN_CELL = 10
MIN_CELL_FLOOR = 5



def summarise_draws(draws: np.ndarray, interval: float = DEFAULT_INTERVAL) -> dict[str, float]:
    """Mean, median, equal-tailed interval and P(> 0) of a vector of draws."""
    tail = (1 - interval) / 2
    lower, upper = np.quantile(draws, [tail, 1 - tail])
    return {
        "mean": float(np.mean(draws)), "median": float(np.median(draws)), "sd": float(np.std(draws, ddof=1)),
        "lower": float(lower), "upper": float(upper), "p_gt_0": float(np.mean(draws > 0)),
    }


def interval_texts(lower, upper, digits: int = 2, signed: bool = True) -> list[str]:
    """Interval bounds as text, "[+0.12, +0.80]" ("—" where a bound is missing), one per pair."""
    spec = f"{'+' if signed else ''}.{digits}f"
    return ["—" if np.isnan(lo) or np.isnan(hi) else f"[{lo:{spec}}, {hi:{spec}}]"
            for lo, hi in zip(np.asarray(lower, dtype=float), np.asarray(upper, dtype=float))]

