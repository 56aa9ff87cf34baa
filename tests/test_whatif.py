"""Prior what-ifs: PSIS against ArviZ, prior densities against PyMC, weighted summaries, and re-weighted
answers against real refits (on the session's small outflow fit)."""

import numpy as np
import pytest
from scipy import stats

import bayes_trial as bt
from bayes_trial.cli import commands as cli
from bayes_trial.core.errors import SpecError
from bayes_trial.core.summaries import summarise_draws, weighted_quantile
from bayes_trial.estimands import query, whatif
from bayes_trial.modelling.spec import DISTRIBUTIONS, parse_prior

HYPOTHESIS = "intensive - control > 0"


def _log_ratio_vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=2000)
    return {
        "light tail": rng.normal(size=1000),
        "lognormal": 1.5 * rng.normal(size=500),
        # Draws of N(0, 1) re-weighted to N(0, 3): unbounded ratios, heavy tail.
        "wider target": stats.norm.logpdf(x, 0, 3) - stats.norm.logpdf(x),
        "narrower target": stats.norm.logpdf(x, 0.5, 0.3) - stats.norm.logpdf(x),
        # Ratios from a Pareto distribution of shape 0.9: k-hat should find it.
        "pareto 0.9": -0.9 * np.log(rng.uniform(size=1000)),
    }


@pytest.mark.parametrize("name", list(_log_ratio_vectors()))
def test_psis_gives_arvizs_log_weights_and_khat(name):
    az = pytest.importorskip("arviz")
    log_ratios = _log_ratio_vectors()[name]
    expected, expected_khat = az.psislw(log_ratios.copy())
    smoothed, khat = whatif.psis(log_ratios)
    assert khat == pytest.approx(float(expected_khat), abs=1e-12)
    np.testing.assert_allclose(smoothed, expected, rtol=0, atol=1e-10)
    assert np.exp(smoothed).sum() == pytest.approx(1.0)


def test_psis_khat_orders_the_vectors_by_tail_weight():
    khats = {name: whatif.psis(v)[1] for name, v in _log_ratio_vectors().items()}
    assert khats["narrower target"] < 0 < khats["light tail"] < khats["wider target"] < 0.7
    assert khats["pareto 0.9"] == pytest.approx(0.9, abs=0.15)


def test_psis_of_equal_ratios_is_equal_weights_without_a_tail():
    smoothed, khat = whatif.psis(np.full(600, 3.2))
    assert khat == -np.inf
    np.testing.assert_array_equal(np.exp(smoothed), np.full(600, np.exp(smoothed[0])))
    assert np.exp(smoothed).sum() == pytest.approx(1.0)


PRIORS = ["Normal(0.3, 0.5)", "StudentT(3, 0.1, 0.5)", "Cauchy(0.2, 0.7)", "Logistic(0.1, 0.4)", "HalfNormal(0.7)",
          "HalfStudentT(3, 0.5)", "HalfCauchy(0.4)", "Exponential(2)", "Gamma(2, 3)", "InverseGamma(3, 2)",
          "LogNormal(-1, 0.5)", "Uniform(0.1, 2)", "Beta(2, 5)"]


def test_every_spec_distribution_has_a_density():
    assert {parse_prior(text).dist for text in PRIORS} == set(DISTRIBUTIONS)


@pytest.mark.parametrize("text", PRIORS)
def test_prior_density_is_pymcs(text):
    pm = pytest.importorskip("pymc")
    prior = parse_prior(text)
    x = np.array([0.05, 0.3, 0.9, 1.7])
    expected = pm.logp(getattr(pm, prior.dist).dist(**prior.params), x).eval()
    # PyTensor's special functions agree with SciPy's to about 1e-7.
    np.testing.assert_allclose(whatif.prior_distribution(prior).logpdf(x), expected, rtol=1e-6)


def test_weighted_summary_with_equal_weights_is_the_unweighted_one():
    draws = np.random.default_rng(2).normal(0.4, 1.3, size=999)
    plain = summarise_draws(draws, 0.8)
    weighted = summarise_draws(draws, 0.8, weights=np.full(draws.size, 3.0))
    assert weighted == pytest.approx(plain, rel=1e-12, abs=1e-12)


def test_weighted_summary_uses_the_weights():
    draws = np.array([-1.0, 1.0, 2.0])
    summary = summarise_draws(draws, weights=np.array([2.0, 1.0, 1.0]))
    assert summary["mean"] == pytest.approx(0.25)
    assert summary["p_gt_0"] == pytest.approx(0.5)
    # Positions 0, 2/3, 1: the median lies three quarters of the way from -1 to 1.
    assert summary["median"] == pytest.approx(0.5)
    # A draw of weight 0 is not in the distribution.
    assert weighted_quantile(draws, [0.0, 1.0], np.array([0.0, 1.0, 1.0])).tolist() == [1.0, 2.0]


def test_unchanged_prior_gives_equal_weights_and_the_old_answers_exactly(outflow_fit):
    used = outflow_fit.used_spec.priors["arm"]
    weighted = whatif.prior_weights(outflow_fit, {"arm": parse_prior(str(used))})
    draws = weighted.weights.size
    np.testing.assert_array_equal(weighted.weights, np.full(draws, weighted.weights[0]))
    assert weighted.ess == pytest.approx(draws)
    table = whatif.what_if(outflow_fit, {"arm": used}, [HYPOTHESIS, "exemption - control > 1pp"], progress=False)
    assert table["method"].tolist() == ["unchanged", "unchanged"]
    for key in ("p", "mean", "lower", "upper"):
        assert table[f"{key}_new"].tolist() == table[f"{key}_old"].tolist()
    assert table["p_old"].iloc[0] == bt.hypothesis(outflow_fit, HYPOTHESIS)["p_hypothesis"].iloc[0]


