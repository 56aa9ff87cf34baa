"""Answers on the outcome scale: arm effects, wave effects and variance components.

Effects are standardised (g-computation): every participant in the data is given each arm in turn,
the model's expected outcome (a probability for outflow, a score for scales) is averaged over them
draw by draw, and arms are compared with control. For binary outflow this is the average predicted
probability over the observed data, in percentage points: not a log-odds coefficient.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import SpecError
from .fit import Fit
from .model import TRIALS

DEFAULT_INTERVAL = 0.9
# Disclosure control: no observed figure is shown for fewer persons than this (never below the floor).
MIN_CELL = 10
MIN_CELL_FLOOR = 5


def population(fit: Fit) -> pd.DataFrame:
    """The persons (or binomial cells) over which predictions are averaged: one row per participant."""
    data = fit.data
    if "participant_id" in data and not fit.prepared.aggregated:
        return data.drop_duplicates("participant_id", keep="first").reset_index(drop=True)
    return data


def _weights(fit: Fit, frame: pd.DataFrame) -> np.ndarray:
    return frame[TRIALS].to_numpy(dtype=float) if fit.prepared.aggregated else np.ones(len(frame))


def _seed(fit: Fit) -> int:
    return int(fit.spec.sampler.get("seed", 0))


def _with_fresh_town_effects(fit: Fit):
    """The posterior with every town-level effect replaced by a fresh draw from its fitted distribution.

    Bambi predicts a new group by borrowing the draws of a randomly chosen existing group, which
    with a handful of towns is just one of them again. A new town's effects should instead come
    from Normal(0, SD) draw by draw; replacing the levels' draws with such draws makes whichever
    level Bambi borrows a proper new-town draw. Rows of a new-town prediction belong to no existing
    town, so the replaced draws are used for nothing else.
    """
    posterior = fit.idata.posterior.copy()
    rng = np.random.default_rng(_seed(fit) + 1)
    for name, values in fit.idata.posterior.data_vars.items():
        if "|" in name and "municipality" in name.split("|", 1)[1] and not name.endswith("_sigma"):
            standard = rng.standard_normal(values.shape)
            posterior[name] = values.copy(data=standard) * fit.idata.posterior[f"{name}_sigma"]
            posterior[name] = posterior[name].transpose(*values.dims)
    idata = fit.idata.copy()
    idata.posterior = posterior
    return idata


def _expected_outcome(fit: Fit, frame: pd.DataFrame, new_groups: bool = False) -> np.ndarray:
    """Posterior draws (chain*draw, rows) of each row's expected outcome on the outcome scale."""
    idata = _with_fresh_town_effects(fit) if new_groups else fit.idata
    predicted = fit.model.predict(idata, kind="response_params", data=frame, inplace=False,
                                  sample_new_groups=new_groups, random_seed=_seed(fit))
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


def _counterfactual_copies(fit: Fit, frame: pd.DataFrame, assignments: list[dict]) -> pd.DataFrame:
    """`frame` once per assignment of column values, stacked; new levels (a new town) join the categories."""
    categories = {
        column: list(dict.fromkeys([*fit.data[column].cat.categories, *(a[column] for a in assignments if column in a)]))
        for column in {c for a in assignments for c in a} if isinstance(fit.data[column].dtype, pd.CategoricalDtype)
    }
    copies = []
    for assign in assignments:
        copy = frame.copy()
        for column, value in assign.items():
            copy[column] = (pd.Categorical([value] * len(copy), categories=categories[column], ordered=True)
                            if column in categories else value)
        copies.append(copy)
    return pd.concat(copies, ignore_index=True)


def standardised_means(fit: Fit, assignments: list[dict], frame: pd.DataFrame | None = None, *,
                       new_groups: bool = False) -> list[np.ndarray]:
    """Draws of the weighted mean expected outcome over `frame`, once per dict of column values.

    All counterfactual copies go through one `predict` call: Bambi's per-call overhead (design
    matrices, graph evaluation) dominates otherwise. With `new_groups`, levels unseen in the data
    (e.g. municipality="new municipality") get effects drawn from the fitted group distributions.
    """
    frame = population(fit) if frame is None else frame
    draws = _expected_outcome(fit, _counterfactual_copies(fit, frame, assignments), new_groups=new_groups)
    weights = _weights(fit, frame)
    size = len(frame)
    return [draws[:, i * size:(i + 1) * size] @ weights / weights.sum() for i in range(len(assignments))]


