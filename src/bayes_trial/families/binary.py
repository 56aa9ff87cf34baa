"""Binary outcomes (outflow to work: yes/no): logit link, reported in percentage points.

Without person-level covariates the rows are aggregated into binomial cells (one per arm x town x
consultant x ...), which gives the same posterior and samples far faster.
"""

from __future__ import annotations

import pandas as pd

from bayes_trial.core.errors import DataError
from bayes_trial.data.contract import BASELINE_SCORE, NO_BASELINE
from bayes_trial.families.base import (IMPLAUSIBLE_PP, TRIALS, Family, Statistic, binomial_draws,
                                      proportion_statistic)

#: Columns that are cell factors rather than person-level covariates. The response model's baseline
#: columns are person-level, but take one value per wave-0 score (scores have few distinct values):
#: rows that share every column are still one exact binomial cell (same posterior). On `nl7` 11,664
#: person-waves become 4,925 cells: 20 s of sampling instead of 50 s (2 chains x 600 iterations).
CELL_FACTORS = ("arm", "wave", "municipality", "consultant_id", BASELINE_SCORE, NO_BASELINE)


class Binary(Family):
    """Bernoulli rows, or binomial cells of them."""

    name = "bernoulli"
    bambi_name = "bernoulli"
    link = "logit"
    unit = "pp"
    scale = 100.0
    reference = "glm"
    # Logit scale (rstanarm's normal(0, 2.5) intercept, narrowed): a baseline between ~5% and ~95%;
    # arm log-odds ratios mostly within +-1 (odds ratios 1/2.7 to 2.7, about +-20 pp at 30%).
    auto_rule = {"scale": 1.0, "intercept": (0, 1.5), "coefficient": 0.5, "group_sd": 0.5, "aux": None}

    def outcome_values(self, spec, values: pd.Series) -> pd.Series:
        bad = ~values.isin([0, 1])
        if bad.any():
            raise DataError(f"model {spec.name!r}: outcome {spec.outcome} must be 0/1 for family bernoulli, "
                            f"found {values[bad].iloc[0]!r}")
        return values.astype(int)

    def aggregate(self, spec, data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, str] | None:
        if not spec.aggregate or [c for c in columns if c not in CELL_FACTORS]:
            return None
        cells = (data.groupby(list(columns), observed=True, sort=True)[spec.outcome].agg(["sum", "size"])
                 .reset_index().rename(columns={"sum": spec.outcome, "size": TRIALS}))
        return cells, f"{len(data)} persons aggregated into {len(cells)} binomial cells"

    def mean_unit(self, spec) -> str:
        return "%"

    def predictive_draws(self, parameter, posterior, trials, rng):
        # Bernoulli rows are cells of one trial; aggregated cells count events out of their persons.
        return binomial_draws(parameter, trials, rng)

    def ppc_statistics(self, spec, categories) -> dict[str, Statistic]:
        return {"proportion": proportion_statistic}

    def ppc_distribution(self) -> None:
        return None

    def prior_predicted_panel(self) -> None:
        return None


    def implausible_effect(self, spec, outcome) -> float:
        return IMPLAUSIBLE_PP


FAMILY = Binary()
