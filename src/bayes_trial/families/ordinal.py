"""Ordinal items (trust, self-efficacy items on a 1-5 scale): cumulative logit with thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayes_trial.families.base import INVERSE_LINKS, Family, Statistic, mean_statistic, sd_statistic, share_statistic


class Ordinal(Family):
    """Ordered categories; answers are on the item's own values (the mean category value)."""

    name = "cumulative"
    bambi_name = "cumulative"
    link = "logit"
    simulator_scale = "ordinal"
    has_intercept = False
    # Latent logistic scale (SD pi/sqrt(3) = 1.8); thresholds keep Bambi's ordered default.
    auto_rule = {"scale": 1.0, "intercept": None, "coefficient": 0.5, "group_sd": 0.5, "aux": None}

    def outcome_values(self, spec, values: pd.Series) -> pd.Series:
        levels = sorted(pd.unique(values.astype(int)))
        return pd.Categorical(values.astype(int), categories=levels, ordered=True)

    def person_information(self, prepared) -> float:
        # Proportional odds: (1 - sum of the category shares cubed) / 3 (Whitehead 1993).
        shares = prepared.data[prepared.response].value_counts(normalize=True).to_numpy(dtype=float)
        return float((1 - np.sum(shares**3)) / 3)

    def expected_outcome(self, values, categories: np.ndarray | None):
        category_dim = [d for d in values.dims if d not in ("chain", "draw", "__obs__", "group")][0]
        weights = values[category_dim].copy(data=np.asarray(categories, dtype=float))
        return (values * weights).sum(category_dim)

    def response_parameter(self, eta, posterior, response, categories) -> xr.DataArray:
        # Bambi's cumulative family: P(Y <= k) = F(threshold_k - eta); category k's probability is the step.
        threshold = posterior["threshold"].transpose("chain", "draw", ...).to_numpy()
        below = INVERSE_LINKS[self.link](threshold[:, :, None, :] - eta[..., None])
        steps = np.concatenate([below[..., :1], np.diff(below, axis=-1), 1 - below[..., -1:]], axis=-1)
        return xr.DataArray(steps, dims=("chain", "draw", "__obs__", f"{response}_dim"),
                            coords={f"{response}_dim": categories})

    def delta_scale(self, spec) -> str:
        return "latent log-odds"

    def predictive_draws(self, parameter, posterior, trials, rng) -> np.ndarray:
        # A category position per row: the first whose cumulative probability exceeds a uniform draw.
        cumulative = np.cumsum(parameter, axis=-1)
        uniform = rng.random(parameter.shape[:-1])[..., None]
        return np.minimum((uniform >= cumulative).sum(-1), parameter.shape[-1] - 1).astype(float)

    def ppc_statistics(self, spec, categories: np.ndarray | None) -> dict[str, Statistic]:
        low, high = float(categories[0]), float(categories[-1])
        return {"mean": mean_statistic, "sd": sd_statistic,
                f"share = {low:g}": share_statistic(lambda v: v == low),
                f"share = {high:g}": share_statistic(lambda v: v == high)}

    def frequency_values(self, observed, categories, min_cell):
        levels = np.asarray(categories, dtype=float)
        return levels, [f"{v:g}" for v in levels]

    def prior_events(self, spec, predicted: np.ndarray, categories: np.ndarray | None) -> dict[str, np.ndarray]:
        # PyMC's categorical draws are category positions; report them as the outcome's values.
        return {f"predicted share in category {level}": predicted == position
                for position, level in enumerate(categories)}

    def prior_predicted_panel(self) -> str:
        return "categories"


    def implausible_effect(self, spec, outcome: np.ndarray) -> float:
        return self.bounded_implausible_effect(spec, outcome)


FAMILY = Ordinal()
