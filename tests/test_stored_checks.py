"""Reports from a stored fit without PyMC or Bambi: posterior predictive draws in numpy against Bambi's,
checks stored with the fit at fit time (and recomputed for fits without them), and a report process
that imports neither."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayes_trial as bt
from bayes_trial.checks import diagnose, ppc, priors
from bayes_trial.checks.records import record_checks
from bayes_trial.families import registry
from bayes_trial.sampling.build import pymc_priors
from bayes_trial.sampling.fit import expected_response, graph_priors

SAMPLES = (1, 4000)


def posterior(**variables: float) -> xr.Dataset:
    return xr.Dataset({name: (("chain", "draw"), np.full(SAMPLES, value)) for name, value in variables.items()})


def draws_of(family: str, parameter: np.ndarray, trials=None, **variables: float) -> np.ndarray:
    rows = parameter.shape[2]
    trials = np.ones(rows) if trials is None else trials
    return registry.get(family).predictive_draws(parameter, posterior(**variables), trials, np.random.default_rng(1))


def test_gaussian_draws_have_the_row_mean_and_sigma():
    mean = np.broadcast_to(np.array([2.0, 7.0]), (*SAMPLES, 2))
    values = draws_of("gaussian", mean, sigma=1.5)
    np.testing.assert_allclose(values.mean(axis=(0, 1)), [2.0, 7.0], atol=0.1)
    np.testing.assert_allclose(values.std(axis=(0, 1)), [1.5, 1.5], rtol=0.05)


@pytest.mark.parametrize("family", ["bernoulli", "hazard"])
def test_binomial_families_count_events_out_of_each_rows_trials(family):
    p = np.broadcast_to(np.array([0.1, 0.6, 0.3]), (*SAMPLES, 3))
    trials = np.array([1, 20, 50])
    values = draws_of(family, p, trials)
    assert values.max(axis=(0, 1))[0] == 1 and (values <= trials).all() and (values == np.round(values)).all()
    np.testing.assert_allclose(values.mean(axis=(0, 1)), trials * p[0, 0], rtol=0.05)


def test_negative_binomial_draws_have_pymcs_mean_and_variance():
    mu, alpha = 4.0, 2.0
    values = draws_of("negativebinomial", np.full((*SAMPLES, 1), mu), alpha=alpha)
    assert values.mean() == pytest.approx(mu, rel=0.05)
    assert values.var() == pytest.approx(mu + mu**2 / alpha, rel=0.1)  # PyMC's NegativeBinomial(mu, alpha)


def test_ordinal_draws_are_category_positions_at_their_probabilities():
    probabilities = np.broadcast_to(np.array([0.1, 0.2, 0.4, 0.3]), (*SAMPLES, 2, 4))
    values = draws_of("cumulative", probabilities)
    assert values.shape == (*SAMPLES, 2)
    shares = [(values == k).mean() for k in range(4)]
    np.testing.assert_allclose(shares, [0.1, 0.2, 0.4, 0.3], atol=0.015)


def bambi_predictive(fit: bt.Fit, ours: ppc.Predictive) -> ppc.Predictive:
    """The replicates as the earlier code drew them: Bambi's family from the same posterior draws."""
    model = fit.mean_model
    thinned = ours.idata.posterior.copy()
    thinned[model.family.likelihood.parent] = expected_response(fit, thinned, fit.data)
    replicated = model.family.posterior_predictive(model=model, posterior=thinned, random_seed=7, data=fit.data)
    draws = replicated.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy().astype(float)
    return ppc.Predictive(ours.idata, ours.variable, draws, ours.observed, ours.weights)


@pytest.mark.parametrize("name", ["wellbeing_fit", "outflow_fit"])
def test_numpy_replicates_give_bambis_test_statistics(name, request):
    fit = request.getfixturevalue(name)
    ours = ppc.posterior_predictive(fit, max_draws=400)
    new = ppc.test_statistics(fit, ours)
    old = ppc.test_statistics(fit, bambi_predictive(fit, ours))
    pd.testing.assert_frame_equal(new[["group", "statistic", "observed"]], old[["group", "statistic", "observed"]])
    # Both draw from the same posterior draws: the statistics' means differ by Monte Carlo error only
    # (400 replicates; a 90% interval is about 3.3 SDs of the replicated statistic).
    # Shares of rare values have intervals of width 0: there one person's value is the resolution.
    error = np.maximum((old["upper"] - old["lower"]) / 3.3, 1 / old["persons"]) / np.sqrt(400)
    far = np.abs(new["predicted"] - old["predicted"]) > 5 * np.sqrt(2) * error
    assert not far.any(), pd.concat([new[far], old[far]])
    assert new["ppp"].corr(old["ppp"]) > 0.8


@pytest.fixture(scope="module")
def recorded_outflow_path(outflow_fit_path, tmp_path_factory):
    """The outflow fit as `fit` stores it now: with its checks recorded."""
    fit = bt.load(outflow_fit_path)
    record_checks(fit, diagnose.diagnose(fit))
    return bt.save(fit, tmp_path_factory.mktemp("recorded") / "outflow.nc")


def test_recorded_checks_read_back_as_computed(recorded_outflow_path, outflow_fit_path):
    recorded_outflow = bt.load(recorded_outflow_path)
    plain = bt.load(outflow_fit_path)
    assert priors.stored_prior_check(plain) is None and diagnose.stored_sensitivity(plain) is None
    stored = priors.fit_prior_check(recorded_outflow)
    computed = priors.computed_prior_check(plain)
    assert stored.verdict == computed.verdict
    pd.testing.assert_frame_equal(stored.summary.drop(columns="wave"), computed.summary.drop(columns="wave"))
    pd.testing.assert_frame_equal(diagnose.stored_sensitivity(recorded_outflow), diagnose.sensitivity(plain))
    pd.testing.assert_frame_equal(graph_priors(recorded_outflow), pymc_priors(plain.prior_models, plain.spec))
    # Another number of draws than the record's is drawn now.
    assert priors.stored_prior_check(recorded_outflow, draws=priors.REPORT_DRAWS + 1) is None


def test_report_of_a_recorded_fit_imports_neither_pymc_nor_bambi(recorded_outflow_path, tmp_path):
    code = (f"import sys\nimport bayes_trial as bt\nfrom bayes_trial import report\n"
            f"paths = report.report([bt.load({str(recorded_outflow_path)!r})], {str(tmp_path)!r})\n"
            f"print('HEAVY', sorted(m for m in ('pymc', 'bambi', 'pytensor') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rpartition("HEAVY")[2].strip() == "[]"
    page = (tmp_path / "report.md").read_text()
    # The prior check and the priors table come from the record.
    recorded = bt.load(recorded_outflow_path)
    assert priors.fit_prior_check(recorded).verdict.format()[1:] in page
    assert all(term in page for term in graph_priors(recorded)["term"])
