"""Simulation-based calibration, recovery of known values and the frequentist reference (small runs)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.modelling import frames as model_mod
from bayes_trial.sampling import build as bambi_build
from bayes_trial.batch import recovery, sbc, simulated

FAST = {"draws": 150, "tune": 200, "chains": 2}


@pytest.fixture(scope="module")
def scheduler():
    """One single-worker cluster for the module: its worker keeps compiled models between runs."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_sbc_ranks_true_values_among_posterior_draws(tmp_path, scheduler):
    result = sbc.sbc("outflow", "small", sims=8, out=tmp_path, seed=2, rank_draws=19, scheduler=scheduler,
                          progress=False, **FAST)
    assert not result.failed
    assert result.ranks["sim"].nunique() == 8
    assert set(result.ranks["parameter"]) == {
        "Intercept", "arm[exemption]", "arm[intensive]", "1|municipality_sigma", "arm|municipality_sigma[exemption]",
        "arm|municipality_sigma[intensive]", "1|municipality:consultant_id_sigma"}
    assert result.ranks["rank"].between(0, 19).all()
    # Refits see each simulation's own outcome: posterior means follow the drawn true values.
    intercept = result.ranks[result.ranks["parameter"] == "Intercept"]
    assert np.corrcoef(intercept["truth"], intercept["posterior_mean"])[0, 1] > 0.7
    assert list(result.summary.columns[:5]) == ["parameter", "sims", "bins", "chi2", "p_value"]
    for name in ("ranks", "fits", "summary", "sbc_ecdf_png", "sbc_ecdf_svg"):
        assert result.files[name].stat().st_size > 0
    again = sbc.sbc("outflow", "small", sims=8, out=tmp_path, seed=2, rank_draws=19, scheduler=scheduler,
                         progress=False, **FAST)  # all stored: no refits, same ranks
    pd.testing.assert_frame_equal(again.ranks, result.ranks)

    # The same first two replications, refitted through the fit path that analyses use.
    via_fit = sbc.sbc("outflow", "small", sims=2, out=tmp_path / "fit", seed=2, rank_draws=19, refit="fit",
                           scheduler=scheduler, progress=False, **FAST)
    assert not via_fit.failed
    first_two = result.ranks[result.ranks["sim"].isin(["sim00000", "sim00001"])].reset_index(drop=True)
    pd.testing.assert_series_equal(via_fit.ranks["truth"], first_two["truth"])
    with pytest.raises(bt.SpecError, match="refit"):
        sbc.sbc("outflow", "small", sims=2, out=tmp_path, refit="fast")


def test_prior_draws_keep_thresholds_increasing_and_extend_stably(small_sim):
    spec = bt.load_spec("trust_item")
    pymc_model = bambi_build.build(spec, model_mod.prepare(spec, small_sim.survey)).backend.model
    draws = sbc.draw_prior(pymc_model, 12, seed=5)
    for values, outcome in draws:
        assert np.all(np.diff(values["threshold"]) > 0)
        assert outcome.min() >= 0 and outcome.max() <= 4 and len(outcome) == len(small_sim.survey)
    fewer = sbc.draw_prior(pymc_model, 3, seed=5)
    for (a, ya), (b, yb) in zip(fewer, draws):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(a["arm"], b["arm"])


def test_uniformity_summary_separates_uniform_from_biased_ranks():
    assert sbc.uniformity_bins(100) == 20
    assert sbc.uniformity_bins(50) == 10
    assert sbc.uniformity_bins(8) == 2
    rng = np.random.default_rng(0)
    uniform = pd.DataFrame({"parameter": "a", "rank": rng.integers(0, 100, 200)})
    biased = pd.DataFrame({"parameter": "b", "rank": rng.integers(60, 100, 200)})  # truth above most draws
    summary = sbc.sbc_summary(pd.concat([uniform, biased]), rank_draws=99).set_index("parameter")
    assert summary.loc["a", "p_value"] > 0.01 and summary.loc["a", "in_band"]
    assert summary.loc["b", "p_value"] < 1e-6 and not summary.loc["b", "in_band"]
    assert summary.loc["a", "in_adjusted_band"] and not summary.loc["b", "in_adjusted_band"]
    assert sbc.adjusted_band_prob(10) == pytest.approx(0.995)


