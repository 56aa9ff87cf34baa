"""Survey non-response: response rates by arm and wave, and the missing-at-random assumption in words.

A survey effect is valid only if the people who did not answer are like those who did with the
same arm, wave, town, consultant and answers at other waves (missing at random, MAR). No data can
test that; these functions make it visible. `response_rates` reads a fit of the response model
(`models/response.toml`, fitted to the survey padded with everyone randomised, see
`data.contract.with_nonresponse`); `mar_assumption` states the assumption for a survey fit with the
share missing per arm, from the counts stored with the fit::

    import bayes_trial as bt
    from bayes_trial.data.contract import with_nonresponse
    padded = with_nonresponse(sim.survey, sim.register)      # everyone randomised x every wave
    wellbeing = bt.sample(bt.load_spec("wellbeing"), padded)  # same posterior as on sim.survey
    print(mar_assumption(wellbeing))                          # shares missing over the randomised
    rates = response_rates(bt.sample(bt.load_spec("response"), padded))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.core.summaries import DEFAULT_INTERVAL, MIN_CELL, summarise_draws
from bayes_trial.data.contract import RESPONDED
from bayes_trial.estimands import query
from bayes_trial.modelling.frames import missing_outcomes
from bayes_trial.sampling.fit import Fit

MAR_TEXT = ("Assumes missing at random: the people who did not answer at {waves} are like those who did with the "
            "same arm, wave, town, consultant and answers at other waves.")


@dataclass(frozen=True)
class ResponseRates:
    """Response by arm x wave and each arm's differential against control.

    Attributes
    ----------
    rates : pandas.DataFrame
        arm, wave, mean, lower, upper: the response rate in %.
    differentials : pandas.DataFrame
        wave, contrast ("ARM - CONTROL"), arm, mean, lower, upper in percentage points, and
        p_lt_0: P(the arm answered less often than control).
    method : str
        Where the numbers come from, in words.
    """

    rates: pd.DataFrame
    differentials: pd.DataFrame
    method: str


def is_response_fit(fit: Fit) -> bool:
    """Whether `fit` is a fit of the response model (its outcome is `responded`)."""
    return fit.spec.outcome == RESPONDED


def has_survey_outcome(fit: Fit) -> bool:
    """Whether `fit` models a survey outcome over waves, whose answers rest on the MAR assumption."""
    return fit.spec.table == "survey" and "wave" in fit.data and not is_response_fit(fit)


def same_trial(fit: Fit, other: Fit) -> bool:
    """Whether two fits cover the same arms, waves and towns (so one's response can stand beside the other)."""
    return (sorted(map(str, query.arms(fit))) == sorted(map(str, query.arms(other)))
            and query.waves(fit) == query.waves(other) and _towns(fit) == _towns(other))


def _towns(fit: Fit) -> list[str]:
    return sorted(map(str, fit.data["municipality"].unique())) if "municipality" in fit.data else []


def response_rates(fit: Fit, interval: float = DEFAULT_INTERVAL) -> ResponseRates:
    """Posterior response rate per arm x wave, and each arm minus control, from a response-model fit.

    Rates are standardised over everyone randomised (`query.arm_means`, as `effects` are), so the
    differentials are the response model's `effects` and P(differential < 0) is the probability
    that the arm answered less often than control at that wave.

    Parameters
    ----------
    fit
        A fit of `models/response.toml` (or any spec whose outcome is `responded`).
    interval
        Width of the equal-tailed intervals.

    Raises
    ------
    SpecError
        If `fit` is not a response-model fit.
    """
    if not is_response_fit(fit):
        raise SpecError(f"response rates need a fit of the response model (outcome {RESPONDED!r}); "
                        f"model {fit.spec.name!r} has outcome {fit.spec.outcome!r}")
    control = fit.spec.control_arm
    rate_rows, contrast_rows = [], []
    for wave in query.waves(fit):
        means = query.arm_means(fit, wave=wave)
        for arm, draws in means.items():
            rate_rows.append({"arm": arm, "wave": wave, **_summary(100 * draws, interval)})
            if arm != control:
                difference = 100 * (draws - means[control])
                contrast_rows.append({"wave": wave, "contrast": f"{arm} - {control}", "arm": arm,
                                      **_summary(difference, interval), "p_lt_0": float(np.mean(difference < 0))})
    method = (f"response model {fit.spec.name!r} ({fit.prepared.formula}), response standardised over everyone "
              f"randomised; {interval:.0%} equal-tailed intervals")
    return ResponseRates(pd.DataFrame(rate_rows), pd.DataFrame(contrast_rows), method)


def _summary(draws: np.ndarray, interval: float) -> dict[str, float]:
    summary = summarise_draws(draws, interval)
    return {key: summary[key] for key in ("mean", "lower", "upper")}


def response_counts(fit: Fit) -> pd.DataFrame:
    """Who answered the fit's outcome, per arm and wave: arm, wave, n_net (rows or randomised), n_completed.

    From the counts stored with a survey fit (`missing_outcomes`); ``n_net`` counts everyone
    randomised when the survey was padded with the register (`Fit.prepared.missing_over_randomised`),
    else only the survey file's rows. Empty for fits stored without counts.
    """
    table = missing_outcomes(fit)
    return pd.DataFrame({"arm": table["arm"], "wave": table["wave"], "n_net": table["n_total"],
                         "n_completed": table["n_total"] - table["n_dropped"]})


def publishable(count: int, min_cell: int) -> bool:
    """Whether a count of persons may be shown: none, or at least `min_cell`."""
    return count == 0 or count >= min_cell


def missing_share(arm: str, missing: int, total: int, min_cell: int = MIN_CELL, of_whom: str = "") -> str:
    """'control 48% (57 of 119)'; an arm with a count under `min_cell` persons (missing, answering or all) is suppressed."""
    if total < min_cell or not (publishable(missing, min_cell) and publishable(total - missing, min_cell)):
        return f"{arm} suppressed (a count under {min_cell} persons)"
    return f"{arm} {missing / total:.0%} ({missing} of {total}{of_whom})"


def mar_assumption(fit: Fit, wave: int | list[int] | None = None, *, min_cell: int = MIN_CELL) -> str | None:
    """The missing-at-random assumption of a survey fit in one line, with the share missing per arm.

    Parameters
    ----------
    fit
        A survey-outcome fit; register outcomes and the response model itself give None.
    wave
        The wave (or waves) the answer is for; default the fit's last wave.
    min_cell
        Counts of persons under this (missing or answering) are not shown for that arm.

    Returns
    -------
    str or None
        e.g. "Assumes missing at random: the people who did not answer at wave 2 are like those who
        did with the same arm, wave, town, consultant and answers at other waves. Missing at wave 2:
        control 48% (57 of 119 randomised), self_direction 32% (36 of 111), intensive 33% (38 of 115)."
        When the survey was not padded with the register the shares count only the survey file's
        rows, and the line says that everyone randomised is unknown.
    """
    if not has_survey_outcome(fit):
        return None
    asked = query.waves(fit)[-1:] if wave is None else ([wave] if np.isscalar(wave) else list(wave))
    named = " and ".join(f"wave {w}" for w in asked) if len(asked) < 3 else "waves " + ", ".join(map(str, asked))
    table = missing_outcomes(fit)
    text = MAR_TEXT.format(waves=named)
    if table.empty:
        return f"{text} (This fit stores no counts of missing answers.)"
    over_randomised = fit.prepared.missing_over_randomised
    parts = []
    for w in asked:
        rows = table[table["wave"] == w]
        # "randomised" once, after the first arm's count, as a reader needs it said once.
        shares = ", ".join(missing_share(row.arm, int(row.n_dropped), int(row.n_total), min_cell,
                                          " randomised" if over_randomised and i == 0 else "")
                           for i, row in enumerate(rows.itertuples(index=False)))
        parts.append(f"wave {w}: {shares}")
    counted = "" if over_randomised else (" These shares count only the rows of the survey file: how many were "
                                          "randomised is unknown (fit with the register to count everyone).")
    return f"{text} Missing at {'; at '.join(parts)}.{counted}"