def test_log_weights_change_only_the_terms_given(outflow_fit):
    sd_prior = parse_prior("HalfNormal(0.2)")
    old = outflow_fit.used_spec.priors["1|municipality"]
    sd = outflow_fit.idata.posterior["1|municipality_sigma"].to_numpy().ravel()
    expected = whatif.prior_distribution(sd_prior).logpdf(sd) - whatif.prior_distribution(old).logpdf(sd)
    np.testing.assert_allclose(whatif.log_weights(outflow_fit, {"1|municipality": sd_prior}), expected)
    arm = outflow_fit.idata.posterior["arm"].to_numpy().reshape(sd.size, -1)
    arm_prior = parse_prior("Normal(0, 0.25)")
    both = whatif.log_weights(outflow_fit, {"1|municipality": sd_prior, "arm": arm_prior})
    arm_part = (stats.norm(0, 0.25).logpdf(arm) - whatif.prior_distribution(outflow_fit.used_spec.priors["arm"]).logpdf(arm)).sum(axis=1)
    np.testing.assert_allclose(both, expected + arm_part)


@pytest.mark.parametrize(("priors", "message"), [
    ({"arms": "Normal(0, 0.5)"}, "prior for unknown term 'arms'; terms of this fit"),
    ({"1|municipality": "Normal(0, 0.5)"}, "is a standard deviation or dispersion, so its prior must be positive"),
])
def test_bad_what_if_priors_are_one_line_errors(outflow_fit, priors, message):
    with pytest.raises(SpecError, match=message):
        whatif.what_if(outflow_fit, {t: parse_prior(p) for t, p in priors.items()}, progress=False)


def _contrast(fit):
    parsed = query.parse_hypothesis(HYPOTHESIS, query.arms(fit), fit.spec.outcome_unit)
    return query.contrast_draws(fit, parsed, query.population(fit), None) * query.scale_factor(fit)


def test_small_prior_change_reweighted_agrees_with_a_refit(outflow_fit):
    az = pytest.importorskip("arviz")
    priors = {"arm": parse_prior("Normal(0, 0.25)")}  # fitted with Normal(0, 0.5)
    table = whatif.what_if(outflow_fit, priors, [HYPOTHESIS], refit_if_needed=False, progress=False).iloc[0]
    assert table["khat"] < 0.7
    refitted = bt.refit(outflow_fit, priors=priors, progress=False)
    new = _contrast(refitted)
    posterior = refitted.idata.posterior
    chains = new.reshape(posterior.sizes["chain"], posterior.sizes["draw"])
    mcse_refit = az.mcse(chains, method="mean").item()
    old = _contrast(outflow_fit)
    weights = whatif.prior_weights(outflow_fit, priors).weights
    mcse_reweighted = np.sqrt(np.sum(weights**2 * (old - table["mean_new"]) ** 2))
    difference = abs(table["mean_new"] - new.mean())
    assert difference < 3 * np.hypot(mcse_refit, mcse_reweighted)
    # The weights carry the new prior: the answer is the weighted mean of the old draws, and the tighter
    # prior shifts weight to draws with smaller arm effects (weights fall with the sum of squared effects).
    assert table["mean_new"] == pytest.approx(np.sum(weights * old))
    squares = (outflow_fit.posterior["arm"].values ** 2).reshape(len(weights), -1).sum(axis=1)
    assert np.sum(weights * squares) < 0.95 * squares.mean()
    assert table["p_new"] == pytest.approx(np.mean(new > 0), abs=0.08)
    # The same weights through `hypothesis` give the same answer.
    assert bt.hypothesis(outflow_fit, HYPOTHESIS, weights=weights)["mean"].iloc[0] == pytest.approx(table["mean_new"])


def test_drastic_prior_change_raises_khat_and_refits(outflow_fit):
    priors = {"arm": parse_prior("Normal(0.5, 0.1)")}
    assert whatif.prior_weights(outflow_fit, priors).khat > 0.7
    table = whatif.what_if(outflow_fit, priors, [HYPOTHESIS], progress=False).iloc[0]
    assert table["method"] == "refit" and table["khat"] > 0.7
    refitted = bt.refit(outflow_fit, priors=priors, progress=False)  # same seed: the same draws
    assert table["mean_new"] == pytest.approx(float(_contrast(refitted).mean()), rel=1e-9)
    assert table["p_new"] > table["p_old"]


def test_cli_what_if_prints_old_and_new_answers_and_refuses_bad_priors(outflow_fit_path, capsys):
    assert cli.main(["what-if", str(outflow_fit_path), "--prior", "arm=Normal(0, 0.25)", HYPOTHESIS]) == 0
    out = capsys.readouterr().out
    assert "(fitted with Normal(mu=0, sigma=0.5))" in out and "Pareto k-hat" in out
    assert HYPOTHESIS in out and "P what-if" in out
    for prior, message in (("arms=Normal(0, 0.5)", "unknown term 'arms'"), ("arm=Norml(0, 1)", "unknown distribution 'Norml'")):
        assert cli.main(["what-if", str(outflow_fit_path), "--prior", prior]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