def test_the_adjusted_band_tolerates_a_small_bend_but_not_a_larger_one():
    uniform = np.r_[np.arange(100), np.arange(100)]
    ranks = pd.DataFrame({"parameter": np.repeat([f"p{i}" for i in range(20)], 200), "rank": np.tile(uniform, 20)})
    bent = {"p0": 6, "p1": 8}  # half the ranks pushed up by this much: a posterior a little below the truth
    for name, shift in bent.items():
        ranks.loc[ranks["parameter"] == name, "rank"] = np.r_[np.arange(100), np.minimum(np.arange(100) + shift, 99)]
    summary = sbc.sbc_summary(ranks, rank_draws=99).set_index("parameter")
    assert summary.loc["p2", "in_band"] and summary.loc["p2", "in_adjusted_band"]
    assert not summary.loc["p0", "in_band"] and summary.loc["p0", "in_adjusted_band"]
    assert not summary.loc["p1", "in_band"] and not summary.loc["p1", "in_adjusted_band"]


def test_true_values_line_up_with_posterior_labels(small_sim, wellbeing_fit, outflow_fit):
    posterior = wellbeing_fit.idata.posterior
    labels = list(simulated.parameter_draws(posterior, simulated.population_parameters(posterior)))
    truth = recovery.true_values(wellbeing_fit.spec, small_sim.truth, labels)
    assert set(truth) == set(labels)  # every population-level parameter has a known true value
    assert truth["arm[intensive]"] == 0.0 and truth["arm:wave[intensive, 1]"] == pytest.approx(0.4)
    assert truth["wave[1]"] == pytest.approx(0.3) and truth["sigma"] == 1.0
    assert truth["arm|municipality_sigma[exemption]"] == pytest.approx(0.1)

    outflow = recovery.true_values(outflow_fit.spec, small_sim.truth, ["Intercept", "arm[intensive]", "unknown"])
    assert outflow == {"Intercept": pytest.approx(logit(0.28)), "arm[intensive]": pytest.approx(logit(0.35) - logit(0.28))}


def test_mixedlm_reference_agrees_with_the_posterior_on_fixed_effects(wellbeing_fit):
    # The bundled `auto` priors shrink arm effects a little (Normal(0, 0.5 SD)); with wide ones the
    # posterior is the likelihood's.
    wide = bt.parse_prior("Normal(0, 10)")
    fit = bt.refit(wellbeing_fit, priors={"Intercept": bt.parse_prior("Normal(5, 10)"), "arm": wide, "wave": wide,
                                          "arm:wave": wide}, progress=False)
    method, reference = recovery.reference_estimates(fit.prepared, "control", fit.family)
    assert method == "MixedLM (REML)"
    draws = simulated.parameter_draws(fit.idata.posterior, ["Intercept", "arm", "wave", "arm:wave", "sigma",
                                                           "1|participant_id_sigma"])
    for label, values in draws.items():
        # Flat-ish priors and 240 people: ML and posterior mean differ by a fraction of a posterior SD.
        assert abs(reference[label]["estimate"] - values.mean()) < 0.5 * values.std(), label
    assert {"1|municipality:consultant_id_sigma", "1|municipality_sigma", "arm|municipality_sigma[intensive]",
            "1|municipality:wave_sigma"} <= set(reference)


def test_binomial_glm_reference_is_the_pooled_log_odds_ratio(outflow_fit, small_sim):
    method, reference = recovery.reference_estimates(outflow_fit.prepared, "control", outflow_fit.family)
    assert method.startswith("GLM binomial")
    share = small_sim.register.groupby("arm")["outflow_work"].mean()
    assert reference["Intercept"]["estimate"] == pytest.approx(logit(share["control"]), abs=1e-6)
    assert reference["arm[intensive]"]["estimate"] == pytest.approx(logit(share["intensive"]) - logit(share["control"]),
                                                                    abs=1e-6)


