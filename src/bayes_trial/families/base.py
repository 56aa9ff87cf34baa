"""The `Family` interface: everything the workbench needs to know about one kind of outcome.

A family is one object (see `registry`); the layers above ask it instead of comparing family
names. Methods have one signature for every family, so a new family is one module that subclasses
`Family` and overrides what differs, plus one line in the registry (or `registry.register`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

#: Column of model rows that holds the number of binomial trials (persons or persons at risk).
TRIALS = "n_trials"

#: Default implausible effects: 30 pp for probabilities; 30% of a bounded score's or item's range
#: (3 points on 0-10); twice the outcome's SD otherwise (counts).
IMPLAUSIBLE_PP = 30.0
IMPLAUSIBLE_RANGE_SHARE = 0.3
IMPLAUSIBLE_SDS = 2.0

#: Smallest distance of a probability from 0 and 1, as Bambi keeps its inverse-logit results.
_UNIT_EPS = np.finfo(float).eps


def expit(eta: np.ndarray) -> np.ndarray:
    """The inverse logit, kept inside (0, 1) as Bambi's `expit` keeps it (no SciPy import)."""
    return np.clip(1 / (1 + np.exp(-eta)), _UNIT_EPS, 1 - _UNIT_EPS)


#: Each link's inverse: from the linear predictor to the likelihood's parent parameter.
INVERSE_LINKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"identity": lambda eta: eta, "logit": expit,
                                                                  "log": np.exp}

#: A posterior predictive test statistic: (replicated or observed values [..., rows], weights [rows]) -> [...].
Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PreparedData:
    """Model-ready data and how they relate to the spec."""

    data: pd.DataFrame
    formula: str
    family: str
    response: str
    aggregated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    dropped_factors: tuple[str, ...] = field(default_factory=tuple)
    #: Rows left out for a missing outcome: (arm, wave or None, n_dropped, n_total) per arm and wave.
    missing: tuple[tuple, ...] = field(default_factory=tuple)
    #: The survey was padded with everyone randomised (`data.contract.with_nonresponse`): `missing`
    #: counts non-response over the randomised, not only over the rows of the survey file.
    missing_over_randomised: bool = False

    @property
    def weights(self) -> np.ndarray:
        """Persons behind each row: the binomial trials for aggregated cells, else one."""
        if self.aggregated:
            return self.data[TRIALS].to_numpy(dtype=float)
        return np.ones(len(self.data))


def mean_statistic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over rows (rows of one person each)."""
    return values.mean(-1)


def sd_statistic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Standard deviation over rows (rows of one person each)."""
    return values.std(-1, ddof=1)


def proportion_statistic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Events over persons: `values` are event counts of rows with `weights` persons each."""
    return values.sum(-1) / weights.sum()


def binomial_draws(probability: np.ndarray, trials: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Events out of `trials` per row (one trial: a Bernoulli draw) at each draw's `probability`."""
    return rng.binomial(np.asarray(trials, dtype=np.int64), probability).astype(float)


def share_statistic(event: Callable[[np.ndarray], np.ndarray]) -> Statistic:
    """The weighted share of rows where `event(values)` holds."""
    return lambda values, weights: (event(values) * weights).sum(-1) / weights.sum()


