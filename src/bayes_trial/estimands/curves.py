"""Outflow over time: the answers of a discrete-time hazard fit (see `families.hazard` for its data).

Answers are on the scale people use: the cumulative share who left for work by month m, per arm,
from g-computation over the observed population (every person given each arm in turn, with their
own town, consultant and covariates), contrasts at chosen months in percentage points, and the
month by which half (or another share) have left.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.core.summaries import interval_texts
from bayes_trial.families.base import TRIALS
from bayes_trial.families.hazard import TIME_COLUMNS, person_months, register_persons, time_columns
from bayes_trial.sampling.fit import Fit, expected_response
from bayes_trial.modelling.frames import arm_levels
from bayes_trial.estimands.query import (DEFAULT_INTERVAL, MIN_CELL, NEW_MUNICIPALITY, arms_by_town, is_new_town,
                    new_town_posterior, new_town_problem, summarise_draws)

# ---------------------------------------------------------------------------------------------
# Answers: cumulative outflow curves by g-computation
# ---------------------------------------------------------------------------------------------


def month_grid(fit: Fit) -> list[int]:
    """The period-end months of a hazard fit (1, 2, ... for monthly periods)."""
    if "month" not in fit.data or TRIALS not in fit.data:
        raise SpecError(f"model {fit.spec.name!r} is not a hazard model (family {fit.spec.family!r}): "
                        "it has no outflow curves; fit a spec with family = \"hazard\"")
    return sorted(int(m) for m in pd.unique(fit.data["month"]))


def population(fit: Fit) -> pd.DataFrame:
    """Persons per cell of the fit's person-level columns (arm left out), from the first month's risk sets.

    Everyone is at risk in the first period, so its counts are the persons behind each cell.
    """
    first = fit.data[fit.data["month"] == month_grid(fit)[0]]
    person_columns = [c for c in fit.data.columns if c not in (*TIME_COLUMNS, fit.spec.outcome, TRIALS, "arm")]
    return first.groupby(person_columns, observed=True, sort=True)[TRIALS].sum().reset_index()


def arm_names(fit: Fit) -> list[str]:
    """The fit's arms, control first."""
    return list(fit.data["arm"].cat.categories)


def curve_draws(fit: Fit, persons: pd.DataFrame | None = None, *, new_town: bool = False,
                seed: int | None = None, arms: list[str] | None = None) -> dict[str, np.ndarray]:
    """Per arm, draws (samples x months) of the share of `persons` who left for work by each month.

    Every person (cell of `population`) is given the arm in turn, keeping their own town,
    consultant and covariates; their survival is the product of the monthly complements of the
    hazard, and the curves are averaged with the persons as weights. With `new_town`, the same
    persons live in one new town, the same for every arm (`query.new_town_posterior`, seeded by
    `seed`). `arms` limits the curves to those arms (default all).
    """
    persons = population(fit) if persons is None else persons
    grid_months = np.asarray(month_grid(fit))
    weights = persons[TRIALS].to_numpy(dtype=float)
    grid = persons.drop(columns=TRIALS).iloc[np.repeat(np.arange(len(persons)), grid_months.size)].reset_index(drop=True)
    for name, values in time_columns(np.tile(grid_months, len(persons))).items():
        grid[name] = values
    draws = new_town_posterior(fit, seed=seed) if new_town else fit.posterior
    curves = {}
    for arm in arms or arm_names(fit):
        grid["arm"] = pd.Categorical([arm] * len(grid), categories=arm_names(fit), ordered=True)
        hazard = expected_response(fit, draws, grid).stack(sample=("chain", "draw"))
        hazard = hazard.transpose("sample", "__obs__").to_numpy()
        incidence = 1 - np.cumprod(1 - hazard.reshape(-1, len(persons), grid_months.size), axis=2)
        curves[arm] = np.einsum("spm,p->sm", incidence, weights / weights.sum())
    return curves


