"""Answers on the outcome scale: arm effects, wave effects and variance components.

Effects are standardised (g-computation): every participant in the data is given each arm in turn,
the model's expected outcome (a probability for outflow, a score for scales) is averaged over them
draw by draw, and arms are compared with control. For binary outflow this is the average predicted
probability over the observed data, in percentage points: not a log-odds coefficient.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .fit import Fit
from .model import TRIALS

DEFAULT_INTERVAL = 0.9


def population(fit: Fit) -> pd.DataFrame:
    """The persons (or binomial cells) over which predictions are averaged: one row per participant."""
    data = fit.data
    if "participant_id" in data and not fit.prepared.aggregated:
        return data.drop_duplicates("participant_id", keep="first").reset_index(drop=True)
    return data


def _weights(fit: Fit, frame: pd.DataFrame) -> np.ndarray:
    return frame[TRIALS].to_numpy(dtype=float) if fit.prepared.aggregated else np.ones(len(frame))


def _expected_outcome(fit: Fit, frame: pd.DataFrame) -> np.ndarray:
    """Posterior draws (chain*draw, rows) of each row's expected outcome on the outcome scale."""
    predicted = fit.model.predict(fit.idata, kind="response_params", data=frame, inplace=False)
    parent = fit.model.family.likelihood.parent
    values = predicted.posterior[parent]
    if fit.prepared.family == "cumulative":
        category_dim = [d for d in values.dims if d not in ("chain", "draw", "__obs__")][0]
        levels = np.asarray(fit.data[fit.spec.outcome].cat.categories, dtype=float)
        values = (values * _levels_array(values, category_dim, levels)).sum(category_dim)
    return values.stack(sample=("chain", "draw")).transpose("sample", "__obs__").to_numpy()


def _levels_array(values, dim: str, levels: np.ndarray):
    import xarray as xr

    return xr.DataArray(levels, dims=(dim,), coords={dim: values[dim]})


def standardised_mean(fit: Fit, frame: pd.DataFrame | None = None, **assign) -> np.ndarray:
    """Draws of the weighted mean expected outcome over `frame` with columns set to `assign` values."""
    frame = population(fit) if frame is None else frame
    frame = frame.copy()
    for column, value in assign.items():
        categories = fit.data[column].cat.categories
        frame[column] = pd.Categorical([value] * len(frame), categories=categories, ordered=True)
    draws = _expected_outcome(fit, frame)
    weights = _weights(fit, frame)
    return draws @ weights / weights.sum()


def scale_factor(fit: Fit) -> float:
    """Probabilities are reported in percentage points, scores in their own units."""
    return 100.0 if fit.spec.family == "bernoulli" else 1.0


def arms(fit: Fit) -> list[str]:
    return list(fit.data["arm"].cat.categories)


def waves(fit: Fit) -> list[int]:
    return list(fit.data["wave"].cat.categories) if "wave" in fit.data else []


def summarise_draws(draws: np.ndarray, interval: float = DEFAULT_INTERVAL) -> dict[str, float]:
    """Mean, median, equal-tailed interval and P(> 0) of a vector of draws."""
    tail = (1 - interval) / 2
    lower, upper = np.quantile(draws, [tail, 1 - tail])
    return {
        "mean": float(np.mean(draws)), "median": float(np.median(draws)), "sd": float(np.std(draws, ddof=1)),
        "lower": float(lower), "upper": float(upper), "p_gt_0": float(np.mean(draws > 0)),
    }


def arm_means(fit: Fit, *, wave: int | None = None) -> dict[str, np.ndarray]:
    """Standardised outcome-scale mean of each arm (at `wave` for survey models)."""
    assign = {} if wave is None else {"wave": wave}
    return {arm: standardised_mean(fit, arm=arm, **assign) for arm in arms(fit)}


