"""Answers on the outcome scale: arm effects, wave effects and variance components.

Effects are standardised (g-computation): every participant in the data is given each arm in turn,
the model's expected outcome (a probability for outflow, a score for scales) is averaged over them
draw by draw, and arms are compared with control. For binary outflow this is the average predicted
probability over the observed data, in percentage points: not a log-odds coefficient.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.core.summaries import DEFAULT_INTERVAL, MIN_CELL, MIN_CELL_FLOOR, interval_texts, summarise_draws  # noqa: F401  (part of this module's API)
from bayes_trial.modelling.frames import ID_COLUMNS, TRIALS
from bayes_trial.sampling.fit import Draws, Fit, mean_expected_response, mean_outcome_shifts

def population(fit: Fit) -> pd.DataFrame:
    """The persons (or binomial cells) over which predictions are averaged: one row per participant.

    Fits without participant ids give every row; a response model with a baseline score then
    averages each wave over that wave's rows (`standardised_means`).
    """
    data = fit.data
    if "participant_id" in data and not fit.prepared.aggregated:
        return data.drop_duplicates("participant_id", keep="first").reset_index(drop=True)
    return data


def _weights(fit: Fit, frame: pd.DataFrame) -> np.ndarray:
    return frame[TRIALS].to_numpy(dtype=float) if fit.prepared.aggregated else np.ones(len(frame))


def _seed(fit: Fit) -> int:
    return int(fit.spec.sampler.get("seed", 0))


NEW_MUNICIPALITY = "new municipality"


def is_new_town(value) -> bool:
    """Whether a municipality value asks for a new town ('new' or 'new municipality')."""
    return isinstance(value, str) and value.strip().lower() in ("new", NEW_MUNICIPALITY)


def town_terms(fit: Fit) -> list[str]:
    """Posterior names of the group effects that belong to a town: its level, its arm effects, its consultants."""
    posterior = fit.posterior
    return sorted(name for name in posterior.data_vars
                  if "|" in name and not name.endswith("_sigma") and f"{name}_sigma" in posterior
                  and "municipality" in name.split("|", 1)[1])


def new_town_problem(fit: Fit) -> str | None:
    """Why this fit cannot predict a new municipality, or None if it can.

    A new town is drawn from the fitted spread between towns, which needs at least two towns in
    the data and a town-level term in the model; without them a "new town" answer would only
    repeat the observed town's (or the pooled) answer.
    """
    if "municipality" not in fit.data:
        return "a new municipality cannot be predicted: this model has no municipality"
    towns = _levels(fit.data["municipality"])
    if len(towns) < 2:
        return (f"a new municipality cannot be predicted from one municipality ({towns[0]}): the spread "
                "between towns is not estimated from these data (fit two or more towns)")
    if not any(name.split("|", 1)[1] == "municipality" for name in town_terms(fit)):
        return ("a new municipality cannot be predicted: the model has no town-level effects such as "
                "(1|municipality) or (arm|municipality), so it does not estimate how towns differ")
    return None


def _new_town_level(factor: str, level: str) -> str:
    """The level a group effect takes in the new town, for a level of an observed town.

    Parts shared by all towns (wave, arm) keep their value; nested units (consultants) each become
    a new unit, so their level names stay distinct.
    """
    parts = [p.strip() for p in factor.split(":")]
    if parts == ["municipality"]:
        return NEW_MUNICIPALITY
    values = level.split(":")
    if "municipality" in parts and len(values) == len(parts) and all(p == "municipality" or p not in ID_COLUMNS
                                                                     for p in parts):
        return ":".join(NEW_MUNICIPALITY if p == "municipality" else v for p, v in zip(parts, values))
    return level


def new_town_posterior(fit: Fit, *, seed: int | None = None):
    """The posterior with every town's group effects replaced by the effects of one new town.

    Each group effect that belongs to a town (`town_terms`: the town level, its arm effects, its
    consultants, town-by-wave effects) is drawn afresh from its fitted distribution, draw by
    draw: Normal(0, SD) with that draw's SD (Bambi's group effects are independent given their
    SDs; there are no correlated terms to carry over). Every observed town gets the same new
    draws, so predicting for the observed persons with their own rows gives their outcomes in
    one new town; each consultant becomes a new consultant with a fresh draw, and crossed parts
    (town-by-wave) get one draw per wave. The same new town serves every arm of a prediction.

    This is the one place where new towns are made (query answers and outflow curves use it);
    it never asks Bambi for new groups.

    Parameters
    ----------
    fit
        A fit with two or more towns and a town-level term (see `new_town_problem`).
    seed
        Seed of the fresh draws; default the fit's sampler seed, so answers are reproducible.

    Returns
    -------
    Draws
        A copy of the fit's posterior with the town effects replaced.

    Raises
    ------
    SpecError
        If a new town cannot be predicted from this fit.
    """
    import xarray as xr

    problem = new_town_problem(fit)
    if problem:
        raise SpecError(f"query: {problem}")
    rng = np.random.default_rng(_seed(fit) if seed is None else seed)
    posterior = fit.posterior.copy()
    for name in town_terms(fit):
        values = posterior[name]
        factor_dim = next(d for d in values.dims if d.endswith("__factor_dim"))
        keys = [_new_town_level(name.split("|", 1)[1], str(v)) for v in values[factor_dim].to_numpy()]
        unique, index = np.unique(keys, return_inverse=True)
        other = [d for d in values.dims if d != factor_dim]
        standard = xr.DataArray(rng.standard_normal((*[values.sizes[d] for d in other], len(unique))),
                                dims=(*other, "new_level"), coords={d: values[d] for d in other if d in values.coords})
        fresh = (standard * posterior[f"{name}_sigma"]).isel(new_level=xr.DataArray(index, dims=factor_dim))
        posterior[name] = fresh.drop_vars("new_level", errors="ignore").assign_coords(
            {factor_dim: values[factor_dim]}).transpose(*values.dims)
    return Draws(posterior)


def _outcome_scale(fit: Fit, values):
    """The expected outcome from `expected_response`-like draws, on the outcome scale (see `Family.expected_outcome`)."""
    return fit.family.expected_outcome(values, fit.categories)


def _rows_for(fit: Fit, frame: pd.DataFrame, assign: dict) -> pd.DataFrame:
    """The rows of `frame` that stand for its persons under `assign`.

    A response model with a baseline score (`ModelSpec.baseline`) has columns that differ by wave
    (0 at wave 0, the person's baseline after it), and its padded rows hold every randomised person
    at every wave: at an assigned wave each person is their own row of that wave.
    """
    if not fit.spec.baseline or "wave" not in assign:
        return frame
    return frame[frame["wave"].astype(int) == int(assign["wave"])]


def _counterfactual_copies(fit: Fit, frame: pd.DataFrame, assignments: list[dict]) -> tuple[pd.DataFrame, np.ndarray]:
    """`frame` once per assignment of column values, stacked, and each row's assignment number.

    New levels (a new town) join the categories.
    """
    categories = {
        column: list(dict.fromkeys([*fit.data[column].cat.categories, *(a[column] for a in assignments if column in a)]))
        for column in {c for a in assignments for c in a} if isinstance(fit.data[column].dtype, pd.CategoricalDtype)
    }
    copies = []
    for assign in assignments:
        copy = _rows_for(fit, frame, assign).copy()
        for column, value in assign.items():
            copy[column] = (pd.Categorical([value] * len(copy), categories=categories[column], ordered=True)
                            if column in categories else value)
        copies.append(copy)
    groups = np.repeat(np.arange(len(copies)), [len(copy) for copy in copies])
    return pd.concat(copies, ignore_index=True), groups


def standardised_means(fit: Fit, assignments: list[dict], frame: pd.DataFrame | None = None, *,
                       new_groups: bool = False, differences_only: bool = False) -> list[np.ndarray]:
    """Draws of the weighted mean expected outcome over `frame`, once per dict of column values.

    All counterfactual copies are evaluated together, each distinct formula pattern once
    (`sampling.fit.mean_expected_response`). With `new_groups`, the persons of `frame`
    live in one new town (`new_town_posterior`), the same for every assignment; an assignment
    of municipality "new" is then implied and ignored. With `differences_only`, the means may share
    an unknown common addend (see `sampling.fit.mean_expected_response`): for contrasts only.
    """
    frame = population(fit) if frame is None else frame
    if new_groups:
        assignments = [{k: v for k, v in a.items() if not (k == "municipality" and is_new_town(v))} for a in assignments]
    copies, groups = _counterfactual_copies(fit, frame, assignments)
    draws = new_town_posterior(fit) if new_groups else Draws(fit.posterior)
    means = _outcome_scale(fit, mean_expected_response(fit, draws, copies, groups, _weights(fit, copies),
                                                       differences_only=differences_only))
    draws = means.stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()
    return list(draws.T)


def standardised_outcome_shifts(fit: Fit, assign: dict, deltas, frame: pd.DataFrame | None = None) -> np.ndarray:
    """Draws (sample x delta) of how far the standardised mean outcome moves when the linear predictor shifts.

    The persons of `frame` (default `population`) get the column values of `assign` (an arm and
    a wave), as in `standardised_means`; their linear predictor is evaluated once and shifted by
    each delta (`sampling.fit.mean_outcome_shifts`). Outcome scale, not yet times `scale_factor`.
    """
    frame = population(fit) if frame is None else frame
    copies, _ = _counterfactual_copies(fit, frame, [assign])
    return mean_outcome_shifts(fit, Draws(fit.posterior), copies, _weights(fit, copies), deltas)


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
    return fit.family.scale


def arms(fit: Fit) -> list[str]:
    """The fit's arms, control first."""
    return list(fit.data["arm"].cat.categories)


def waves(fit: Fit) -> list[int]:
    """The fit's survey waves (empty for register outcomes)."""
    return list(fit.data["wave"].cat.categories) if "wave" in fit.data else []


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
    return fit.family.latent_variance(fit.posterior, fit.data[fit.spec.outcome])


def variance_components(fit: Fit, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Standard deviations of the group effects (link scale) and the consultant share of variance."""
    posterior = fit.posterior
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
    if fit.family.residual_sd is not None:
        rows.append({"parameter": "SD residual",
                     **summarise_draws(posterior[fit.family.residual_sd].to_numpy().ravel(), interval)})
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
    shown[f"{pct} interval"] = interval_texts(shown["lower"], shown["upper"], digits=digits)
    shown["mean"] = [f"{m:+.{digits}f}" for m in shown["mean"]]
    if "unit" in shown:
        shown["mean"] = shown["mean"] + " " + shown["unit"]
    if "p_gt_0" in shown:
        shown["P(>0)"] = [f"{p:.3f}" for p in shown["p_gt_0"]]
        columns.append("P(>0)")
    if "wave" in columns:
        shown["wave"] = shown["wave"].map(lambda w: "" if pd.isna(w) else str(int(w)))
    return shown[columns].to_string(index=False)


COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
# Spellings of the units a threshold may carry; an outcome in another unit accepts its own name.
PERCENTAGE_POINTS = ("pp", "%", "percentage points", "percentage point", "procentpunt", "procentpunten")
POINTS = ("points", "point", "pt", "pts", "punten", "punt")
_THRESHOLD = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*)$")
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"|`([^`]*)`")


@dataclass(frozen=True)
class Hypothesis:
    """A parsed query: a linear combination of arm means compared with a threshold on the outcome scale."""

    text: str
    weights: dict[str, float]
    compare: str
    threshold: float


def _unit_spellings(unit: str) -> tuple[str, ...]:
    if unit == "pp":
        return PERCENTAGE_POINTS
    if unit == "points":
        return POINTS
    return (unit.lower(), unit.lower().rstrip("s"), unit.lower() + "s")


def parse_threshold(text: str, where: str, unit: str | None = None) -> float:
    """A threshold on the outcome's natural scale: a probability for "pp" outcomes, else its own unit.

    For an outcome in percentage points (`unit` "pp") a bare number is a probability (0.02) and
    "2pp" or "2%" is 0.02; for other outcomes a bare number is in the outcome's unit, which may be
    written after it ("0.5 points"). A unit that does not fit `unit` is an error; with `unit`
    None (outcome unknown) "pp"/"%" are read as percentage points and nothing else is checked.
    Errors start with `where` (e.g. "query 'a - b > 2pp'").
    """
    cleaned = text.strip()
    match = _THRESHOLD.match(cleaned)
    if not match:
        raise SpecError(f"{where}: threshold {cleaned!r} is not a number "
                        f"(expected e.g. 0, 0.3{', 2pp or 2%' if unit in (None, 'pp') else f' or 0.3 {unit}'})")
    value, written = float(match.group(1)), " ".join(match.group(2).lower().split())
    if not written:
        return value
    if written in PERCENTAGE_POINTS and unit in (None, "pp"):
        return value / 100
    if unit is not None and unit != "pp" and written in _unit_spellings(unit):
        return value
    expected = "pp (or a probability such as 0.02)" if unit == "pp" else unit
    if unit is None:
        raise SpecError(f"{where}: unit {match.group(2)!r} in {cleaned!r} is not known "
                        "(expected a plain number or pp)")
    raise SpecError(f"{where}: unit {match.group(2)!r} in {cleaned!r} does not fit this outcome, "
                    f"which is measured in {expected}")


def _arm_key(label: str) -> str:
    return re.sub(r"[\s_\-]+", "_", label.strip().lower())


def _arm_list(arm_names: list[str]) -> str:
    return ", ".join(f"'{a}'" if not a.isidentifier() else a for a in arm_names)


def resolve_arm(label: str, arm_names: list[str], expression: str) -> str:
    """The arm that `label` names: exactly, or ignoring case and spaces/underscores/hyphens if unambiguous.

    So "eigen_regie", "Eigen Regie" and "eigen-regie" all name the arm "eigen regie".
    """
    if label in arm_names:
        return label
    matches = [arm for arm in arm_names if _arm_key(arm) == _arm_key(label)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SpecError(f"query {expression!r}: arm {label!r} could be {' or '.join(map(repr, matches))}; "
                        "write the label exactly, in quotes")
    raise SpecError(f"query {expression!r}: unknown arm {label!r} (arms in this fit: {_arm_list(arm_names)}; "
                    "write a label with spaces in quotes, e.g. 'eigen regie', or with underscores, eigen_regie)")


def arm_term(arm: str) -> str:
    """An arm label as `parse_hypothesis` reads it back: bare when it is a name, else in backticks."""
    return arm if arm.isidentifier() else f"`{arm}`"


def contrast_text(arm: str, control: str) -> str:
    """The hypothesis text "ARM - CONTROL" for two arm labels, quoted where a label has spaces."""
    return f"{arm_term(arm)} - {arm_term(control)}"


def parse_hypothesis(expression: str, arm_names: list[str], unit: str | None = None) -> Hypothesis:
    """Parse "intensive - control > 0.02" (or "2pp") into arm weights, comparison and threshold.

    Arms are named as in the data; a label with spaces or other signs goes in quotes
    ('eigen regie', "eigen regie" or `eigen regie`) or is written with underscores (eigen_regie);
    case is ignored where that is unambiguous. Thresholds are on the outcome's natural scale (see
    `parse_threshold`): a probability for outflow (0.02, or 2pp / 2%), score points for scales;
    with `unit` given, a threshold in another unit is an error. The comparison may be omitted
    ("intensive - control" means "> 0").
    """
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        name = f"__arm{len(quoted)}__"
        quoted[name] = next(g for g in match.groups() if g is not None)
        return f" {name} "

    text = _QUOTED.sub(placeholder, expression)
    if any(q in text for q in "'\"`"):
        raise SpecError(f"query {expression!r}: a quote is not closed (write 'eigen regie' - controle > 0)")
    lhs_text, compare, rhs_text = text, ">", "0"
    for symbol in (">=", "<=", ">", "<"):
        if symbol in text:
            lhs_text, rhs_text = text.split(symbol, 1)
            compare = symbol
            break
    for name, label in quoted.items():
        rhs_text = rhs_text.replace(name, repr(label))
    try:
        tree = ast.parse(lhs_text.strip(), mode="eval").body
    except SyntaxError:
        raise SpecError(f"query {expression!r}: cannot read {expression.split(compare)[0].strip()!r} "
                        "(expected arms combined with + and -, e.g. 'intensive - control > 0'; "
                        "labels with spaces in quotes)") from None
    weights: dict[str, float] = {}

    def visit(node: ast.AST, sign: float) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            visit(node.left, sign)
            visit(node.right, sign if isinstance(node.op, ast.Add) else -sign)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            visit(node.operand, -sign if isinstance(node.op, ast.USub) else sign)
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div))
              and isinstance(node.right, ast.Constant) and isinstance(node.right.value, (int, float))):
            factor = float(node.right.value)
            visit(node.left, sign * factor if isinstance(node.op, ast.Mult) else sign / factor)
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(node.left, ast.Constant)
              and isinstance(node.left.value, (int, float))):
            visit(node.right, sign * float(node.left.value))
        elif isinstance(node, ast.Name):
            arm = resolve_arm(quoted.get(node.id, node.id), arm_names, expression)
            weights[arm] = weights.get(arm, 0.0) + sign
        else:
            raise SpecError(f"query {expression!r}: only arm names, numbers, +, -, * and / are allowed "
                            f"(arms in this fit: {_arm_list(arm_names)}; labels with spaces in quotes)")

    visit(tree, 1.0)
    threshold = parse_threshold(rhs_text, f"query {expression!r}", unit)
    low = sum(min(w, 0.0) for w in weights.values())
    high = sum(max(w, 0.0) for w in weights.values())
    if unit == "pp" and _is_plain_number(rhs_text) and threshold != 0 and not low < threshold < high:
        # "> 2" on outflow asks for a difference of 200 percentage points: surely meant as 2pp.
        raise SpecError(f"query {expression!r}: a bare threshold is a probability, and {rhs_text.strip()} is "
                        f"not strictly between {low:g} and {high:g}, the range of this contrast; for percentage points "
                        f"write {rhs_text.strip()}pp")
    return Hypothesis(expression.strip(), weights, compare, threshold)


def _is_plain_number(text: str) -> bool:
    match = _THRESHOLD.match(text.strip())
    return bool(match) and not match.group(2)


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


def wave_label(wave: int) -> str:
    """A wave number with the label data write for it: '1 (t1)'."""
    return f"{wave} (t{wave})"


def resolve_wave(fit: Fit, wave) -> int | None:
    """The fit's wave for a label as the data write it (2, '2', 't2' or 'T2'); None stays None."""
    if wave is None:
        return None
    from bayes_trial.data.contract import wave_number

    if "wave" not in fit.data:
        raise SpecError(f"query: this fit has no waves (model {fit.spec.name!r} is fitted to {fit.spec.table} data); "
                        "leave out --wave")
    try:
        number = wave_number(wave)
    except ValueError:
        number = None
    if number is None or number not in waves(fit):
        raise SpecError(f"query: wave {wave!r} is not in this fit (waves: "
                        f"{', '.join(map(wave_label, waves(fit)))})")
    return number


def arms_by_town(fit: Fit) -> dict[str, list[str]]:
    """The arms each town ran: those with persons in the fitted data, in the fit's arm order."""
    data = fit.data
    if fit.prepared.aggregated:
        data = data[data[TRIALS] > 0]
    ran = data.groupby("municipality", observed=True)["arm"].agg(lambda arms: set(map(str, arms)))
    return {str(town): [arm for arm in arms(fit) if arm in ran[town]] for town in ran.index}


def missing_arms_note(town: str, ran: list[str], wanted) -> str:
    """'' if `town` ran every arm in `wanted`, else a note saying which it did not run."""
    missing = [arm for arm in wanted if arm not in ran]
    return f"{town} did not run {', '.join(missing)} (arms there: {', '.join(ran)})" if missing else ""


def contrast_draws(fit: Fit, hypothesis: Hypothesis, frame: pd.DataFrame, wave, new_groups: bool = False,
                   **assign) -> np.ndarray:
    """Draws of the hypothesis' arm combination, standardised over `frame` (in one new town with `new_groups`)."""
    extra = {} if wave is None else {"wave": wave}
    # Arm weights summing to 0 make a contrast, in which anything common to every arm mean cancels.
    means = standardised_means(fit, [{"arm": arm, **extra, **assign} for arm in hypothesis.weights], frame,
                               new_groups=new_groups, differences_only=bool(np.isclose(sum(hypothesis.weights.values()), 0)))
    return sum(weight * mean for weight, mean in zip(hypothesis.weights.values(), means))


def answer(draws: np.ndarray, hypothesis: Hypothesis, scale: float, interval: float = DEFAULT_INTERVAL, *,
           weights: np.ndarray | None = None, rope: tuple[float, float] | None = None) -> dict[str, float]:
    """Mean and interval (in the outcome's unit: draws x `scale`), P(hypothesis) and, with `rope`, P(in ROPE)
    of a hypothesis' contrast draws (natural scale), each draw counted by its `weights` if given."""
    summary = summarise_draws(draws * scale, interval, weights)
    out = {"mean": summary["mean"], "lower": summary["lower"], "upper": summary["upper"],
           "p_hypothesis": float(np.average(COMPARISONS[hypothesis.compare](draws, hypothesis.threshold), weights=weights))}
    if rope is not None:
        low, high = sorted(rope)
        out["p_rope"] = float(np.average((draws >= low) & (draws <= high), weights=weights))
    return out


def hypothesis(fit: Fit, expression: str, *, by: str | None = None, wave: int | str | None = None,
               municipality: str | None = None, rope: tuple[float, float] | None = None,
               interval: float = DEFAULT_INTERVAL, weights: np.ndarray | None = None) -> pd.DataFrame:
    """Posterior of an arm contrast on the outcome scale, in the spirit of brms `hypothesis()`.

    Parameters
    ----------
    fit
        A stored or fresh fit (not a hazard fit: see `hazard.contrast_hypothesis`).
    expression
        Arms combined with + and -, and a comparison: "intensive - control > 2pp",
        "'eigen regie' - controle > 0" (see `parse_hypothesis`). A threshold in a unit that does
        not fit the outcome is an error.
    by
        "municipality": one row per town, averaged over that town's participants with its fitted
        effects, then a row for a new municipality; "wave": one row per survey wave.
    wave
        Survey wave to answer at (2, "2" or "t2"); default the last wave. The `wave` column
        of the result says which wave each row answers.
    municipality
        One town, or "new" for a town drawn from the fitted town distribution
        (`new_town_posterior`).
    rope
        (low, high) on the natural outcome scale (probabilities for pp outcomes): adds P(inside ROPE).
    interval
        Width of the equal-tailed interval.
    weights
        Importance weights of the posterior draws, chain by chain (`whatif.prior_weights`): the
        answers under another prior without refitting. None: every draw counts the same.

    Returns
    -------
    pandas.DataFrame
        hypothesis, [municipality, note], wave (survey models), unit, mean, lower, upper, interval,
        p_hypothesis, [p_rope]; estimates in `unit`.

    Notes
    -----
    Per-town answers exist only for arms a town ran. With `by="municipality"` a town that did not
    run an arm of the hypothesis keeps its row with empty (NaN) estimates and a `note` saying which
    arm it lacks; so does the new-town row when a new town cannot be predicted (one town in the data,
    or no town-level effects in the model: `new_town_problem`). Asking for such a town directly
    (`municipality=`) is an error. The new town runs every arm.
    """
    parsed = parse_hypothesis(expression, arms(fit), fit.spec.outcome_unit)
    if by not in (None, "municipality", "wave"):
        raise SpecError(f"query: --by {by!r} is not supported (expected municipality or wave)")
    wave = resolve_wave(fit, wave)
    base = population(fit)
    has_waves = bool(waves(fit))
    wanted = [arm for arm, weight in parsed.weights.items() if weight != 0]
    # (label, persons, assignment, new town, note): a note instead of an answer where there is none.
    groups: list[tuple[dict, pd.DataFrame, dict, bool, str]] = []
    if by == "wave":
        if not has_waves:
            raise SpecError("query: --by wave needs a model with survey waves")
        groups = [({"wave": w}, base, {}, False, "") for w in waves(fit)]
    elif by == "municipality" or municipality is not None:
        if "municipality" not in fit.data:
            raise SpecError(f"query: this fit has no 'municipality' (its model uses {', '.join(map(str, fit.data.columns))})")
        ran = arms_by_town(fit)
        towns = _levels(base["municipality"]) + [NEW_MUNICIPALITY] if by == "municipality" else [municipality]
        for town in towns:
            if is_new_town(town):
                problem = new_town_problem(fit)
                if problem and by != "municipality":
                    raise SpecError(f"query: {problem}")
                groups.append(({"municipality": NEW_MUNICIPALITY, "note": problem or ""}, base, {}, True, problem or ""))
                continue
            _check_level(fit, "municipality", town)
            note = missing_arms_note(str(town), ran.get(str(town), []), wanted)
            if note and by != "municipality":
                raise SpecError(f"query {expression!r}: {note}; per-town answers exist only for arms a town ran")
            groups.append(({"municipality": town, "note": note}, base[base["municipality"] == town], {}, False, note))
    else:
        groups = [({}, base, {}, False, "")]
    waves_to_report = [wave] if wave is not None else (waves(fit)[-1:] if has_waves else [None])
    scale = scale_factor(fit)
    rows = []
    for label, frame, assign, new_groups, note in groups:
        for w in ([label["wave"]] if "wave" in label else waves_to_report):
            row = {"hypothesis": parsed.text, **{k: v for k, v in label.items() if k != "wave"}, "wave": w,
                   "unit": fit.spec.outcome_unit, "mean": np.nan, "lower": np.nan, "upper": np.nan,
                   "interval": f"{interval:.0%} ETI", "p_hypothesis": np.nan}
            if rope is not None:
                row["p_rope"] = np.nan
            if not note:
                draws = contrast_draws(fit, parsed, frame, w, new_groups=new_groups, **assign)
                row.update(answer(draws, parsed, scale, interval, weights=weights, rope=rope))
            rows.append(row)
    table = pd.DataFrame(rows)
    if not has_waves:
        table = table.drop(columns="wave")
    return table
