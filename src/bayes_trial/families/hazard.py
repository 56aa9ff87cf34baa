"""Discrete-time hazard of outflow to work: counts at risk and events per month and cell.

The register gives each person's month of outflow to work (`months_to_outflow`, empty if none)
and length of follow-up (`months_followed`). A discrete-time hazard model asks, month by month,
how many of those still on benefit leave for work. Its model rows are counts at risk and events
per month and cell (arm x town x consultant x ...), built straight from one row per person, so the
cost follows months x cells, not persons x months. People who never leave are at risk up to
their last month followed (censored), not dropped. The answers are curves over months
(`estimands.curves`), not single contrasts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_trial.core.errors import DataError, SpecError
from bayes_trial.data.contract import validate_register
from bayes_trial.families.base import IMPLAUSIBLE_PP, TRIALS, Family, binomial_draws

MONTH_COLUMNS = ("months_to_outflow", "months_followed")
# Columns made by the person-month expansion that a formula may use: the month (period end; as a
# group factor it gives partially pooled month effects), years since the start ((month - 1) / 12,
# so that an arm's main effect is its effect in month 1) and log(month) for an early steep fall.
TIME_COLUMNS = ("month", "years", "log_month")



def time_columns(month: np.ndarray) -> dict[str, np.ndarray]:
    """The time columns of TIME_COLUMNS for period-end months."""
    month = np.asarray(month, dtype=np.int64)
    return {"month": month, "years": (month - 1) / 12.0, "log_month": np.log(month)}


def last_period(frame: pd.DataFrame, event: str, width: int = 1) -> np.ndarray:
    """Each person's last period at risk: the period of outflow, else the last period followed.

    Months are counted from the start; an outflow in (m-1, m] falls in month m (month 0 in month 1).
    """
    months = np.where(frame[event].to_numpy() == 1, frame["months_to_outflow"].to_numpy(dtype=float),
                      frame["months_followed"].to_numpy(dtype=float))
    return np.maximum(np.ceil(np.ceil(months) / width), 1).astype(np.int64)


def person_months(persons: pd.DataFrame, by: list[str], *, event: str = "outflow_work", width: int = 1) -> pd.DataFrame:
    """Counts at risk (`n_trials`) and events (`event`) per period and cell of `by`.

    `persons` has one row per person with `event` (0/1), `months_to_outflow` and `months_followed`
    (validated: see `data.validate_register`). Periods are `width` months long; `month` is a
    period's last month. Built from per-cell histograms of each person's last period, never
    from person-month rows.
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise SpecError(f"period width must be a positive whole number of months, got {width!r}")
    last = last_period(persons, event, width)
    periods = int(last.max())
    cell_of = persons.groupby(by, observed=True, sort=True).ngroup().to_numpy() if by else np.zeros(len(persons), int)
    n_cells = int(cell_of.max()) + 1
    exits = np.zeros((n_cells, periods))
    events = np.zeros((n_cells, periods))
    np.add.at(exits, (cell_of, last - 1), 1)
    left = persons[event].to_numpy() == 1
    np.add.at(events, (cell_of[left], last[left] - 1), 1)
    at_risk = exits[:, ::-1].cumsum(axis=1)[:, ::-1]
    cells = (persons[by].iloc[np.unique(cell_of, return_index=True)[1]].reset_index(drop=True)
             if by else pd.DataFrame(index=range(1)))
    month_ends = np.minimum(np.arange(1, periods + 1) * width, int(np.ceil(persons["months_followed"].max())))
    long = cells.loc[np.repeat(np.arange(n_cells), periods)].reset_index(drop=True)
    for name, values in time_columns(np.tile(month_ends, n_cells)).items():
        long[name] = values
    long[event] = events.ravel().astype(np.int64)
    long[TRIALS] = at_risk.ravel().astype(np.int64)
    return long.loc[long[TRIALS] > 0].reset_index(drop=True)


def register_persons(frame: pd.DataFrame, where: str, control_arm: str) -> pd.DataFrame:
    """The register table validated, with the month columns a hazard model needs (a `DataError` if absent)."""
    missing = [c for c in MONTH_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: a hazard model needs column(s) {', '.join(missing)} in the register data "
                        "(months from the start to outflow, empty if none; months followed)")
    return validate_register(frame, source=where, control_arm=control_arm)


class Hazard(Family):
    """Binomial counts of outflow per month at risk, on a logit link.

    Parameters
    ----------
    width : int
        Months per period (1: monthly). With the longest follow-up as width there is one period and
        the model is the binary outflow model.
    """

    name = "hazard"
    bambi_name = "binomial"
    link = "logit"
    unit = "pp"
    scale = 100.0
    over_time = True
    prior_checkable = False
    # Monthly hazard: the baseline log-odds is far below 0 (a few % leave per month), so it is centred
    # on the observed monthly rate.
    auto_rule = {"scale": 1.0, "intercept": ("logit_mean", 1.5), "coefficient": 0.5, "group_sd": 0.5, "aux": None}

    def __init__(self, width: int = 1):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise SpecError(f"period width must be a positive whole number of months, got {width!r}")
        self.width = width

    def check_table(self, spec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
        if spec.table != "register":
            raise SpecError(f"model {spec.name!r}: a hazard model reads the register table, not {spec.table!r}")
        return register_persons(frame, where, spec.control_arm)

    def row_columns(self, columns: list[str]) -> tuple[list[str], tuple[str, ...]]:
        return [c for c in columns if c not in TIME_COLUMNS] + ["months_followed"], ("months_to_outflow",)

    def outcome_values(self, spec, values: pd.Series) -> pd.Series:
        return values

    def aggregate(self, spec, data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, str]:
        by = [c for c in columns if c != "months_followed"]
        cells = person_months(data, by, event=spec.outcome, width=self.width)
        person_periods = int(last_period(data, spec.outcome, self.width).sum())
        return cells, (f"{len(data)} persons ({person_periods} person-{'months' if self.width == 1 else 'periods'} "
                       f"at risk) aggregated into {len(cells)} cells of {' x '.join(['month', *by])}")

    def mean_unit(self, spec) -> str:
        return "%"

    def predictive_draws(self, parameter, posterior, trials, rng):
        # Events per month and cell out of those at risk.
        return binomial_draws(parameter, trials, rng)


    def implausible_effect(self, spec, outcome) -> float:
        return IMPLAUSIBLE_PP


FAMILY = Hazard()
