"""Sampling, stored fits and parameter recovery against simulated truth."""

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.estimands import query

from conftest import FAST


def _interval(values, width=0.9):
    tail = (1 - width) / 2
    return np.quantile(np.asarray(values).ravel(), [tail, 1 - tail])


@pytest.fixture(scope="module")
def recovery():
    sim = bt.simulate(bt.load_design("recovery"), seed=6)  # seed 5 put the town SD (0.4) just outside: 0.388
    fit = bt.sample(bt.load_spec("outflow"), sim.register, progress=False, draws=600, tune=600, chains=2, seed=5)
    return sim.truth["outflow"], fit


def test_outflow_recovers_arm_effects_and_consultant_and_town_sds(recovery):
    truth, fit = recovery
    posterior = fit.idata.posterior
    for arm, log_odds_ratio in truth["log_odds_ratio"].items():
        lower, upper = _interval(posterior["arm"].sel(arm_dim=arm))
        assert lower < log_odds_ratio < upper, (arm, lower, log_odds_ratio, upper)
    lower, upper = _interval(posterior["1|municipality:consultant_id_sigma"])
    assert lower < truth["consultant_sd"] < upper
    lower, upper = _interval(posterior["1|municipality_sigma"])
    assert lower < truth["town_sd"] < upper


def test_effects_are_reported_in_percentage_points(recovery):
    # The true log-odds ratios are conditional on town and consultant effects, so the nominal
    # probabilities are not the population-averaged contrast; in a randomised trial the observed
    # difference in proportions is an unbiased estimate of it and should lie inside the interval.
    _, fit = recovery
    table = bt.effects(fit).set_index("contrast")
    assert set(table["unit"]) == {"pp"}
    cells = fit.data.groupby("arm", observed=True)[["outflow_work", "n_trials"]].sum()
    proportion = cells["outflow_work"] / cells["n_trials"]
    observed_pp = 100 * (proportion["intensive"] - proportion["control"])
    row = table.loc["intensive - control"]
    assert row["lower"] < observed_pp < row["upper"]
    assert row["upper"] - row["lower"] < 20


def test_binomial_cells_and_person_rows_give_the_same_posterior(small_sim, outflow_fit):
    spec = bt.load_spec("outflow")
    person_spec = bt.spec.spec_from_dict({**spec.to_dict(), "aggregate": False})
    person_fit = bt.sample(person_spec, small_sim.register, progress=False, **FAST)
    assert not person_fit.prepared.aggregated and outflow_fit.prepared.aggregated
    for name in ("Intercept", "arm", "1|municipality:consultant_id_sigma"):
        a = outflow_fit.idata.posterior[name]
        b = person_fit.idata.posterior[name]
        mcse = np.hypot(az.mcse(outflow_fit.idata, var_names=[name])[name].to_numpy().ravel(),
                        az.mcse(person_fit.idata, var_names=[name])[name].to_numpy().ravel())
        difference = np.abs(a.mean(("chain", "draw")).to_numpy().ravel() - b.mean(("chain", "draw")).to_numpy().ravel())
        assert np.all(difference < 4 * mcse + 1e-3), (name, difference, mcse)


def test_stored_fit_round_trips_and_refits_without_the_spec_file(outflow_fit, outflow_fit_path):
    loaded = bt.load(outflow_fit_path)
    assert loaded.spec == outflow_fit.spec
    assert loaded.info["data_hash"] == outflow_fit.info["data_hash"]
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(loaded.idata.groups())
    np.testing.assert_allclose(query.effects(loaded)["mean"], query.effects(outflow_fit)["mean"])
    refitted = bt.refit(loaded, priors={"arm": bt.parse_prior("Normal(0, 0.1)")}, progress=False, **FAST)
    assert refitted.spec.priors["arm"].params["sigma"] == 0.1
    # a tighter prior on the log-odds ratios pulls the contrasts towards zero
    assert refitted.idata.posterior["arm"].std() < loaded.idata.posterior["arm"].std()


def test_same_data_spec_and_seed_give_identical_numbers(outflow_fit):
    again = bt.refit(outflow_fit, progress=False, **FAST)
    for name in outflow_fit.idata.posterior.data_vars:
        np.testing.assert_array_equal(again.idata.posterior[name].to_numpy(), outflow_fit.idata.posterior[name].to_numpy())


def test_a_survey_model_stores_its_estimands(wellbeing_fit):
    table = bt.effects(wellbeing_fit)
    assert set(table["wave"]) == {0, 1}
    assert set(table["unit"]) == {"points"}
    components = bt.variance_components(wellbeing_fit).set_index("parameter")
    assert "SD residual" in components.index and "consultant share of variance" in components.index


@pytest.mark.parametrize("fixture", ["outflow_fit_path", "wellbeing_fit_path"])
def test_stored_consultant_effects_are_the_observed_consultants_only(fixture, request):
    """Binomial cells and the collapsed Gaussian path alike: no town x consultant pair that no one has."""
    fit = bt.load(request.getfixturevalue(fixture))
    observed = set(fit.data["municipality"].astype(str) + ":" + fit.data["consultant_id"].astype(str))
    levels = fit.idata.posterior["1|municipality:consultant_id"]["municipality:consultant_id__factor_dim"].to_numpy()
    assert sorted(map(str, levels)) == sorted(observed)
    assert np.isfinite(fit.idata.posterior["1|municipality:consultant_id"]).all()


def test_consultant_caterpillar_shows_each_observed_consultant_once(outflow_fit):
    from bayes_trial.plots import figures

    table = figures.consultant_effects(outflow_fit)
    observed = outflow_fit.data[["municipality", "consultant_id"]].drop_duplicates()
    assert len(table) == len(observed) and table["consultant"].is_unique
    no_contact = table[table["consultant"].str.contains("no consultant")]
    assert len(no_contact) == (observed["consultant_id"].str.startswith("none:")).sum() > 0
    assert set(no_contact["arm"]) == {"exemption"}


def test_expected_response_without_the_participant_design_equals_the_full_models(wellbeing_fit):
    """On the fast Gaussian path predictions leave Bambi's dense participant term out and add the
    intercepts from the posterior: the same means as the full model's prediction."""
    from bayes_trial.sampling.fit import expected_response

    assert "1|participant_id" not in wellbeing_fit.mean_model.components["mu"].terms
    rows = wellbeing_fit.data.sample(40, random_state=1)
    rows = pd.concat([rows, rows.iloc[::-1]], ignore_index=True)  # repeated patterns, in another order
    ours = expected_response(wellbeing_fit, wellbeing_fit.idata, rows).to_numpy()
    full = wellbeing_fit.model.predict(wellbeing_fit.idata, kind="response_params", data=rows,
                                       inplace=False).posterior["mu"].to_numpy()
    np.testing.assert_allclose(ours, full, rtol=1e-9, atol=1e-9)
