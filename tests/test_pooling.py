"""Aggregate-data pooling (Rubin model and binomial counts model), validated on eight schools.

Reference values for eight schools are computed here by quadrature (exact up to the grid): given
(mu, tau) the school effects integrate out, estimate_j ~ Normal(mu, se_j² + tau²). They agree with
the published posteriors (BDA3 §5.5 for the flat prior; mu ≈ 4.4, tau mean ≈ 3.6 for the
Normal(0, 5) / HalfCauchy(5) prior of the Stan and PyMC eight-schools examples).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_trial.aggregate import pooling
from bayes_trial.core.errors import DataError, SpecError
from bayes_trial.aggregate.published import load_published

STAN_PRIOR = {"mu": "Normal(0, 5)", "tau": "HalfCauchy(5)"}
SAMPLING = {"draws": 1000, "tune": 1000, "chains": 4}


def exact_eight_schools(effects: pd.DataFrame, log_prior) -> dict[str, float]:
    """Posterior mean of mu, median of tau and mean of school A's effect, by grid quadrature."""
    y, se = effects["estimate"].to_numpy(float), effects["se"].to_numpy(float)
    mu, tau = np.meshgrid(np.linspace(-40, 50, 901), np.linspace(1e-6, 80, 2001), indexing="ij")
    log_post = log_prior(mu, tau) + sum(stats.norm.logpdf(y_j, mu, np.sqrt(s_j**2 + tau**2)) for y_j, s_j in zip(y, se))
    weight = np.exp(log_post - log_post.max())
    weight /= weight.sum()
    tau_cdf = np.cumsum(weight.sum(axis=0))
    precision = 1 / se[0] ** 2, 1 / tau**2
    theta_a = (y[0] * precision[0] + mu * precision[1]) / (precision[0] + precision[1])
    return {"mu_mean": float((weight * mu).sum()), "tau_median": float(tau[0, np.searchsorted(tau_cdf, 0.5)]),
            "theta_a_mean": float((weight * theta_a).sum())}


def stan_log_prior(scale: float):
    return lambda mu, tau: stats.norm.logpdf(mu, 0, scale) + stats.halfcauchy.logpdf(tau, scale=scale)


@pytest.fixture(scope="module")
def schools() -> pd.DataFrame:
    return load_published("eight_schools")


@pytest.fixture(scope="module")
def schools_fit(schools):
    return pooling.pool(schools, prior=STAN_PRIOR, seed=1, **SAMPLING)


@pytest.fixture(scope="module")
def schools_summary(schools_fit):
    return pooling.pooling_summary(schools_fit)


