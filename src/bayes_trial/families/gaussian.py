"""Gaussian scores (wellbeing, health, ... on a 0-10 scale): identity link, residual SD `sigma`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_trial.families.base import Family, Statistic, mean_statistic, sd_statistic, share_statistic


class Gaussian(Family):
    """A score on the outcome's own scale; participant intercepts can be integrated out."""

    name = "gaussian"
    bambi_name = "gaussian"
    residual_sd = "sigma"
    simulator_scale = "score"
    integrates_participants = True
    reference = "mixedlm"
    # Intercept: the control mean in the reference town within about one outcome SD of the observed mean.
    # The outcome's SD already holds every variance component, so each group SD gets a quarter of it
    # (a Student-t(3) tail still allows one component to take most of it); with 0.5 the prior
    # predictive of nl7's wellbeing put 13% outside 0-10, with 0.25 8% (sigma still Exponential).
    auto_rule = {"scale": "sd", "intercept": ("mean", 0.5), "coefficient": 0.5, "group_sd": 0.25,
                 "aux": ("sigma", "Exponential")}

    def person_information(self, prepared) -> float:
        # 1 / residual variance; the outcome's variance holds every component, so this errs towards non-centred.
        return 1 / max(float(np.var(prepared.data[prepared.response].to_numpy(dtype=float), ddof=1)), 1e-12)

    def latent_variance(self, posterior, outcome: pd.Series) -> np.ndarray:
        return posterior["sigma"].to_numpy().ravel() ** 2

    def mean_shifts(self, eta, deltas, weights, posterior, response, categories) -> np.ndarray:
        # Identity link: shifting every outcome by delta shifts their mean by exactly delta, whatever eta is.
        return np.broadcast_to(np.asarray(deltas, dtype=float), (*eta.shape[:2], len(deltas))).copy()

    def delta_scale(self, spec) -> str:
        return spec.outcome_unit

    def predictive_draws(self, parameter, posterior, trials, rng) -> np.ndarray:
        sigma = posterior["sigma"].transpose("chain", "draw").to_numpy()[..., None]
        return rng.normal(parameter, sigma)

    def ppc_statistics(self, spec, categories: np.ndarray | None) -> dict[str, Statistic]:
        found = {"mean": mean_statistic, "sd": sd_statistic}
        low, high = spec.bounds
        if low is not None:
            found[f"share <= {low:g}"] = share_statistic(lambda v: v <= low)
        if high is not None:
            found[f"share >= {high:g}"] = share_statistic(lambda v: v >= high)
        return found

    def ppc_distribution(self) -> str:
        return "density"

    def prior_events(self, spec, predicted: np.ndarray, categories: np.ndarray | None) -> dict[str, np.ndarray]:
        lower, upper = spec.bounds
        if lower is None and upper is None:
            return {}
        low = -np.inf if lower is None else lower
        high = np.inf if upper is None else upper
        return {f"predicted share outside {low:.4g}-{high:.4g}": (predicted < low) | (predicted > high)}


    def implausible_effect(self, spec, outcome: np.ndarray) -> float:
        return self.bounded_implausible_effect(spec, outcome)


FAMILY = Gaussian()