def standardised_mean(fit: Fit, frame: pd.DataFrame | None = None, *, new_groups: bool = False, **assign) -> np.ndarray:
    """Draws of the weighted mean expected outcome over `frame` with columns set to `assign` values."""
    return standardised_means(fit, [assign], frame, new_groups=new_groups)[0]


def observed_means(fit: Fit, by: list[str], min_cell: int = MIN_CELL) -> pd.DataFrame:
    """Observed mean outcome and number of persons per group; groups under `min_cell` persons suppressed."""
    data = fit.data
    weights = data[TRIALS].astype(float) if fit.prepared.aggregated else pd.Series(1.0, index=data.index)
    outcome = data[fit.spec.outcome].astype(float)
    frame = pd.DataFrame({**{col: data[col] for col in by}, "total": outcome, "n": weights})
    table = frame.groupby(by, observed=True)[["total", "n"]].sum().reset_index()
    table["mean"] = table["total"] / table["n"] * scale_factor(fit)
    table["n"] = table["n"].astype(int)
    table.loc[table["n"] < min_cell, "mean"] = np.nan
    return table.drop(columns="total")


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
    names = arms(fit)
    return dict(zip(names, standardised_means(fit, [{"arm": arm, **assign} for arm in names])))


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


NEW_MUNICIPALITY = "new municipality"
COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Hypothesis:
    """A parsed query: a linear combination of arm means compared with a threshold on the outcome scale."""

    text: str
    weights: dict[str, float]
    compare: str
    threshold: float


def parse_threshold(text: str, expression: str) -> float:
    cleaned = text.strip().lower().replace(" ", "")
    factor = 0.01 if cleaned.endswith(("pp", "%")) else 1.0
    number = cleaned.rstrip("p%")
    try:
        return float(number) * factor
    except ValueError:
        raise SpecError(f"query {expression!r}: threshold {text.strip()!r} is not a number "
                        "(expected e.g. 0, 0.3, 2pp or 2%)") from None


def parse_hypothesis(expression: str, arm_names: list[str]) -> Hypothesis:
    """Parse "intensive - control > 0.02" (or "2pp") into arm weights, comparison and threshold.

    Thresholds are on the outcome's natural scale: a probability for outflow (0.02, or 2pp / 2%),
    score points for scales. The comparison may be omitted ("intensive - control" means "> 0").
    """
    lhs_text, compare, rhs_text = expression, ">", "0"
    for symbol in (">=", "<=", ">", "<"):
        if symbol in expression:
            lhs_text, rhs_text = expression.split(symbol, 1)
            compare = symbol
            break
    try:
        tree = ast.parse(lhs_text.strip(), mode="eval").body
    except SyntaxError:
        raise SpecError(f"query {expression!r}: cannot read {lhs_text.strip()!r} "
                        f"(expected arms combined with + and -, e.g. 'intensive - control > 0')") from None
    weights: dict[str, float] = {}

    def visit(node: ast.AST, sign: float) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            visit(node.left, sign)
            visit(node.right, sign if isinstance(node.op, ast.Add) else -sign)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            visit(node.operand, -sign if isinstance(node.op, ast.USub) else sign)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)) and isinstance(node.right, ast.Constant):
            factor = float(node.right.value)
            visit(node.left, sign * factor if isinstance(node.op, ast.Mult) else sign / factor)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(node.left, ast.Constant):
            visit(node.right, sign * float(node.left.value))
        elif isinstance(node, ast.Name):
            if node.id not in arm_names:
                raise SpecError(f"query {expression!r}: unknown arm {node.id!r} (arms in this fit: {', '.join(arm_names)})")
            weights[node.id] = weights.get(node.id, 0.0) + sign
        else:
            raise SpecError(f"query {expression!r}: only arm names, numbers, +, -, * and / are allowed "
                            f"(arms in this fit: {', '.join(arm_names)})")

    visit(tree, 1.0)
    return Hypothesis(expression.strip(), weights, compare, parse_threshold(rhs_text, expression))