def row(summary: pd.DataFrame, kind: str, group: str | None = None) -> pd.Series:
    rows = summary[(summary["kind"] == kind) & ((summary["group"] == group) if group else True)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_eight_schools_matches_published_posterior(schools, schools_summary):
    exact = exact_eight_schools(schools, stan_log_prior(5))
    assert exact["mu_mean"] == pytest.approx(4.4, abs=0.05)  # Stan / PyMC eight-schools examples
    assert exact["tau_median"] == pytest.approx(2.74, abs=0.05)
    assert row(schools_summary, "pooled_mean")["mean"] == pytest.approx(exact["mu_mean"], abs=0.4)
    assert row(schools_summary, "tau")["median"] == pytest.approx(exact["tau_median"], abs=0.35)
    assert row(schools_summary, "group", "A")["mean"] == pytest.approx(exact["theta_a_mean"], abs=0.6)
    assert schools_summary.attrs["divergences"] == 0
    assert (schools_summary["r_hat"] < 1.01).all()
    assert schools_summary.attrs["prior"] == "mu ~ Normal(mu=0, sigma=5); tau ~ HalfCauchy(beta=5)"


def test_eight_schools_pooling_factors_and_new_school(schools, schools_summary):
    groups = schools_summary[schools_summary["kind"] == "group"].set_index("group")
    # the noisier a school's estimate, the more it is pooled towards mu
    order = schools.sort_values("se")["group"]
    assert groups.loc[order, "pooling_factor"].is_monotonic_increasing
    assert groups["pooling_factor"].between(0, 1).all()
    # shrinkage: every school moves towards the pooled mean, and the spread of estimates shrinks
    mu = row(schools_summary, "pooled_mean")["mean"]
    assert (np.abs(groups["mean"] - mu) < np.abs(groups["estimate"] - mu)).all()
    new = row(schools_summary, "new_group")
    assert new["mean"] == pytest.approx(mu, abs=0.5)
    assert new["sd"] > row(schools_summary, "pooled_mean")["sd"]


def test_prior_swap_reuses_compiled_model_with_new_prior(schools):
    fit = pooling.pool(schools, prior={"mu": "Normal(0, 10)", "tau": "HalfCauchy(10)"}, seed=2, **SAMPLING)
    summary = pooling.pooling_summary(fit)
    exact = exact_eight_schools(schools, stan_log_prior(10))
    assert exact["mu_mean"] == pytest.approx(6.5, abs=0.1)  # clearly different from the scale-5 prior
    assert row(summary, "pooled_mean")["mean"] == pytest.approx(exact["mu_mean"], abs=0.45)
    assert row(summary, "tau")["median"] == pytest.approx(exact["tau_median"], abs=0.5)
    assert summary.attrs["divergences"] == 0


def test_eight_schools_flat_prior_matches_bda3(schools):
    summary = pooling.pooling_summary(pooling.pool(schools, prior="flat", seed=3, **SAMPLING))
    exact = exact_eight_schools(schools, lambda mu, tau: np.zeros_like(mu))
    assert exact["mu_mean"] == pytest.approx(7.9, abs=0.1)  # BDA3 §5.5
    assert row(summary, "pooled_mean")["mean"] == pytest.approx(exact["mu_mean"], abs=0.6)
    assert row(summary, "tau")["median"] == pytest.approx(exact["tau_median"], abs=0.7)
    assert row(summary, "group", "A")["mean"] == pytest.approx(exact["theta_a_mean"], abs=1.0)
    assert summary.attrs["divergences"] == 0


def test_pool_counts_recovers_known_effect():
    rng = np.random.default_rng(5)
    truth = 0.6  # log odds ratio in every group
    rows = []
    for group, baseline in zip("ABCDE", [-1.2, -0.9, -1.0, -0.7, -1.1]):
        for arm, effect in (("control", 0.0), ("treated", truth)):
            n = 400
            rows.append({"group": group, "arm": arm, "n": n,
                         "events": int(rng.binomial(n, 1 / (1 + np.exp(-(baseline + effect)))))})
    counts = pd.DataFrame(rows)
    summary = pooling.pooling_summary(pooling.pool_counts(counts, "control", draws=500, tune=1000, chains=2, seed=4))
    log_odds = row(summary, "pooled_log_odds")
    assert log_odds["lower"] < truth < log_odds["upper"]
    assert log_odds["p_gt_0"] > 0.99
    effects = summary[summary["kind"] == "group"]
    assert set(effects["arm"]) == {"treated"} and len(effects) == 5
    assert (effects["unit"] == "pp").all()
    raw = 100 * (counts.loc[1::2, "events"].to_numpy() / 400 - counts.loc[::2, "events"].to_numpy() / 400)
    np.testing.assert_allclose(effects["estimate"], raw)
    assert len(summary[summary["kind"] == "control_rate"]) == 5
    assert summary.attrs["divergences"] == 0


def test_format_and_forest_plot(schools_summary, tmp_path):
    text = pooling.format_pooling_summary(schools_summary)
    assert "pooled effect (mu)" in text and "between-group SD (tau)" in text and "new group" in text
    assert "+28.0 (15.0)" in text  # school A as reported
    assert "divergences: 0" in text
    paths = pooling.plot_forest(schools_summary, tmp_path / "forest.png", title="Eight schools")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert "<svg" in paths[1].read_text()


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"group": ["a"], "estimate": [1.0]}), "missing column"),
    (pd.DataFrame({"group": ["a", "a"], "estimate": [1.0, 2.0], "se": [1.0, 1.0]}), "more than once"),
    (pd.DataFrame({"group": ["a", "b"], "estimate": [1.0, 2.0], "se": [1.0, 0.0]}), "se must be > 0"),
    (pd.DataFrame({"group": ["a", "b"], "estimate": [1.0, "x"], "se": [1.0, 1.0]}), "must be numeric"),
    (pd.DataFrame({"group": ["a", "b"], "estimate": [1.0, np.nan], "se": [1.0, 1.0]}), "missing or infinite"),
    (pd.DataFrame(columns=["group", "estimate", "se"]), "no rows"),
])
def test_bad_effects_table(frame, message):
    with pytest.raises(DataError, match=message):
        pooling.pool(frame)


@pytest.mark.parametrize("counts, message", [
    (pd.DataFrame({"group": ["a"], "arm": ["treated"], "n": [10], "events": [3]}), "control arm"),
    (pd.DataFrame({"group": ["a", "a"], "arm": ["control", "treated"], "n": [10, 10], "events": [3, 11]}), "events > n"),
    (pd.DataFrame({"group": ["a", "a"], "arm": ["control", "treated"], "n": [10, 10], "events": [3, 2.5]}), "whole numbers"),
    (pd.DataFrame({"group": ["a", "b"], "arm": ["control", "treated"], "n": [10, 10], "events": [3, 2]}), "no row for the control"),
    (pd.DataFrame({"group": ["a"], "arm": ["control"], "n": [10], "events": [3]}), "no arm besides"),
])
def test_bad_counts_table(counts, message):
    with pytest.raises(DataError, match=message):
        pooling.pool_counts(counts, "control")


@pytest.mark.parametrize("prior, message", [
    ({"tau": "Normal(0, 1)"}, "not allowed"),
    ({"sigma": "HalfNormal(1)"}, "unknown parameter"),
    ("wide", "use None"),
    ({"tau": "HalfNormal(S, 2)"}, "HalfNormal takes"),
    ({"mu": "Normal(0, __import__('os'))"}, "cannot read"),
])
def test_bad_prior(schools, prior, message):
    with pytest.raises(SpecError, match=message):
        pooling.pool(schools, prior=prior)


def test_flat_tau_needs_three_groups_and_bad_settings(schools):
    with pytest.raises(SpecError, match="improper posterior"):
        pooling.pool(schools.iloc[:2], prior="flat")
    with pytest.raises(SpecError, match="draws"):
        pooling.pool(schools, draws=0)
    with pytest.raises(SpecError, match="target_accept"):
        pooling.pool(schools, target_accept=1.0)
    with pytest.raises(SpecError, match="sampler"):
        pooling.pool(schools, sampler="stan")
    with pytest.raises(SpecError, match="only defined for pool"):
        pooling.pool_counts(pd.DataFrame({"group": ["a", "a"], "arm": ["c", "t"], "n": [9, 9], "events": [1, 2]}),
                            "c", prior={"tau": "HalfNormal(S)"})
    with pytest.raises(DataError, match="pool\\(\\) or pool_counts\\(\\)"):
        pooling.pooling_summary("not a fit")