class Family:
    """One outcome family. Subclasses set the class attributes and override the methods that differ.

    Attributes
    ----------
    name : str
        The name a spec's ``family`` gives (``models/*.toml``).
    bambi_name : str
        The Bambi family the model rows are fitted with (before binomial aggregation).
    link : str
        Link function of the linear predictor (``identity``, ``logit``, ``log``).
    unit : str
        Unit of effects on the outcome scale when the spec sets none (``points`` or ``pp``).
    scale : float
        Factor from the expected outcome to the reported unit (100 for probabilities in pp).
    residual_sd : str or None
        Posterior variable of the observation-level SD (``sigma``), if the family has one.
    simulator_scale : str or None
        The survey-outcome ``scale`` of simulator designs that this family fits (``score``, ...).
    over_time : bool
        Answers are curves over months (discrete-time hazard) rather than arm contrasts.
    integrates_participants : bool
        Participant intercepts can be integrated out analytically (Gaussian only).
    prior_checkable : bool
        `prior-check` can draw this family's prior predictive outcomes.
    reference : str or None
        Frequentist reference estimate used by recovery runs (``mixedlm``, ``glm``) or None.
    has_intercept : bool
        The linear predictor has an intercept (ordinal models have thresholds instead).
    cells_bambi_name : str
        The Bambi family of rows aggregated by `aggregate` (counts of events over trials).
    auto_rule : dict or None
        How `auto` priors are scaled (`modelling.autoprior`): ``scale`` (``"sd"``, the outcome's SD,
        or a number: one unit on the link scale), ``intercept`` ((location, multiplier), location
        ``mean``, ``log_mean``, ``logit_mean`` or 0; None without an intercept), ``coefficient``
        (multiplier; divided by SD(x) for a numeric predictor), ``group_sd`` (HalfStudentT(3,
        multiplier x scale)) and ``aux`` ((parameter, distribution) or None). None: Bambi's defaults.
    """

    name: str = ""
    bambi_name: str = ""
    link: str = "identity"
    unit: str = "points"
    scale: float = 1.0
    residual_sd: str | None = None
    simulator_scale: str | None = None
    over_time: bool = False
    integrates_participants: bool = False
    prior_checkable: bool = True
    reference: str | None = None
    has_intercept: bool = True
    cells_bambi_name: str = "binomial"
    auto_rule: dict | None = None

    def __repr__(self) -> str:
        return f"<Family {self.name}>"

    # -- data ---------------------------------------------------------------------------------
    def check_table(self, spec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
        """The table the model rows are taken from (a family may demand and validate columns)."""
        return frame

    def row_columns(self, columns: list[str]) -> tuple[list[str], tuple[str, ...]]:
        """Columns of the model rows (checked for completeness) and columns carried unchecked."""
        return columns, ()

    def outcome_values(self, spec, values: pd.Series) -> pd.Series:
        """The outcome column coded for the model; a wrong value is a `DataError`."""
        return values.astype(float)

    def aggregate(self, spec, data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, str] | None:
        """Model rows aggregated into binomial cells and a note, or None to fit the rows as they are."""
        return None

    # -- answers ------------------------------------------------------------------------------
    def mean_unit(self, spec) -> str:
        """Unit of an arm's mean outcome as printed (a percentage for probabilities)."""
        return spec.outcome_unit

    def effect_label(self, spec) -> str:
        """Scale of group effects (link scale), for axis labels."""
        return {"identity": spec.outcome_unit, "logit": "log-odds"}.get(self.link, f"{self.link} scale")

    def expected_outcome(self, values, categories: np.ndarray | None):
        """Expected outcome from Bambi's expected response (an xarray DataArray over chain, draw, rows).

        Families whose response is a distribution over categories reduce it to the mean value.
        """
        return values

    def response_parameter(self, eta: np.ndarray, posterior, response: str,
                           categories: np.ndarray | None) -> xr.DataArray:
        """The likelihood's parent parameter (a mean, probability or category probabilities) per row and draw.

        Parameters
        ----------
        eta
            Draws of the linear predictor, an array (chain, draw, rows) (`sampling.predictor`).
        posterior
            The posterior the draws come from (thresholds, for families that have them).
        response
            The outcome's name in the model (names a category dimension).
        categories
            The outcome's categories, for families with a distribution over categories.

        Returns
        -------
        xarray.DataArray
            Dims chain, draw, ``__obs__`` (and a category dimension): the numbers of Bambi's
            ``predict(kind="response_params")``.
        """
        return xr.DataArray(INVERSE_LINKS[self.link](eta), dims=("chain", "draw", "__obs__"))

    def mean_shifts(self, eta: np.ndarray, deltas: np.ndarray, weights: np.ndarray, posterior, response: str,
                    categories: np.ndarray | None) -> np.ndarray:
        """How far shifting the linear predictor by each delta moves the mean expected outcome, per draw.

        The delta-adjusted (pattern-mixture) sensitivity analysis (`estimands.sensitivity`) shifts
        imputed outcomes on this scale: the weighted mean over rows of
        E(y | eta + delta) − E(y | eta), on the outcome scale (a probability, a count, an item value).

        Parameters
        ----------
        eta
            Draws of the linear predictor, an array (chain, draw, rows).
        deltas
            Shifts on the link (latent) scale, one dimensional.
        weights
            Each row's weight in the mean (summing to 1).
        posterior, response, categories
            As for `response_parameter`.

        Returns
        -------
        numpy.ndarray
            (chain, draw, delta); exactly 0 where delta is 0.
        """
        def expected(values: np.ndarray) -> np.ndarray:
            parameter = self.response_parameter(values, posterior, response, categories)
            return np.asarray(self.expected_outcome(parameter, categories).transpose("chain", "draw", "__obs__"))

        base = expected(eta) @ weights
        shifts = np.zeros((*eta.shape[:2], len(deltas)))
        for i, delta in enumerate(deltas):
            if delta != 0:
                shifts[..., i] = expected(eta + delta) @ weights - base
        return shifts

    def delta_scale(self, spec) -> str:
        """The scale a sensitivity analysis' delta is on (see `mean_shifts`), for output and axis labels."""
        return self.effect_label(spec)

    def person_information(self, prepared: PreparedData) -> float:
        """Expected Fisher information about the linear predictor from one person (or row of one), at the pooled outcome.

        What `modelling.parametrisation` weighs a group level's persons by. Logit link on events out of
        trials: p (1 - p) at the pooled rate p.
        """
        rate = float(prepared.data[prepared.response].to_numpy(dtype=float).sum() / prepared.weights.sum())
        return rate * (1 - rate)

    def latent_variance(self, posterior, outcome: pd.Series) -> np.ndarray | float:
        """Observation-level variance on the latent (link) scale, for variance shares."""
        return math.pi**2 / 3

    # -- checks -------------------------------------------------------------------------------
    def predictive_draws(self, parameter: np.ndarray, posterior: xr.Dataset, trials: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
        """Replicated outcomes drawn from the likelihood, as Bambi's ``predict(kind="response")`` draws them.

        Parameters
        ----------
        parameter
            The likelihood's parent parameter, an array (chain, draw, rows[, category]): the numbers
            of `sampling.fit.expected_response`.
        posterior
            The posterior the parameter comes from, with the same chains and draws (for ``sigma``, ``alpha``).
        trials
            Persons behind each row (`PreparedData.weights`): binomial trials of aggregated cells, else one.
        rng
            The random generator.

        Returns
        -------
        numpy.ndarray
            Draws (chain, draw, rows) on the scale of the observed data (category positions 0..K-1
            for families with categories).
        """
        raise NotImplementedError(f"family {self.name!r} has no posterior predictive draws")

    def ppc_statistics(self, spec, categories: np.ndarray | None) -> dict[str, Statistic]:
        """Posterior predictive test statistics, by name."""
        return {"mean": mean_statistic, "sd": sd_statistic}

    def ppc_distribution(self) -> str | None:
        """How the observed distribution is drawn against replicates: ``density``, ``frequencies`` or None."""
        return "frequencies"

    def frequency_values(self, observed: np.ndarray, categories: np.ndarray | None, min_cell: int
                         ) -> tuple[np.ndarray, list[str]]:
        """Values to count in the frequency figure; the top value pools the tail (at least `min_cell`)."""
        ordered = np.sort(observed)[::-1]
        cap = int(ordered[min(min_cell, len(ordered)) - 1])
        values = np.arange(0, cap + 1, dtype=float)
        return values, [f"{v:g}" for v in values[:-1]] + [f"≥{cap}"]

    def square_root_axis(self) -> bool:
        """Draw frequencies on a square-root axis (a rootogram), so rare large counts stay visible."""
        return False

    def prior_events(self, spec, predicted: np.ndarray, categories: np.ndarray | None) -> dict[str, np.ndarray]:
        """Events on prior-predicted outcomes whose share the prior check reports, by label."""
        return {}

    def prior_predicted_panel(self) -> str | None:
        """The prior check's third panel: ``histogram`` of predicted outcomes, ``categories``, or None."""
        return "histogram"

    def implausible_effect(self, spec, outcome: np.ndarray) -> float:
        """The effect size (outcome unit) a prior should make unlikely, when the spec states none.

        Twice the outcome's SD (rounded to two digits); families with a bounded or probability
        scale override it.
        """
        return float(f"{IMPLAUSIBLE_SDS * np.std(outcome, ddof=1):.2g}")

    def bounded_implausible_effect(self, spec, outcome: np.ndarray) -> float:
        """30% of the range of a score or item bounded at both ends, else `Family.implausible_effect`."""
        lower, upper = spec.bounds
        if lower is not None and upper is not None:
            return IMPLAUSIBLE_RANGE_SHARE * (upper - lower)
        return Family.implausible_effect(self, spec, outcome)

    def fields(self) -> dict[str, Any]:
        """The class attributes, for documentation and `bayes-trial families`."""
        return {k: getattr(self, k) for k in ("name", "bambi_name", "link", "unit", "scale", "residual_sd",
                                               "simulator_scale", "over_time", "integrates_participants",
                                               "prior_checkable", "reference", "has_intercept")}