def _groups(fit: Fit, by: str | None, municipality: str | None) -> list[tuple[dict, pd.DataFrame, bool, list[str]]]:
    """(label, persons, new_town, arms) for the whole population, each town and/or a new town.

    A town's curves are for the arms it ran (`query.arms_by_town`); a new town runs every arm.
    With `by`, a new town that cannot be predicted (`query.new_town_problem`) has no arms and a
    label `note` saying why; asked for directly, it is an error.
    """
    if by not in (None, "municipality"):
        raise SpecError(f"query: --by {by!r} is not supported for outflow curves (expected municipality)")
    persons = population(fit)
    if by is None and municipality is None:
        return [({}, persons, False, arm_names(fit))]
    towns = sorted(pd.unique(persons["municipality"])) + [NEW_MUNICIPALITY] if by == "municipality" else [municipality]
    ran = arms_by_town(fit)
    groups = []
    for town in towns:
        if is_new_town(town):
            problem = new_town_problem(fit)
            if problem and by == "municipality":
                groups.append(({"municipality": NEW_MUNICIPALITY, "note": problem}, persons, True, []))
                continue
            if problem:
                raise SpecError(f"query: {problem}")
            groups.append(({"municipality": NEW_MUNICIPALITY}, persons, True, arm_names(fit)))
        elif town in set(persons["municipality"]):
            groups.append(({"municipality": town}, persons[persons["municipality"] == town], False, ran[str(town)]))
        else:
            raise SpecError(f"query: municipality {town!r} is not in this fit (expected one of: "
                            f"{', '.join(sorted(pd.unique(persons['municipality'])))}, or 'new')")
    return groups


def new_town_note(fit: Fit, by: str | None) -> str:
    """'' or why answers `by` municipality have no new-town answers (e.g. a fit with one town)."""
    return (new_town_problem(fit) or "") if by == "municipality" else ""


GroupCurves = list[tuple[dict, dict[str, np.ndarray]]]


def outflow_curves(fit: Fit, *, by: str | None = None, municipality: str | None = None) -> GroupCurves:
    """(label, curves per arm) for the whole population, or each town and a new town with `by`.

    A town has curves for the arms it ran. A new town that cannot be predicted (one town in the
    data) has none, and its label carries a `note` saying why. Computed once, they can be handed
    to `cumulative_incidence`, `contrasts_at`, `median_time` and `contrast_hypothesis`.
    """
    return [(label, curve_draws(fit, persons, new_town=new_town, arms=arms) if arms else {})
            for label, persons, new_town, arms in _groups(fit, by, municipality)]


def _month_index(fit: Fit, wanted: list[int] | None) -> list[int]:
    available = month_grid(fit)
    if wanted is None:
        return list(range(len(available)))
    missing = [m for m in wanted if m not in available]
    if missing:
        raise SpecError(f"query: month {missing[0]} is not in this fit; it has months {available[0]} to "
                        f"{available[-1]}" + (f" in steps of {available[1] - available[0]}" if len(available) > 1
                                               and available[1] - available[0] > 1 else ""))
    return [available.index(m) for m in wanted]


def _interval_columns(draws: np.ndarray, interval: float) -> dict[str, float]:
    summary = summarise_draws(draws, interval)
    return {k: summary[k] for k in ("mean", "median", "lower", "upper")}


def cumulative_incidence(fit: Fit, months: list[int] | None = None, *, by: str | None = None,
                         municipality: str | None = None, interval: float = DEFAULT_INTERVAL,
                         curves: GroupCurves | None = None) -> pd.DataFrame:
    """Percentage who left for work by each month (all months if None), per arm, with an interval.

    `by="municipality"` gives each town (its own persons and fitted effects) and a new town
    (town and consultant effects drawn from the fitted distributions); `municipality` one of them.
    """
    index = _month_index(fit, months)
    grid = month_grid(fit)
    rows = []
    for label, by_arm in curves or outflow_curves(fit, by=by, municipality=municipality):
        for arm, draws in by_arm.items():
            for i in index:
                rows.append({**label, "arm": arm, "month": grid[i], "unit": "%",
                             **_interval_columns(100 * draws[:, i], interval)})
    return pd.DataFrame(rows)


def contrasts_at(fit: Fit, months: list[int] = (12, 16, 24), *, by: str | None = None,
                 municipality: str | None = None, interval: float = DEFAULT_INTERVAL,
                 curves: GroupCurves | None = None) -> pd.DataFrame:
    """Each arm against control in percentage points who left for work by each of `months`, with P(> 0).

    Per town, only the arms that town ran, and none where it ran no control arm.
    """
    index = _month_index(fit, list(months))
    grid = month_grid(fit)
    control = fit.spec.control_arm
    rows = []
    for label, by_arm in curves or outflow_curves(fit, by=by, municipality=municipality):
        for arm in [a for a in by_arm if a != control and control in by_arm]:
            for i in index:
                rows.append({**label, "contrast": f"{arm} - {control}", "month": grid[i], "unit": "pp",
                             **summarise_draws(100 * (by_arm[arm][:, i] - by_arm[control][:, i]), interval)})
    return pd.DataFrame(rows)


