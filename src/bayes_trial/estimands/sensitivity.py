"""How far survey answers may be missing not at random before a conclusion changes: delta adjustment.

Survey effects rest on non-response being missing at random (MAR): the model fills in a
non-responder's outcome from responders like them. ICH E9(R1) asks how sensitive a conclusion is
to that assumption; clinical trials answer with delta-adjusted multiple imputation (a pattern-mixture
model, as in R's rbmi) and a tipping-point analysis. This module does the same from a stored fit,
without refitting:

    per posterior draw, arm a's mean at wave w under delta
        = the MAR standardised mean of arm a + m_aw * D_a(delta),

with m_aw the share of arm a's outcomes missing at wave w (`modelling.frames.missing_outcomes`:
n_dropped / n_total) and D_a(delta) how far the imputed outcomes move when shifted by delta
(`Family.mean_shifts`): delta itself for identity-link scores (delta in score points); for link
families delta is on the link or latent scale and D_a is the mean of E(y | eta + delta) − E(y | eta)
over the persons standardised over (arm a, wave w). delta = 0 is the MAR answer, draw for draw.

Delta ranges are written ``ARM=LOW:HIGH`` (step: (HIGH − LOW) / 20 rounded to a nice number),
``ARM=LOW:HIGH:STEP`` or ``ARM=VALUE``; several arms make a product grid.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.core.summaries import DEFAULT_INTERVAL, MIN_CELL
from bayes_trial.estimands.attrition import missing_share
from bayes_trial.estimands.query import (answer, arms, contrast_draws, parse_hypothesis, population, resolve_arm,
                                         resolve_wave, scale_factor, standardised_outcome_shifts, waves)
from bayes_trial.modelling.frames import missing_outcomes
from bayes_trial.sampling.fit import Fit

#: Points a range gets without a step: (HIGH - LOW) / 20, rounded to a nice number.
DEFAULT_POINTS = 20
#: Most grid points one analysis evaluates (all arms' ranges multiplied).
MAX_GRID_POINTS = 10_000
DEFAULT_THRESHOLD = 0.9
RANGE_SYNTAX = "LOW:HIGH, LOW:HIGH:STEP or VALUE, e.g. -2:2"


def nice_step(span: float, points: int = DEFAULT_POINTS) -> float:
    """`span` / `points` rounded to the nearest of 1, 2, 2.5 and 5 times a power of ten (on a log scale)."""
    raw = span / points
    power = 10.0 ** math.floor(math.log10(raw))
    candidates = [m * power for m in (1, 2, 2.5, 5, 10)]
    return min(candidates, key=lambda step: abs(math.log(step / raw)))


def delta_values(spec, where: str = "delta") -> np.ndarray:
    """The deltas of one arm's range: ``"LOW:HIGH"``, ``"LOW:HIGH:STEP"``, ``"VALUE"``, a number or a list.

    A range runs from LOW to HIGH in steps of STEP (default `nice_step`), with HIGH and, when the
    range spans it, 0 (the MAR answer) always included.

    Raises
    ------
    SpecError
        One line naming `where` for anything else: empty, not a number, LOW not below HIGH, a step
        that is not positive, or more than `MAX_GRID_POINTS` values.
    """
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        numbers = [float(spec)]
    elif isinstance(spec, (list, tuple, np.ndarray)):
        numbers = [_number(v, spec, where) for v in spec]
        if not numbers:
            raise SpecError(f"{where}: no delta given (expected {RANGE_SYNTAX})")
        return np.unique(numbers)
    elif isinstance(spec, str):
        text = spec.strip()
        parts = text.split(":")
        if not text or len(parts) > 3 or any(not p.strip() for p in parts):
            raise SpecError(f"{where}: {spec!r} is not a delta range (expected {RANGE_SYNTAX})")
        numbers = [_number(p, spec, where) for p in parts]
    else:
        raise SpecError(f"{where}: {spec!r} is not a delta range (expected {RANGE_SYNTAX})")
    if len(numbers) == 1:
        return np.array(numbers)
    low, high = numbers[:2]
    if not low < high:
        raise SpecError(f"{where}: in {spec!r} LOW must be below HIGH (expected {RANGE_SYNTAX})")
    step = numbers[2] if len(numbers) == 3 else nice_step(high - low)
    if step <= 0:
        raise SpecError(f"{where}: in {spec!r} the step must be positive")
    count = math.floor((high - low) / step + 1e-9) + 1
    if count > MAX_GRID_POINTS:
        raise SpecError(f"{where}: {spec!r} makes {count:,} deltas (at most {MAX_GRID_POINTS:,}; take a larger step)")
    values = np.round(low + step * np.arange(count), 10)
    extra = [high] + ([0.0] if low < 0 < high else [])
    return np.unique(np.concatenate([values, extra]))


def _number(text, spec, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: {str(text).strip()!r} in {spec!r} is not a number (expected {RANGE_SYNTAX})") from None
    if not math.isfinite(value):
        raise SpecError(f"{where}: {spec!r} must be finite numbers (expected {RANGE_SYNTAX})")
    return value


def parse_delta_option(text: str) -> tuple[str, str]:
    """``"control=-2:2"`` (the command line's --delta) as (arm label, range text)."""
    arm, sep, spec = text.partition("=")
    if not sep or not arm.strip():
        raise SpecError(f"--delta {text!r}: expected ARM=LOW:HIGH, ARM=LOW:HIGH:STEP or ARM=VALUE, e.g. control=-2:2")
    delta_values(spec, f"--delta {text!r}")
    return arm.strip(), spec.strip()


def check_delta_fit(fit: Fit) -> None:
    """Refuse a fit whose outcome is not a survey outcome answered per wave (one line)."""
    if fit.family.over_time:
        raise SpecError(f"delta adjustment answers arm contrasts of survey outcomes; {fit.spec.name} is a "
                        "discrete-time hazard fit")
    if fit.spec.table != "survey" or not waves(fit):
        raise SpecError(f"delta adjustment is for survey outcomes; {fit.spec.name} models {fit.spec.outcome} "
                        f"from the {fit.spec.table}")


def resolve_deltas(fit: Fit, deltas: dict) -> dict[str, np.ndarray]:
    """Each shifted arm (as the fit names it) and its deltas; an unknown arm is a one-line error listing the arms."""
    if not deltas:
        raise SpecError("delta adjustment: give at least one arm's deltas, e.g. control=-2:2")
    names = arms(fit)
    resolved: dict[str, np.ndarray] = {}
    for label, spec in deltas.items():
        try:
            arm = resolve_arm(str(label), names, f"{label}={spec}")
        except SpecError:
            raise SpecError(f"delta {label}={spec}: unknown arm {label!r} (arms in this fit: {', '.join(names)})") from None
        resolved[arm] = delta_values(spec, f"delta {label}={spec}")
    size = math.prod(len(v) for v in resolved.values())
    if size > MAX_GRID_POINTS:
        raise SpecError(f"delta adjustment: {size:,} grid points (at most {MAX_GRID_POINTS:,}); take larger steps")
    return resolved


def missing_counts(fit: Fit, wave: int) -> dict[str, tuple[int, int]]:
    """(n_dropped, n_total) of each arm's outcomes at `wave`, as recorded with the fit."""
    table = missing_outcomes(fit)
    return {str(row.arm): (int(row.n_dropped), int(row.n_total)) for row in table.itertuples(index=False)
            if row.wave is not None and not pd.isna(row.wave) and int(row.wave) == int(wave)}


@dataclass(frozen=True)
class TippingPoint:
    """The grid point closest to MAR (smallest largest |delta| over arms) at which the conclusion changes."""

    deltas: dict[str, float]
    size: float
    #: "probability" (P(hypothesis) below the threshold), "interval" (the interval includes the
    #: hypothesis' threshold), or both.
    reasons: tuple[str, ...]
    p_hypothesis: float
    mean: float
    lower: float
    upper: float


@dataclass(frozen=True)
class DeltaAdjusted:
    """A delta-adjusted sensitivity analysis of one contrast at one wave (see `delta_adjusted`)."""

    model: str
    hypothesis: str
    wave: int
    unit: str
    #: The scale delta is on (`Family.delta_scale`): score points, log-odds, latent log-odds, log rate.
    scale: str
    threshold: float
    interval: float
    #: The value of the contrast that the interval must not include (the hypothesis' threshold, in `unit`).
    crossing: float
    #: (n_dropped, n_total) at `wave` of each shifted arm (None: not recorded with the fit).
    missing: dict[str, tuple[int, int] | None]
    ranges: dict[str, tuple[float, float]]
    #: One row per grid point: delta_<arm> per shifted arm, mean, lower, upper, p_hypothesis, tips.
    grid: pd.DataFrame
    #: The delta = 0 (missing at random) answer: mean, lower, upper, p_hypothesis.
    mar: dict[str, float]
    tipping_point: TippingPoint | None
    method: str
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def method_line(self, min_cell: int = MIN_CELL) -> str:
        """`method` with the share missing of each shifted arm (small counts not shown)."""
        shares = "; ".join(f"{arm} not recorded" if counts is None else missing_share(arm, *counts, min_cell)
                           for arm, counts in self.missing.items())
        return f"{self.method} Missing at wave {self.wave}: {shares}."

    def sentence(self) -> str:
        """The tipping point in words, or that nothing in the range tips the conclusion."""
        statement = f"P({self.hypothesis})"
        interval = f"the {self.interval:.0%} interval"
        crossing = f"{self.crossing:g}" + ("" if self.crossing == 0 else f" {self.unit}")
        point = self.tipping_point
        if point is None:
            ranges = ", ".join(f"delta_{arm} in [{low:g}, {high:g}]" for arm, (low, high) in self.ranges.items())
            lowest = self.grid.loc[self.grid["p_hypothesis"].idxmin()]
            return (f"no delta tips it ({ranges} {self.scale}): {statement} stays at or above {self.threshold:.2f} "
                    f"(lowest {lowest['p_hypothesis']:.3f}) and {interval} excludes {crossing}")
        if point.size == 0:
            already = " and ".join({"probability": f"{statement} = {point.p_hypothesis:.3f} is below {self.threshold:.2f}",
                                    "interval": f"{interval} includes {crossing}"}[r] for r in point.reasons)
            deltas = self.holds_from()
            if deltas is None:
                return (f"already at delta = 0 (missing at random) {already}, and no delta in the range makes it hold: "
                        "no departure from MAR is needed to doubt it")
            return (f"already at delta = 0 (missing at random) {already}; it would hold ({statement} at least "
                    f"{self.threshold:.2f}, {interval} excluding {crossing}) from {self._where(deltas)}: "
                    f"{self._why(deltas)}")
        what = " and ".join({"probability": f"{statement} falls below {self.threshold:.2f}",
                             "interval": f"{interval} includes {crossing}"}[r] for r in point.reasons)
        return f"{what} at {self._where(point.deltas)}: {self._why(point.deltas)}"

    def holds_from(self) -> dict[str, float] | None:
        """For a conclusion that already fails at delta = 0: the grid point closest to MAR (smallest largest
        |delta|) at which it would hold; None when it holds at MAR or nowhere on the grid."""
        point = self.tipping_point
        holding = self.grid[~self.grid["tips"]]
        if point is None or point.size != 0 or holding.empty:
            return None
        closest = holding.loc[holding[[f"delta_{arm}" for arm in self.ranges]].abs().max(axis=1).idxmin()]
        return {arm: float(closest[f"delta_{arm}"]) for arm in self.ranges}

    def _where(self, deltas: dict[str, float]) -> str:
        return ", ".join(f"delta_{arm} = {_signed(value)}" for arm, value in deltas.items()) + f" {self.scale}"

    def _why(self, deltas: dict[str, float]) -> str:
        return "; ".join(f"{arm} non-responders would have to score {abs(value):g} {self.scale} "
                         f"{'higher' if value > 0 else 'lower'} than {arm} responders like them"
                         for arm, value in deltas.items() if value != 0)


def _signed(value: float) -> str:
    return "0" if value == 0 else f"{value:+g}"


def delta_adjusted(fit: Fit, expression: str, *, deltas: dict, wave: int | str | None = None,
                   threshold: float = DEFAULT_THRESHOLD, interval: float = DEFAULT_INTERVAL) -> DeltaAdjusted:
    """Delta-adjusted (pattern-mixture) sensitivity of a survey contrast to answers missing not at random.

    Non-responders' outcomes are imputed from the posterior (MAR) and shifted by delta in the
    chosen arms; per posterior draw, arm a's mean at the wave becomes its MAR standardised mean plus
    m_a x D_a(delta) (see the module docstring). No refit: the MAR draws are computed once, and for
    link families the persons' linear predictor once, then shifted.

    Parameters
    ----------
    fit
        A fit of a survey outcome (not a register outcome, not a hazard fit).
    expression
        A contrast as `query.parse_hypothesis` reads it: "intensive - control > 0".
    deltas
        Per arm label, its deltas: ``{"control": "-2:2"}``, ``"-2:2:0.1"``, ``"0.5"``, a number or
        a list of numbers (`delta_values`). Several arms make a product grid. Deltas are in score
        points for identity-link scores, on the link (latent) scale otherwise (`Family.delta_scale`).
    wave
        Survey wave (2, "2" or "t2"); default the last.
    threshold
        The conclusion holds while P(hypothesis) is at least this.
    interval
        Width of the equal-tailed interval; the conclusion also tips when it includes the
        hypothesis' threshold (0 for "> 0").

    Returns
    -------
    DeltaAdjusted
        ``.grid`` (one row per grid point), ``.mar`` (delta = 0: the numbers of `query.hypothesis`),
        ``.tipping_point`` (the smallest largest-|delta| grid point that tips, or None), ``.method``,
        ``.sentence()``, ``.warnings`` (e.g. an arm with nothing missing at the wave, where delta
        has no effect).

    Raises
    ------
    SpecError
        One line: a register outcome or hazard fit, an unknown arm (the fit's arms listed), a delta
        range that is empty or not numeric, a wave not in the fit, a threshold or interval outside (0, 1).
    """
    check_delta_fit(fit)
    for name, value in (("threshold", threshold), ("interval", interval)):
        if not 0 < value < 1:
            raise SpecError(f"delta adjustment: {name} {value!r} must be between 0 and 1")
    parsed = parse_hypothesis(expression, arms(fit), fit.spec.outcome_unit)
    wave = resolve_wave(fit, wave)
    wave = waves(fit)[-1] if wave is None else wave
    values = resolve_deltas(fit, deltas)
    recorded = missing_counts(fit, wave)
    missing = {arm: recorded.get(arm) for arm in values}
    scale = scale_factor(fit)
    family = fit.family
    delta_scale = family.delta_scale(fit.spec)

    mar_draws = contrast_draws(fit, parsed, population(fit), wave)
    points = list(itertools.product(*(range(len(v)) for v in values.values())))
    draws = np.repeat(mar_draws[None, :], len(points), axis=0)
    warnings = []
    for position, (arm, arm_deltas) in enumerate(values.items()):
        weight = parsed.weights.get(arm, 0.0)
        dropped, total = missing[arm] or (0, 0)
        if weight == 0:
            warnings.append(f"{arm} is not in {parsed.text!r}: delta_{arm} has no effect")
        elif missing[arm] is None:
            warnings.append(f"this fit has no record of missing {fit.spec.outcome} for {arm} at wave {wave}: "
                            f"delta_{arm} has no effect")
        elif dropped == 0:
            warnings.append(f"{arm} has no missing {fit.spec.outcome} at wave {wave} (0 of {total}): "
                            f"delta_{arm} has no effect")
        if weight == 0 or dropped == 0:
            continue
        shifts = standardised_outcome_shifts(fit, {"arm": arm, "wave": wave}, arm_deltas)
        index = np.array([p[position] for p in points])
        draws += weight * (dropped / total) * shifts[:, index].T

    crossing = parsed.threshold * scale
    rows = []
    for point, point_draws in zip(points, draws):
        summary = answer(point_draws, parsed, scale, interval)
        rows.append({**{f"delta_{arm}": float(values[arm][i]) for arm, i in zip(values, point)},
                     **{k: summary[k] for k in ("mean", "lower", "upper", "p_hypothesis")}})
    grid = pd.DataFrame(rows)
    grid["tips_probability"] = grid["p_hypothesis"] < threshold
    grid["tips_interval"] = (grid["lower"] <= crossing) & (crossing <= grid["upper"])
    grid["tips"] = grid["tips_probability"] | grid["tips_interval"]
    method = (f"Delta adjustment (pattern mixture, no refit): non-responders' {fit.spec.outcome} at wave {wave} "
              f"imputed from the posterior (missing at random), then shifted by delta in {delta_scale} for "
              f"{', '.join(values)}; arm mean = MAR mean + share missing x mean shift of the imputed outcomes.")
    return DeltaAdjusted(
        model=fit.spec.name, hypothesis=parsed.text, wave=int(wave), unit=fit.spec.outcome_unit, scale=delta_scale,
        threshold=threshold, interval=interval, crossing=crossing, missing=missing,
        ranges={arm: (float(v.min()), float(v.max())) for arm, v in values.items()},
        grid=grid.drop(columns=["tips_probability", "tips_interval"]),
        mar=answer(mar_draws, parsed, scale, interval),
        tipping_point=_tipping_point(grid, list(values)), method=method, warnings=tuple(warnings))


def _tipping_point(grid: pd.DataFrame, shifted: list[str]) -> TippingPoint | None:
    """The tipping grid point with the smallest largest |delta| (ties: the lowest P(hypothesis))."""
    tipping = grid[grid["tips"]]
    if tipping.empty:
        return None
    size = tipping[[f"delta_{arm}" for arm in shifted]].abs().max(axis=1)
    row = tipping.assign(size=size).sort_values(["size", "p_hypothesis"], kind="stable").iloc[0]
    reasons = tuple(reason for reason in ("probability", "interval") if row[f"tips_{reason}"])
    return TippingPoint(deltas={arm: float(row[f"delta_{arm}"]) for arm in shifted}, size=float(row["size"]),
                        reasons=reasons, p_hypothesis=float(row["p_hypothesis"]), mean=float(row["mean"]),
                        lower=float(row["lower"]), upper=float(row["upper"]))


def thinned(grid: pd.DataFrame, tipping_point: TippingPoint | None = None, rows: int = 21) -> pd.DataFrame:
    """At most about `rows` rows of a grid for printing: evenly spaced, keeping delta = 0 and the tipping point."""
    if len(grid) <= rows:
        return grid
    keep = set(np.linspace(0, len(grid) - 1, rows).round().astype(int))
    deltas = grid[[c for c in grid.columns if c.startswith("delta_")]]
    keep |= set(np.flatnonzero((deltas == 0).all(axis=1)))
    if tipping_point is not None:
        at = np.ones(len(grid), dtype=bool)
        for arm, value in tipping_point.deltas.items():
            at &= grid[f"delta_{arm}"].to_numpy() == value
        keep |= set(np.flatnonzero(at))
    return grid.iloc[sorted(keep)]