def _levels(values: pd.Series) -> list:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return list(values.cat.categories)
    return sorted(values.unique())


def _check_level(fit: Fit, column: str, value) -> None:
    if column not in fit.data:
        raise SpecError(f"query: this fit has no {column!r} (its model uses {', '.join(map(str, fit.data.columns))})")
    levels = _levels(fit.data[column])
    if value not in levels:
        raise SpecError(f"query: {column} {value!r} is not in this fit (expected one of: {', '.join(map(str, levels))})")


def contrast_draws(fit: Fit, hypothesis: Hypothesis, frame: pd.DataFrame, wave, new_groups: bool = False,
                    **assign) -> np.ndarray:
    extra = {} if wave is None else {"wave": wave}
    means = standardised_means(fit, [{"arm": arm, **extra, **assign} for arm in hypothesis.weights], frame,
                               new_groups=new_groups)
    return sum(weight * mean for weight, mean in zip(hypothesis.weights.values(), means))


def hypothesis(fit: Fit, expression: str, *, by: str | None = None, wave: int | None = None,
               municipality: str | None = None, rope: tuple[float, float] | None = None,
               interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Posterior of an arm contrast on the outcome scale, in the spirit of brms `hypothesis()`.

    Returns one row per group of `by` ("municipality" or "wave"; per municipality the average is taken
    over that town's participants and uses its fitted effects), plus a row for a new municipality
    (effects drawn from the fitted town distribution) when `by="municipality"` or
    `municipality="new"`. Columns: estimate mean, equal-tailed interval, P(hypothesis) and, with
    `rope` (low, high on the natural outcome scale), P(inside ROPE). Reported in `unit`.
    """
    parsed = parse_hypothesis(expression, arms(fit))
    if by not in (None, "municipality", "wave"):
        raise SpecError(f"query: --by {by!r} is not supported (expected municipality or wave)")
    if wave is not None:
        _check_level(fit, "wave", wave)
    base = population(fit)
    has_waves = bool(waves(fit))
    groups: list[tuple[dict, pd.DataFrame, dict, bool]] = []
    if by == "wave":
        if not has_waves:
            raise SpecError("query: --by wave needs a model with survey waves")
        groups = [({"wave": w}, base, {}, False) for w in waves(fit)]
    elif by == "municipality" or municipality is not None:
        towns = _levels(base["municipality"]) if by == "municipality" else [municipality]
        for town in towns:
            if town in ("new", NEW_MUNICIPALITY):
                groups.append(({"municipality": NEW_MUNICIPALITY}, base, {"municipality": NEW_MUNICIPALITY}, True))
            else:
                _check_level(fit, "municipality", town)
                groups.append(({"municipality": town}, base[base["municipality"] == town], {}, False))
        if by == "municipality":
            groups.append(({"municipality": NEW_MUNICIPALITY}, base, {"municipality": NEW_MUNICIPALITY}, True))
    else:
        groups = [({}, base, {}, False)]
    waves_to_report = [wave] if wave is not None else (waves(fit)[-1:] if has_waves else [None])
    scale = scale_factor(fit)
    compare = COMPARISONS[parsed.compare]
    rows = []
    for label, frame, assign, new_groups in groups:
        for w in ([label["wave"]] if "wave" in label else waves_to_report):
            draws = contrast_draws(fit, parsed, frame, w, new_groups=new_groups, **assign)
            summary = summarise_draws(draws * scale, interval)
            row = {"hypothesis": parsed.text, **{k: v for k, v in label.items() if k != "wave"}, "wave": w,
                   "unit": fit.spec.outcome_unit, "mean": summary["mean"], "lower": summary["lower"],
                   "upper": summary["upper"], "interval": f"{interval:.0%} ETI",
                   "p_hypothesis": float(np.mean(compare(draws, parsed.threshold)))}
            if rope is not None:
                low, high = sorted(rope)
                row["p_rope"] = float(np.mean((draws >= low) & (draws <= high)))
            rows.append(row)
    table = pd.DataFrame(rows)
    if not has_waves:
        table = table.drop(columns="wave")
    return table
