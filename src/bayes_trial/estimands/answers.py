"""One entry point for the answers of any fit, whatever its family.

A family whose answers are curves over months (`Family.over_time`, the discrete-time hazard)
answers a hypothesis per month; every other family per wave. The CLI, the report and workflows
ask here, so that no caller decides by the family's name.
"""

from __future__ import annotations

import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.core.summaries import DEFAULT_INTERVAL
from bayes_trial.estimands import curves, query
from bayes_trial.sampling.fit import Fit

#: Months at which curve answers are given unless others are asked for.
DEFAULT_MONTHS = (12, 16, 24)


def hypothesis(fit: Fit, expression: str, *, by: str | None = None, wave: int | str | None = None,
               municipality: str | None = None, rope: tuple[float, float] | None = None,
               months: list[int] | None = None, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Posterior probability of `expression` (e.g. ``"intensive - control > 2pp"``) on the outcome scale.

    Parameters
    ----------
    fit : Fit
        Any fit.
    expression : str
        An arm contrast with a comparison and a threshold in the outcome's unit.
    by, municipality : str, optional
        Answers per town (``by="municipality"``), or for one town (``"new"`` for a new town).
    wave : int or str, optional
        The survey wave (number or label such as ``t1``); for families answered per wave.
    rope : tuple of float, optional
        Region of practical equivalence; for families answered per wave.
    months : list of int, optional
        Months for families whose answers are curves over time (default 12, 16 and 24).
    interval : float
        Width of the equal-tailed interval.

    Returns
    -------
    pandas.DataFrame
        One row per month or wave (and town), with the contrast's summary and the probability.
    """
    if fit.family.over_time:
        if wave is not None:
            raise SpecError(f"model {fit.spec.name!r}: a wave applies to survey models; this fit answers by month")
        if rope is not None:
            raise SpecError(f"model {fit.spec.name!r}: a rope is not available for answers over months")
        return curves.contrast_hypothesis(fit, expression, list(months or DEFAULT_MONTHS), by=by,
                                          municipality=municipality, interval=interval)
    if months:
        raise SpecError(f"model {fit.spec.name!r}: months apply to fits whose answers are curves over time "
                        f"(this is a {fit.spec.family} model)")
    return query.hypothesis(fit, expression, by=by, wave=wave, municipality=municipality, rope=rope,
                            interval=interval)
