"""Queries on data shaped like a municipality's export: towns with different arm sets, arm labels with
spaces, one-town fits, units and wave labels (issue 14, items 2, 5, 6, 11, 13).

Two small fits of their own: three towns where one ran no intensive arm, with Dutch arm labels
("controle", "eigen regie", "intensief"), and a one-town fit.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from conftest import FAST

import bayes_trial as bt
from bayes_trial.cli import commands as cli
from bayes_trial.estimands import query
from bayes_trial.data.contract import wave_number
from bayes_trial.core.errors import SpecError
from bayes_trial.sampling.predictor import PARTICIPANT_TERM

DUTCH = {"control": "controle", "exemption": "eigen regie", "intensive": "intensief"}


@pytest.fixture(scope="module")
def three_towns_fit() -> bt.Fit:
    """Oss and Nijmegen ran all three arms, Deventer no 'intensief'; arms carry SPSS-style labels."""
    design = copy.deepcopy(bt.load_design("small"))
    design["towns"].append({"name": "Deventer", "participants": {"control": 40, "exemption": 40},
                            "consultants": {"control": 2, "exemption": 1}})
    register = bt.simulate(design, seed=5).register
    register["arm"] = register["arm"].map(DUTCH)
    spec = dataclasses.replace(bt.load_spec("outflow"), control_arm="controle")
    return bt.sample(spec, register, progress=False, **FAST)


@pytest.fixture(scope="module")
def one_town_fit(small_sim) -> bt.Fit:
    register = small_sim.register[small_sim.register["municipality"] == "Oss"]
    return bt.sample(bt.load_spec("outflow"), register, progress=False, **FAST)


# ---------------------------------------------------------------------------------------------
# item 2: per-town answers only for arms a town ran; new towns without Bambi's new groups
# ---------------------------------------------------------------------------------------------


def test_towns_answer_only_for_arms_they_ran(three_towns_fit):
    table = query.hypothesis(three_towns_fit, "intensief - controle > 0", by="municipality").set_index("municipality")
    assert list(table.index) == ["Deventer", "Nijmegen", "Oss", query.NEW_MUNICIPALITY]
    deventer = table.loc["Deventer"]
    assert np.isnan(deventer["mean"]) and np.isnan(deventer["p_hypothesis"])
    assert "Deventer did not run intensief" in deventer["note"]
    for town in ("Nijmegen", "Oss", query.NEW_MUNICIPALITY):
        row = table.loc[town]
        assert row["note"] == "" and row["lower"] < row["mean"] < row["upper"] and 0 <= row["p_hypothesis"] <= 1
    # an arm Deventer did run has an answer there
    ran = query.hypothesis(three_towns_fit, "'eigen regie' - controle", by="municipality").set_index("municipality")
    assert np.isfinite(ran.loc["Deventer", "mean"]) and ran.loc["Deventer", "note"] == ""
    with pytest.raises(SpecError, match="Deventer did not run intensief"):
        query.hypothesis(three_towns_fit, "intensief - controle > 0", municipality="Deventer")


def test_new_town_is_wider_than_the_pooled_answer_and_reproducible(three_towns_fit):
    pooled = query.hypothesis(three_towns_fit, "intensief - controle").iloc[0]
    new = query.hypothesis(three_towns_fit, "intensief - controle", municipality="new").iloc[0]
    assert new["upper"] - new["lower"] > pooled["upper"] - pooled["lower"]
    again = query.hypothesis(three_towns_fit, "intensief - controle", municipality="new municipality").iloc[0]
    assert again["mean"] == new["mean"]


def test_new_town_posterior_draws_one_town_from_the_fitted_spread(three_towns_fit):
    posterior = three_towns_fit.idata.posterior
    new = query.new_town_posterior(three_towns_fit, seed=3).posterior
    assert query.town_terms(three_towns_fit) == sorted(
        ["1|municipality", "arm|municipality", "1|municipality:consultant_id"])
    for name in ("1|municipality", "arm|municipality"):
        values = new[name]
        towns = values["municipality__factor_dim"].to_numpy()
        first = values.sel(municipality__factor_dim=towns[0])
        for town in towns[1:]:  # every observed town became the same new town
            np.testing.assert_array_equal(values.sel(municipality__factor_dim=town), first)
        standard = (first / posterior[f"{name}_sigma"]).to_numpy().ravel()
        assert abs(standard.mean()) < 0.15 and 0.9 < standard.std() < 1.1  # Normal(0, SD), draw by draw
        fitted = posterior[name].sel(municipality__factor_dim=towns[0]).to_numpy().ravel()
        assert abs(np.corrcoef(standard, fitted)[0, 1]) < 0.2  # not a copy of an existing town
    consultants = new["1|municipality:consultant_id"].isel(chain=0, draw=0).to_numpy()
    assert len(np.unique(consultants)) == consultants.size  # each consultant a new one
    for name in posterior.data_vars:
        if name not in query.town_terms(three_towns_fit):
            np.testing.assert_array_equal(new[name], posterior[name])


def test_cli_per_town_and_new_town_on_towns_with_different_arms(three_towns_fit, tmp_path, capsys):
    path = bt.save(three_towns_fit, tmp_path / "three.nc")
    assert cli.main(["query", str(path), "intensief - controle > 0", "--by", "municipality"]) == 0
    out = capsys.readouterr().out
    assert "Deventer did not run intensief" in out and "new municipality" in out
    assert cli.main(["query", str(path), "intensief - controle > 0", "--municipality", "new", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [row["municipality"] for row in answer["results"]] == [query.NEW_MUNICIPALITY]
    assert cli.main(["query", str(path), "intensief - controle", "--municipality", "Deventer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bayes-trial: error:") and "did not run intensief" in err[0]


# ---------------------------------------------------------------------------------------------
# item 5: no new town from one town
# ---------------------------------------------------------------------------------------------


def test_one_town_fit_refuses_a_new_town(one_town_fit):
    assert "one municipality (Oss)" in query.new_town_problem(one_town_fit)
    with pytest.raises(SpecError, match="cannot be predicted from one municipality"):
        query.hypothesis(one_town_fit, "intensive - control", municipality="new")
    with pytest.raises(SpecError, match="one municipality"):
        query.new_town_posterior(one_town_fit)
    table = query.hypothesis(one_town_fit, "intensive - control", by="municipality").set_index("municipality")
    assert list(table.index) == ["Oss", query.NEW_MUNICIPALITY]
    assert np.isfinite(table.loc["Oss", "mean"])
    new = table.loc[query.NEW_MUNICIPALITY]
    assert np.isnan(new["mean"]) and np.isnan(new["p_hypothesis"]) and "cannot be predicted" in new["note"]


def test_cli_one_town_new_municipality_is_one_line(one_town_fit, tmp_path, capsys):
    path = bt.save(one_town_fit, tmp_path / "one.nc")
    assert cli.main(["query", str(path), "intensive - control", "--municipality", "new"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be predicted from one municipality (Oss)" in err[0]


# ---------------------------------------------------------------------------------------------
# item 6: units
# ---------------------------------------------------------------------------------------------


def test_a_unit_that_does_not_fit_the_outcome_is_an_error(wellbeing_fit, outflow_fit):
    with pytest.raises(SpecError, match=r"unit 'pp'.*measured in points"):
        query.hypothesis(wellbeing_fit, "intensive - control > 2pp")
    with pytest.raises(SpecError, match=r"unit 'points'.*measured in pp"):
        query.hypothesis(outflow_fit, "intensive - control > 2 points")
    with pytest.raises(SpecError, match="write 2pp"):  # a bare 2 would be a 200-point probability difference
        query.hypothesis(outflow_fit, "intensive - control > 2")
    assert query.parse_hypothesis("a - b > 0.5 points", ["a", "b"], "points").threshold == 0.5
    assert query.parse_hypothesis("a - b > 2%", ["a", "b"], "pp").threshold == pytest.approx(0.02)
    with pytest.raises(SpecError, match="unit 'pp'"):
        query.parse_threshold("-2pp", "--rope", "points")


def test_cli_rope_in_the_wrong_unit_is_one_line(wellbeing_fit_path, capsys):
    assert cli.main(["query", str(wellbeing_fit_path), "intensive - control > 0", "--rope=-2pp,2pp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bayes-trial: error: --rope") and "points" in err[0]


# ---------------------------------------------------------------------------------------------
# item 11: arm labels with spaces
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["'eigen regie' - controle > 0", '"eigen regie" - controle > 0',
                                        "`eigen regie` - controle > 0", "eigen_regie - controle > 0",
                                        "Eigen_Regie - CONTROLE > 0", "'Eigen-Regie' - controle"])
def test_arm_labels_with_spaces(expression):
    parsed = query.parse_hypothesis(expression, list(DUTCH.values()), "pp")
    assert parsed.weights == {"eigen regie": 1.0, "controle": -1.0} and parsed.threshold == 0


def test_unknown_or_unclosed_arm_labels_are_one_line_errors():
    with pytest.raises(SpecError, match=r"unknown arm 'eigen' \(arms in this fit: controle, 'eigen regie', intensief"):
        query.parse_hypothesis("eigen - controle", list(DUTCH.values()))
    with pytest.raises(SpecError, match="quote is not closed"):
        query.parse_hypothesis("'eigen regie - controle", list(DUTCH.values()))
    with pytest.raises(SpecError, match="could be"):
        query.parse_hypothesis("a_b - c", ["a b", "a_b ", "c"])


def test_quoted_label_answers_like_the_underscore_spelling(three_towns_fit):
    quoted = query.hypothesis(three_towns_fit, "'eigen regie' - controle > 0")
    spelled = query.hypothesis(three_towns_fit, "eigen_regie - controle > 0")
    assert quoted["mean"].iloc[0] == spelled["mean"].iloc[0]


# ---------------------------------------------------------------------------------------------
# item 13: wave labels, the wave answered, one-line argument errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, number", [(1, 1), ("1", 1), ("t1", 1), ("T1", 1), (" t0 ", 0), (2.0, 2)])
def test_wave_number_reads_labels(value, number):
    assert wave_number(value) == number


@pytest.mark.parametrize("value", ["x1", "-1", "1.5", True, None])
def test_wave_number_refuses_non_waves(value):
    with pytest.raises(ValueError):
        wave_number(value)


def test_wave_labels_and_the_wave_answered(wellbeing_fit, wellbeing_fit_path, capsys):
    by_label = query.hypothesis(wellbeing_fit, "intensive - control", wave="t1")
    assert by_label["wave"].tolist() == [1]
    assert by_label["mean"].iloc[0] == query.hypothesis(wellbeing_fit, "intensive - control", wave=1)["mean"].iloc[0]
    assert cli.main(["query", str(wellbeing_fit_path), "intensive - control", "--wave", "T0"]) == 0
    assert "answered at wave" not in capsys.readouterr().out
    assert cli.main(["query", str(wellbeing_fit_path), "intensive - control"]) == 0
    assert "answered at wave 1 (t1), the last wave" in capsys.readouterr().out
    assert cli.main(["query", str(wellbeing_fit_path), "intensive - control", "--wave", "t5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wave 't5' is not in this fit" in err[0] and "1 (t1)" in err[0]


@pytest.mark.parametrize("argv, fragment", [
    (["query", "fit.nc", "a - b", "--by", "town"], "invalid choice: 'town'"),
    (["query"], "required: fit"),
    (["query", "fit.nc", "--interval", "wide"], "invalid float value: 'wide'"),
    (["simulate", "--design", "small"], "required: --out"),
    (["fit", "outflow", "--data", "x", "--out", "y", "--draws", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required: COMMAND"),
    (["query", "fit.nc", "--colour", "red"], "unrecognized arguments"),
    (["power", "--design", "small", "--out", "x", "--wave", "tx"], "'tx' is not a wave"),
])
def test_argument_errors_are_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayes-trial: error:") and fragment in lines[0], captured.err
    assert "usage:" not in captured.err and captured.out == ""


# ---------------------------------------------------------------------------------------------
# item 15: standardised means aggregate over formula patterns and persons, never rows x draws
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fit_name", ["wellbeing_fit", "outflow_fit"])
@pytest.mark.parametrize("new_groups", [False, True])
def test_standardised_means_equal_the_row_by_row_average(request, fit_name, new_groups):
    """The aggregated means are the average of `expected_response` over every counterfactual row."""
    fit = request.getfixturevalue(fit_name)
    frame = query.population(fit)
    assignments = [{"arm": arm} for arm in query.arms(fit)]
    means = query.standardised_means(fit, assignments, new_groups=new_groups)
    idata = query.new_town_posterior(fit) if new_groups else fit.idata
    weights = frame["n_trials"].to_numpy(float) if fit.prepared.aggregated else np.ones(len(frame))
    for assign, mean in zip(assignments, means):
        copy = frame.copy()
        copy["arm"] = pd.Categorical([assign["arm"]] * len(frame), categories=frame["arm"].cat.categories, ordered=True)
        rows = bt.fit.expected_response(fit, idata, copy)
        expected = rows.stack(sample=("chain", "draw")).transpose("sample", "__obs__").to_numpy() @ weights / weights.sum()
        np.testing.assert_allclose(mean, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("new_groups", [False, True])
def test_contrasts_without_the_participant_intercepts_are_the_same(wellbeing_fit, new_groups):
    """Leaving out what every arm mean shares (the persons' intercepts) changes levels, not contrasts."""
    assignments = [{"arm": arm} for arm in query.arms(wellbeing_fit)]
    full = query.standardised_means(wellbeing_fit, assignments, new_groups=new_groups)
    lean = query.standardised_means(wellbeing_fit, assignments, new_groups=new_groups, differences_only=True)
    assert not np.allclose(full[0], lean[0])
    for a in range(1, len(full)):
        np.testing.assert_allclose(lean[a] - lean[0], full[a] - full[0], atol=1e-9)


def test_a_contrast_on_a_stored_fit_never_reads_the_participant_intercepts(wellbeing_fit, wellbeing_fit_path):
    """Persons x draws intercepts (most of a large fit's file) stay on disk for a contrast, are read for a level."""
    stored = bt.load(wellbeing_fit_path)
    intercepts = stored.posterior[PARTICIPANT_TERM].variable
    contrast = query.hypothesis(stored, "intensive - control > 0")
    assert not intercepts._in_memory
    expected = query.hypothesis(wellbeing_fit, "intensive - control > 0")
    pd.testing.assert_frame_equal(contrast, expected, rtol=1e-6)
    level = query.hypothesis(stored, "intensive > 0")
    assert stored.posterior[PARTICIPANT_TERM].variable._in_memory
    pd.testing.assert_frame_equal(level, query.hypothesis(wellbeing_fit, "intensive > 0"), rtol=1e-6)