def time_to_share(curve: np.ndarray, grid_months: list[int], share: float) -> np.ndarray:
    """Per draw, the month by which `share` have left (linear between months; inf if not reached)."""
    start = [0] + list(grid_months[:-1])
    previous = np.concatenate([np.zeros((curve.shape[0], 1)), curve[:, :-1]], axis=1)
    reached = curve >= share
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
    rows = np.arange(curve.shape[0])
    lo, hi = previous[rows, first], curve[rows, first]
    step = np.asarray(grid_months)[first] - np.asarray(start)[first]
    month = np.asarray(start)[first] + step * (share - lo) / np.where(hi > lo, hi - lo, 1)
    return np.where(first >= 0, month, np.inf)


def median_time(fit: Fit, *, share: float = 0.5, by: str | None = None, municipality: str | None = None,
                interval: float = DEFAULT_INTERVAL, curves: GroupCurves | None = None) -> pd.DataFrame:
    """Months until half (or `share`) of the population left for work, per arm, where it is reached.

    `p_reached` is the posterior probability that the share is reached within follow-up; the
    median and interval are `inf` where (that quantile of) the posterior lies beyond the last
    month followed.
    """
    if not 0 < share < 1:
        raise SpecError(f"query: share must be between 0 and 1, got {share!r}")
    grid = month_grid(fit)
    tail = (1 - interval) / 2
    rows = []
    for label, by_arm in curves or outflow_curves(fit, by=by, municipality=municipality):
        for arm, draws in by_arm.items():
            times = time_to_share(draws, grid, share)
            lower, median, upper = np.quantile(times, [tail, 0.5, 1 - tail], method="inverted_cdf")
            rows.append({**label, "arm": arm, "share": share, "p_reached": float(np.mean(np.isfinite(times))),
                         "median": float(median), "lower": float(lower), "upper": float(upper),
                         "last_month": grid[-1]})
    return pd.DataFrame(rows)


def _months_text(value: float, last: int) -> str:
    return f"> {last}" if np.isinf(value) else f"{value:.1f}"


def format_outflow(fit: Fit, months: list[int] = (12, 16, 24), *, by: str | None = None,
                   municipality: str | None = None, interval: float = DEFAULT_INTERVAL) -> str:
    """Plain text for the terminal: % left for work by `months` per arm, contrasts with P(> 0), time to half."""
    curves = outflow_curves(fit, by=by, municipality=municipality)
    place = ["municipality"] if by or municipality else []
    pct = f"{interval:.0%}"
    incidence = cumulative_incidence(fit, list(months), interval=interval, curves=curves)
    incidence["left for work"] = incidence["mean"].map(lambda v: f"{v:.1f}%")
    incidence[f"{pct} interval"] = interval_texts(incidence["lower"], incidence["upper"], digits=1, signed=False)
    contrasts = contrasts_at(fit, list(months), interval=interval, curves=curves)
    contrasts["difference"] = contrasts["mean"].map(lambda v: f"{v:+.1f} pp")
    contrasts[f"{pct} interval"] = interval_texts(contrasts["lower"], contrasts["upper"], digits=1)
    contrasts["P(>0)"] = contrasts["p_gt_0"].map(lambda v: f"{v:.3f}")
    half = median_time(fit, interval=interval, curves=curves)
    last = month_grid(fit)[-1]
    half["P(reached)"] = half["p_reached"].map(lambda v: f"{v:.3f}")
    half["months"] = half["median"].map(lambda v: _months_text(v, last))
    half[f"{pct} interval"] = [f"[{_months_text(lo, last)}, {_months_text(hi, last)}]"
                               for lo, hi in zip(half["lower"], half["upper"])]
    notes = [note for note in [new_town_note(fit, by)] if note]
    if by or municipality:
        notes.append("per town: only the arms that town ran")
    return "\n\n".join([
        *[f"note: {note}" for note in notes],
        f"Left for paid work by month (g-computation over the observed population, {pct} intervals):",
        incidence[[*place, "arm", "month", "left for work", f"{pct} interval"]].to_string(index=False),
        "Difference from control:",
        contrasts[[*place, "contrast", "month", "difference", f"{pct} interval", "P(>0)"]].to_string(index=False),
        f"Months until half have left for work (> {last}: not within follow-up):",
        half[[*place, "arm", "P(reached)", "months", f"{pct} interval"]].to_string(index=False),
    ])