def test_population_averaging_shrinks_log_odds_towards_zero():
    draws = {"Intercept": np.full(4, -1.0), "arm[b]": np.full(4, 0.8), "1|municipality_sigma": np.zeros(4)}
    unchanged = recovery.population_averaged(draws, "a")
    assert unchanged["arm[b]"] == pytest.approx(np.full(4, 0.8))
    draws["1|municipality:consultant_id_sigma"] = np.full(4, 1.5)
    shrunk = recovery.population_averaged(draws, "a")
    factor = 1 / math.sqrt(1 + recovery.LOGIT_ATTENUATION_C2 * 1.5**2)
    assert shrunk["arm[b]"] == pytest.approx(np.full(4, 0.8 * factor))


def test_recovery_records_intervals_and_reference_per_simulated_trial(tmp_path, scheduler):
    result = recovery.recovery("outflow", "small", sims=2, out=tmp_path / "outflow_small", seed=4,
                               scheduler=scheduler, progress=False, **FAST)
    assert not result.failed
    est = result.estimates
    assert est["sim"].nunique() == 2 and len(est) == 14
    assert (est["q05"] <= est["q25"]).all() and (est["q75"] <= est["q95"]).all()
    cov = result.coverage.set_index("parameter")
    assert cov.loc["arm[intensive]", "truth"] == pytest.approx(logit(0.35) - logit(0.28))
    assert cov["coverage_90"].between(0, 1).all() and (cov["sims"] == 2).all()
    ref = result.reference.set_index("parameter")
    assert {"Intercept", "arm[exemption]", "arm[intensive]"} == set(ref.index)
    assert ref["population_averaged_difference"].notna().all()
    assert (tmp_path / "outflow_small" / "coverage.csv").exists() and (tmp_path / "outflow_small" / "reference.csv").exists()
    combined = recovery.combine_recovery(tmp_path)  # every run below the folder: one table, one figure
    pd.testing.assert_frame_equal(pd.read_csv(combined["coverage"]), pd.read_csv(tmp_path / "outflow_small" / "coverage.csv"),
                                  rtol=1e-3, atol=1e-4)  # recomputed from estimates.csv (6 significant digits)
    assert combined["coverage_png"].stat().st_size > 0
    with pytest.raises(bt.SpecError, match="no recovery runs"):
        recovery.combine_recovery(tmp_path / "outflow_small")


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(bt.SpecError, match="sims"):
        sbc.sbc("outflow", "small", sims=0, out=tmp_path)
    with pytest.raises(bt.SpecError, match="no such file and no bundled design"):
        recovery.recovery("outflow", "no_such_design", sims=1, out=tmp_path)


@pytest.mark.slow
def test_sbc_of_the_gaussian_model_is_uniform(tmp_path):
    result = sbc.sbc("wellbeing", "small", sims=40, out=tmp_path, seed=3, rank_draws=19, progress=False,
                          draws=300, tune=300, chains=2)
    assert not result.failed
    # 13 parameters: with calibrated ranks all p-values above 0.001 has probability about 0.99.
    assert result.summary["p_value"].min() > 1e-3, result.summary.to_string()



def test_sbc_and_recovery_commands_write_their_tables(tmp_path, scheduler, capsys):
    from bayes_trial.cli import commands as cli

    common = ["--draws", "150", "--tune", "200", "--chains", "2", "--scheduler", scheduler, "--quiet"]
    assert cli.main(["sbc", "outflow", "--design", "small", "--sims", "3", "--seed", "2", "--out", str(tmp_path / "sbc"),
                     *common]) == 0
    printed = capsys.readouterr().out
    assert "SBC of outflow on design small: 3 fits, 0 failed" in printed and "arm[intensive]" in printed
    assert len(pd.read_csv(tmp_path / "sbc" / "ranks.csv")) == 3 * 7
    assert cli.main(["recovery", "outflow", "--design", "small", "--sims", "1", "--out", str(tmp_path / "rec"),
                     *common]) == 0
    printed = capsys.readouterr().out
    assert "coverage_90" in printed and "MixedLM / GLM" in printed
    assert (tmp_path / "rec" / "reference.csv").stat().st_size > 0
    assert cli.main(["sbc", "outflow", "--design", "small", "--sims", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "sims: expected a positive number" in capsys.readouterr().err
