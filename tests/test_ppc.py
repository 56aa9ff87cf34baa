"""Posterior predictive checks: observed statistics, p-values, suppression, LOO-PIT and figures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bayes_trial.checks import ppc


@pytest.fixture(scope="module")
def wellbeing_predictive(wellbeing_fit):
    return ppc.posterior_predictive(wellbeing_fit)


@pytest.fixture(scope="module")
def outflow_predictive(outflow_fit):
    return ppc.posterior_predictive(outflow_fit)


def test_replicates_cover_every_row_with_at_most_max_draws(wellbeing_fit):
    predictive = ppc.posterior_predictive(wellbeing_fit, max_draws=100)
    assert predictive.draws.shape == (100, len(wellbeing_fit.data))
    np.testing.assert_array_equal(predictive.observed, wellbeing_fit.data["wellbeing"].to_numpy())


def test_observed_statistics_match_pandas(wellbeing_fit, wellbeing_predictive):
    table = ppc.test_statistics(wellbeing_fit, wellbeing_predictive)
    data = wellbeing_fit.data
    by_arm_wave = data.groupby(["arm", "wave"], observed=True)
    rows = table[table["by"] == "arm x wave"].set_index(["arm", "wave", "statistic"])
    for (arm, wave), block in by_arm_wave:
        assert rows.loc[(arm, wave, "mean"), "observed"] == pytest.approx(block["wellbeing"].mean())
        assert rows.loc[(arm, wave, "sd"), "observed"] == pytest.approx(block["wellbeing"].std())
        assert rows.loc[(arm, wave, "share >= 10"), "observed"] == pytest.approx((block["wellbeing"] >= 10).mean())
        assert rows.loc[(arm, wave, "mean"), "persons"] == block["participant_id"].nunique()
    towns = table[(table["by"] == "municipality") & (table["statistic"] == "mean")].set_index("municipality")
    for town, block in data.groupby("municipality"):
        assert towns.loc[town, "observed"] == pytest.approx(block["wellbeing"].mean())
    assert ((table["lower"] <= table["predicted"]) | (table["statistic"].str.startswith("share"))).all()
    assert table["ppp"].between(0, 1).all()


def test_outflow_proportions_match_the_person_level_register(outflow_fit, outflow_predictive, small_sim):
    table = ppc.test_statistics(outflow_fit, outflow_predictive)
    assert set(table["statistic"]) == {"proportion"}
    cells = table[table["by"] == "arm x municipality"].set_index(["arm", "municipality"])
    for (arm, town), block in small_sim.register.groupby(["arm", "municipality"]):
        assert cells.loc[(arm, town), "observed"] == pytest.approx(block["outflow_work"].mean())
        assert cells.loc[(arm, town), "persons"] == len(block)
    overall = table[table["by"] == "overall"].iloc[0]
    assert overall["observed"] == pytest.approx(small_sim.register["outflow_work"].mean())
    assert overall["lower"] < overall["observed"] < overall["upper"]


def test_a_statistic_the_model_cannot_reproduce_gets_ppp_near_zero(wellbeing_fit, wellbeing_predictive):
    shifted = dataclasses.replace(wellbeing_predictive, observed=wellbeing_predictive.observed + 2.0)
    table = ppc.test_statistics(wellbeing_fit, shifted)
    means = table[table["statistic"] == "mean"]
    assert (means["ppp"] < 0.01).all()
    assert table.loc[table["statistic"] == "sd", "ppp"].between(0.01, 0.99).all()  # a shift keeps the SD
    lines = ppc.summarise(wellbeing_fit, shifted)
    assert any(line.startswith("mean: ppp outside [0.05, 0.95] in 15 of 15 groups") for line in lines)


def test_well_specified_model_passes_its_checks(outflow_fit, outflow_predictive):
    lines = ppc.summarise(outflow_fit, outflow_predictive)
    assert lines[0] == "proportion (12 groups): all ppp within [0.05, 0.95]"
    assert lines[1].startswith("LOO-PIT: largest ECDF distance from uniform")


def test_groups_under_min_cell_persons_are_left_out(wellbeing_fit, wellbeing_predictive):
    table = ppc.test_statistics(wellbeing_fit, wellbeing_predictive, min_cell=50)
    assert (table["persons"] >= 50).all()
    data = wellbeing_fit.data
    small = sum(
        int((data.groupby(columns, observed=True)["participant_id"].nunique() < 50).sum())
        for columns in (["arm", "wave"], ["municipality"], ["arm", "municipality"])
    )
    assert small > 0 and table.attrs["suppressed_groups"] == small
    assert any(line == f"{small} groups with fewer than 50 persons left out"
               for line in ppc.summarise(wellbeing_fit, wellbeing_predictive, min_cell=50))


def test_loo_pit_is_close_to_uniform_for_the_simulating_model(wellbeing_fit, wellbeing_predictive):
    result = ppc.loo_pit(wellbeing_fit, wellbeing_predictive)
    assert result.values.shape == (len(wellbeing_fit.data),)
    assert ((result.values >= 0) & (result.values <= 1)).all()
    assert result.ks_distance < 0.15


def test_loo_pit_from_weights_computed_once_equals_arviz(wellbeing_fit, wellbeing_predictive):
    """The smoothed weights computed once (and handed to the plot) give ArviZ's own LOO-PIT values."""
    import arviz as az

    result = ppc.loo_pit(wellbeing_fit, wellbeing_predictive)
    expected = az.loo_pit(wellbeing_predictive.idata, y=wellbeing_predictive.variable)
    np.testing.assert_allclose(result.values, np.asarray(expected), rtol=1e-12, atol=1e-12)
    assert result.log_weights.shape == (len(wellbeing_fit.data), wellbeing_predictive.draws.shape[0])


def test_no_participant_ids_in_tables_or_summaries(wellbeing_fit, wellbeing_predictive):
    text = (ppc.test_statistics(wellbeing_fit, wellbeing_predictive).to_string()
            + "\n".join(ppc.summarise(wellbeing_fit, wellbeing_predictive)))
    assert not any(pid in text for pid in wellbeing_fit.data["participant_id"].unique())


@pytest.mark.parametrize("name, expected", [
    ("outflow", {"ppc_groups", "ppc_statistics", "ppc_loo_pit"}),
    ("wellbeing", {"ppc_distribution", "ppc_groups", "ppc_statistics", "ppc_loo_pit"}),
])
def test_figures_are_written_with_summaries(name, expected, request, tmp_path):
    fit = request.getfixturevalue(f"{name}_fit")
    predictive = request.getfixturevalue(f"{name}_predictive")
    written = ppc.plot_ppc(fit, tmp_path, predictive)
    assert {path.stem for path, _ in written} == expected
    assert {path.suffix for path, _ in written} == {".png", ".svg"}
    assert all(path.stat().st_size > 1000 and summary for path, summary in written)