# ---------------------------------------------------------------------------------------------
# Observed curves and figures
# ---------------------------------------------------------------------------------------------


def observed_curves(data: Fit | pd.DataFrame, *, by: str | None = None, control_arm: str = "control",
                    min_cell: int = MIN_CELL) -> pd.DataFrame:
    """Kaplan-Meier style percentage who left for work by each month, per arm (and town with `by`).

    `data` is a register table (one row per person) or a hazard fit (its counts at risk). A
    curve stops before the first month with fewer than `min_cell` persons at risk.
    """
    group = ([by] if by else []) + ["arm"]
    if isinstance(data, Fit):
        month_grid(data)
        cells, events = data.data, data.spec.outcome
    else:
        persons = register_persons(data, "observed curves", control_arm)
        persons["arm"] = pd.Categorical(persons["arm"], categories=arm_levels(persons["arm"], control_arm), ordered=True)
        cells, events = person_months(persons, group), "outflow_work"
    counts = (cells.groupby([*group, "month"], observed=True, sort=True)[[events, TRIALS]].sum()
              .reset_index().rename(columns={events: "events", TRIALS: "at_risk"}))
    keys = [counts[c] for c in group]
    counts["cumulative"] = 100 * (1 - (1 - counts["events"] / counts["at_risk"]).groupby(keys, observed=True).cumprod())
    shown = (counts["at_risk"] >= min_cell).astype(int).groupby(keys, observed=True).cummin().astype(bool)
    return counts.loc[shown, [*group, "month", "at_risk", "cumulative"]].reset_index(drop=True)


def contrast_hypothesis(fit: Fit, expression: str, months: list[int] = (12, 16, 24), *, by: str | None = None,
                        municipality: str | None = None, interval: float = DEFAULT_INTERVAL,
                        curves: GroupCurves | None = None) -> pd.DataFrame:
    """`query.hypothesis` for outflow curves: e.g. "intensive - control > 2pp" by each of `months`.

    Thresholds are in percentage points (2pp, 2%) or probabilities (0.02). Per town (`by` or
    `municipality`) there are answers only for arms the town ran: with `by` a town lacking an arm
    of the hypothesis has rows with empty (NaN) estimates and a `note`; asked for directly, it is an
    error. Per-town tables have a `note` column.
    """
    from bayes_trial.estimands.query import COMPARISONS, missing_arms_note, parse_hypothesis

    parsed = parse_hypothesis(expression, arm_names(fit), "pp")
    wanted = [arm for arm, weight in parsed.weights.items() if weight != 0]
    index = _month_index(fit, list(months))
    grid = month_grid(fit)
    holds = COMPARISONS[parsed.compare]
    groups = curves or outflow_curves(fit, by=by, municipality=municipality)
    rows = []
    for label, by_arm in groups:
        note = label.get("note") or (missing_arms_note(str(label["municipality"]), list(by_arm), wanted)
                                     if "municipality" in label else "")
        if note and len(groups) == 1:
            raise SpecError(f"query {expression!r}: {note}; per-town answers exist only for arms a town ran")
        for i in index:
            row = {**label, **({"note": note} if "municipality" in label else {}), "hypothesis": parsed.text,
                   "month": grid[i], "unit": "pp", "mean": np.nan, "lower": np.nan, "upper": np.nan,
                   "interval": f"{interval:.0%} ETI", "p_hypothesis": np.nan}
            if not note:
                draws = sum(weight * by_arm[arm][:, i] for arm, weight in parsed.weights.items())
                summary = summarise_draws(100 * draws, interval)
                row.update(mean=summary["mean"], lower=summary["lower"], upper=summary["upper"],
                           p_hypothesis=float(np.mean(holds(draws, parsed.threshold))))
            rows.append(row)
    return pd.DataFrame(rows)
