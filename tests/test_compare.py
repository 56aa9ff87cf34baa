"""Comparing fits: estimands side by side, spec differences, PSIS-LOO, leave-one-municipality-out, prior grids."""

import copy

import numpy as np
import pytest

import bayes_trial as bt
from bayes_trial.estimands import query
from bayes_trial.checks.compare import (
    PARETO_K_BAD, check_lomo, compare, format_comparison, load_fits, plot_compare, prior_grid,
)
from bayes_trial.core.errors import SpecError

from conftest import FAST


@pytest.fixture(scope="module")
def grid(outflow_fit):
    """The outflow fit and a refit with a four times wider prior on the arm effects."""
    return prior_grid(outflow_fit, {"wide arm": {"arm": "Normal(0, 2)"}}, progress=False, **FAST)


def test_prior_grid_refits_the_same_prepared_data_under_the_new_prior(grid, outflow_fit):
    assert grid.names == ["base", "wide arm"]
    wide = grid.fits["wide arm"]
    assert wide.prepared is outflow_fit.prepared
    assert str(wide.spec.priors["arm"]) == "Normal(mu=0, sigma=2)"
    assert wide.spec.priors["Intercept"] == outflow_fit.spec.priors["Intercept"]


def test_compare_shows_the_changed_prior_and_nothing_else_in_the_spec_differences(grid):
    diff = grid.spec_diff.set_index("setting")
    assert list(diff.index) == ["prior arm"]
    assert diff.loc["prior arm", "base"] == "auto"
    assert diff.loc["prior arm", "wide arm"] == "Normal(mu=0, sigma=2)"


def test_compare_lines_up_the_same_estimands_as_query_effects(grid, outflow_fit):
    estimands = grid.estimands
    assert set(estimands["fit"]) == {"base", "wide arm"}
    base = estimands[estimands["fit"] == "base"].drop(columns="fit").reset_index(drop=True)
    expected = query.effects(outflow_fit)
    assert list(base["contrast"]) == list(expected["contrast"])
    np.testing.assert_allclose(base[["mean", "lower", "upper", "p_gt_0"]], expected[["mean", "lower", "upper", "p_gt_0"]])
    assert (estimands["unit"] == "pp").all()


def test_compare_ranks_the_fits_by_psis_loo_with_pareto_k_counts(grid):
    loo = grid.loo
    assert set(loo["fit"]) == {"base", "wide arm"}
    assert {"elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "pareto_k_bad"} <= set(loo.columns)
    assert loo["elpd_diff"].iloc[0] == 0 and (loo["elpd_diff"] >= 0).all()
    assert loo["weight"].sum() == pytest.approx(1)
    assert np.isfinite(loo["elpd_loo"]).all() and (loo["elpd_loo"] < 0).all()
    n_obs = grid.fits["base"].idata.log_likelihood.sizes["__obs__"]
    assert ((loo["pareto_k_bad"] >= 0) & (loo["pareto_k_bad"] <= n_obs)).all()


def test_formatted_comparison_and_overlaid_densities(grid, tmp_path):
    text = format_comparison(grid)
    for fragment in ("exemption - control", "prior arm", "Normal(mu=0, sigma=2)", "PSIS-LOO", f"k > {PARETO_K_BAD}"):
        assert fragment in text
    paths = plot_compare(grid, tmp_path)
    assert sorted(p.name for p in paths) == ["compare_effects.png", "compare_effects.svg"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_fits_of_different_outcomes_are_shown_but_their_loo_not_compared(outflow_fit, wellbeing_fit):
    result = compare({"outflow": outflow_fit, "wellbeing": wellbeing_fit})
    assert result.loo["elpd_diff"].isna().all()
    assert any("different observations" in note for note in result.notes)
    assert any("different outcomes" in note for note in result.notes)
    assert {"outcome", "family", "formula"} <= set(result.spec_diff["setting"])
    assert set(result.estimands.loc[result.estimands["fit"] == "wellbeing", "wave"]) == {0, 1}


def test_stored_fits_are_compared_under_their_file_names(outflow_fit_path, wellbeing_fit_path, tmp_path):
    fits = load_fits([outflow_fit_path, wellbeing_fit_path])
    assert list(fits) == ["outflow", "wellbeing"]
    (tmp_path / "b").mkdir()
    copy_path = tmp_path / "b" / "outflow.nc"
    copy_path.write_bytes(outflow_fit_path.read_bytes())
    assert list(load_fits([outflow_fit_path, copy_path])) == [str(outflow_fit_path.with_suffix("")), str(copy_path.with_suffix(""))]
    with pytest.raises(SpecError, match="same fit file is given twice"):
        load_fits([outflow_fit_path, outflow_fit_path])


def test_leave_one_municipality_out_needs_three_towns(outflow_fit):
    with pytest.raises(SpecError, match="needs at least 3 towns; model 'outflow' has 2 towns"):
        check_lomo(outflow_fit)
    result = compare({"base": outflow_fit}, lomo=True)
    assert result.lomo.empty and result.lomo_summary.empty
    assert any("no leave-one-municipality-out" in note for note in result.notes)


def test_prior_grid_checks_every_entry_before_refitting(outflow_fit):
    with pytest.raises(SpecError, match="unknown term 'arms'; valid terms: Intercept, arm"):
        prior_grid(outflow_fit, {"ok": {"arm": "Normal(0, 1)"}, "typo": {"arms": "Normal(0, 1)"}})
    with pytest.raises(SpecError, match="unknown distribution 'Normall'"):
        prior_grid(outflow_fit, {"typo": {"arm": "Normall(0, 1)"}})
    with pytest.raises(SpecError, match="label 'base' is taken"):
        prior_grid(outflow_fit, {"base": {"arm": "Normal(0, 1)"}})
    with pytest.raises(SpecError, match="no fits"):
        compare({})


@pytest.mark.slow
def test_leave_one_municipality_out_scores_each_held_out_town():
    design = bt.load_design("small")
    # Ede runs no intensive arm: held-out towns with other arm sets than the rest must score too.
    ede = copy.deepcopy(design["towns"][0]) | {"name": "Ede", "id_prefix": "Ede"}
    del ede["participants"]["intensive"], ede["consultants"]["intensive"]
    design["towns"].append(ede)
    sim = bt.simulate(design, seed=5)
    fit = bt.sample(bt.load_spec("outflow"), sim.register, progress=False, **FAST)
    result = compare({"base": fit}, lomo=True, **FAST)
    table = result.lomo
    assert sorted(table["municipality"]) == ["Ede", "Nijmegen", "Oss"]
    assert table["persons"].sum() == len(sim.register)
    assert table["rows"].sum() == len(fit.data)
    assert np.isfinite(table["elpd"]).all() and (table["elpd"] < 0).all()
    summary = result.lomo_summary
    assert list(summary.columns) == ["fit", "elpd_lomo", "se", "elpd_diff", "dse"]
    assert summary["elpd_lomo"].iloc[0] == pytest.approx(table["elpd"].sum())
    assert "Leave-one-municipality-out" in format_comparison(result)
