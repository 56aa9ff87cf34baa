"""Checks made once, when a fit is sampled, and stored with it.

A fit's draws, priors and rows never change after sampling, so the results that need the model
(PyMC and Bambi) are computed while it is built anyway and kept in the fit file as small tables:
the diagnostics verdict, the power-scaling sensitivity, the prior predictive check and the priors
as they reached the PyMC graph. Reports and answers read them from the file; a fit stored without
them computes them when asked (see each reader).
"""

from __future__ import annotations

from bayes_trial.checks.diagnose import Diagnosis, record_sensitivity, record_verdict
from bayes_trial.checks.priors import record_prior_check
from bayes_trial.sampling.fit import Fit, record_graph_priors


def record_checks(fit: Fit, diagnosis: Diagnosis) -> None:
    """Keep `diagnosis`'s verdict, the sensitivity table, the prior check and the graph's priors in `fit`.

    Call before `sampling.fit.save`, which writes them into the file.
    """
    record_verdict(fit, diagnosis)
    record_sensitivity(fit)
    record_prior_check(fit)
    record_graph_priors(fit)