def effects(fit: Fit, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Each arm against control on the outcome scale, per wave for survey models."""
    control = fit.spec.control_arm
    rows = []
    for wave in waves(fit) or [None]:
        means = arm_means(fit, wave=wave)
        for arm in arms(fit):
            if arm == control:
                continue
            draws = (means[arm] - means[control]) * scale_factor(fit)
            rows.append({"contrast": f"{arm} - {control}", "wave": wave, "unit": fit.spec.outcome_unit,
                         **summarise_draws(draws, interval)})
    return pd.DataFrame(rows)


def wave_effects(fit: Fit, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Change from baseline in the control arm, on the outcome scale (the time effect)."""
    all_waves = waves(fit)
    if len(all_waves) < 2:
        return pd.DataFrame(columns=["contrast", "wave", "unit", "mean", "median", "sd", "lower", "upper", "p_gt_0"])
    control = fit.spec.control_arm
    baseline = standardised_mean(fit, arm=control, wave=all_waves[0])
    rows = []
    for wave in all_waves[1:]:
        draws = (standardised_mean(fit, arm=control, wave=wave) - baseline) * scale_factor(fit)
        rows.append({"contrast": f"wave {wave} - wave {all_waves[0]} ({control})", "wave": wave,
                     "unit": fit.spec.outcome_unit, **summarise_draws(draws, interval)})
    return pd.DataFrame(rows)


def residual_variance(fit: Fit) -> np.ndarray | float:
    """Observation-level variance on the latent (link) scale, for variance shares."""
    posterior = fit.idata.posterior
    if fit.prepared.family == "gaussian":
        return posterior["sigma"].to_numpy().ravel() ** 2
    if fit.prepared.family == "negativebinomial":
        # Nakagawa, Johnson & Schielzeth (2017): log(1 + 1/mu + 1/alpha) for the log link.
        mean = float(np.mean(fit.data[fit.spec.outcome].astype(float)))
        return np.log1p(1 / max(mean, 1e-9) + 1 / posterior["alpha"].to_numpy().ravel())
    return math.pi**2 / 3  # logistic latent residual of logit-link families


def variance_components(fit: Fit, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Standard deviations of the group effects (link scale) and the consultant share of variance."""
    posterior = fit.idata.posterior
    rows = []
    intercept_variances = {}
    for name in sorted(v for v in posterior.data_vars if v.endswith("_sigma") and "|" in v):
        term = name[: -len("_sigma")]
        values = posterior[name]
        extra = [d for d in values.dims if d not in ("chain", "draw")]
        if extra:
            for level in values[extra[0]].to_numpy():
                draws = values.sel({extra[0]: level}).to_numpy().ravel()
                rows.append({"parameter": f"SD {term} [{level}]", **summarise_draws(draws, interval)})
        else:
            draws = values.to_numpy().ravel()
            rows.append({"parameter": f"SD {term}", **summarise_draws(draws, interval)})
            if term.startswith("1|"):
                intercept_variances[term] = draws**2
    if fit.prepared.family == "gaussian":
        rows.append({"parameter": "SD residual", **summarise_draws(posterior["sigma"].to_numpy().ravel(), interval)})
    consultant = [t for t in intercept_variances if "consultant" in t]
    if consultant:
        total = sum(intercept_variances.values()) + residual_variance(fit)
        share = sum(intercept_variances[t] for t in consultant) / total
        rows.append({"parameter": "consultant share of variance", **summarise_draws(share, interval)})
    table = pd.DataFrame(rows)
    return table.drop(columns="p_gt_0") if not table.empty else table


def format_table(table: pd.DataFrame, label: str, interval: float = DEFAULT_INTERVAL, digits: int = 2) -> str:
    """A plain-text table for the terminal."""
    if table.empty:
        return ""
    pct = f"{interval:.0%}"
    shown = table.copy()
    columns = [label] + [c for c in ("wave",) if c in shown and shown[c].notna().any()] + ["mean", f"{pct} interval"]
    shown[f"{pct} interval"] = [f"[{lo:+.{digits}f}, {hi:+.{digits}f}]" for lo, hi in zip(shown["lower"], shown["upper"])]
    shown["mean"] = [f"{m:+.{digits}f}" for m in shown["mean"]]
    if "unit" in shown:
        shown["mean"] = shown["mean"] + " " + shown["unit"]
    if "p_gt_0" in shown:
        shown["P(>0)"] = [f"{p:.3f}" for p in shown["p_gt_0"]]
        columns.append("P(>0)")
    if "wave" in columns:
        shown["wave"] = shown["wave"].map(lambda w: "" if pd.isna(w) else str(int(w)))
    return shown[columns].to_string(index=False)
