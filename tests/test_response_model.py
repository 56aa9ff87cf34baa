"""Survey non-response: fits over everyone randomised, the response model, the MAR assumption in words.

One small response-model fit and one padded wellbeing fit are shared by the tests (on `small_sim`:
two towns x three arms x 40, response 85-90% at t0 and 60-75% at t1).
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.core.errors import DataError
from bayes_trial.estimands import attrition
from bayes_trial.modelling.frames import missing_outcomes
from bayes_trial.report import document as report

from conftest import FAST

NEEDS_REGISTER = ("bayes-trial: error: the response model needs everyone randomised: "
                  "give a folder with register.csv or --register FILE")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bayes_trial.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def padded(small_sim):
    return bt.with_nonresponse(small_sim.survey, small_sim.register)


@pytest.fixture(scope="module")
def padded_wellbeing_fit(padded):
    return bt.sample(bt.load_spec("wellbeing"), padded, progress=False, **FAST)


@pytest.fixture(scope="module")
def response_fit(padded):
    return bt.sample(bt.load_spec("response"), padded, progress=False, **FAST)


def test_padding_with_everyone_randomised_leaves_the_posterior_identical(wellbeing_fit, padded_wellbeing_fit):
    assert padded_wellbeing_fit.info["data_hash"] != wellbeing_fit.info["data_hash"]
    for name, values in wellbeing_fit.posterior.data_vars.items():
        np.testing.assert_array_equal(padded_wellbeing_fit.posterior[name].to_numpy(), values.to_numpy(), err_msg=name)


def test_missing_outcomes_count_nonresponse_over_everyone_randomised(small_sim, wellbeing_fit, padded_wellbeing_fit,
                                                                     tmp_path):
    randomised = small_sim.register.groupby("arm").size()
    answered = small_sim.survey.dropna(subset=["wellbeing"]).groupby(["arm", "wave"]).size()
    stored = bt.load(bt.save(padded_wellbeing_fit, tmp_path / "wb.nc"))
    assert stored.prepared.missing_over_randomised and not wellbeing_fit.prepared.missing_over_randomised
    table = missing_outcomes(stored).set_index(["arm", "wave"])
    for (arm, wave), n in answered.items():
        assert table.loc[(arm, wave), "n_total"] == randomised[arm]
        assert table.loc[(arm, wave), "n_dropped"] == randomised[arm] - n
    # Without the register the survey file's rows are all there is: nobody is missing.
    assert missing_outcomes(wellbeing_fit)["n_dropped"].sum() == small_sim.survey["wellbeing"].isna().sum()


def test_the_response_model_recovers_the_true_response_rates(small_sim, response_fit):
    assert response_fit.prepared.aggregated and "(1|municipality)" in response_fit.prepared.formula
    rates = attrition.response_rates(response_fit, interval=0.95)
    truth = small_sim.truth["attrition"]["response_rate"]
    assert len(rates.rates) == 6
    for row in rates.rates.itertuples():
        assert row.lower <= 100 * truth[row.arm][str(row.wave)] <= row.upper, row
    # The differentials are the response model's effects, and P(< 0) their other side.
    effects = bt.effects(response_fit).set_index(["contrast", "wave"])
    for row in rates.differentials.itertuples():
        effect = effects.loc[(row.contrast, row.wave)]
        assert row.mean == pytest.approx(effect["mean"]) and row.p_lt_0 == pytest.approx(1 - effect["p_gt_0"])
    t1 = rates.differentials[rates.differentials["wave"] == 1].set_index("arm")
    assert (t1["mean"] > 0).all() and (t1["p_lt_0"] < 0.2).all()  # control answered less (60% vs 75%)


def test_response_rates_refuse_a_fit_of_another_outcome(wellbeing_fit):
    with pytest.raises(bt.SpecError, match="need a fit of the response model"):
        attrition.response_rates(wellbeing_fit)


def test_the_mar_line_names_the_share_missing_per_arm(small_sim, padded_wellbeing_fit, wellbeing_fit, outflow_fit,
                                                      response_fit):
    line = attrition.mar_assumption(padded_wellbeing_fit)
    assert line.startswith("Assumes missing at random: the people who did not answer at wave 1 are like those who did "
                           "with the same arm, wave, town, consultant and answers at other waves. Missing at wave 1: ")
    randomised = small_sim.register.groupby("arm").size()
    answered = small_sim.survey[small_sim.survey["wave"] == 1].dropna(subset=["wellbeing"]).groupby("arm").size()
    for arm in randomised.index:
        missing = randomised[arm] - answered[arm]
        assert f"{arm} {missing / randomised[arm]:.0%} ({missing} of {randomised[arm]}" in line
    assert "randomised)" in line and "survey file" not in line
    unpadded = attrition.mar_assumption(wellbeing_fit, 1)
    assert "only the rows of the survey file: how many were randomised is unknown" in unpadded
    assert attrition.mar_assumption(outflow_fit) is None and attrition.mar_assumption(response_fit) is None


def test_counts_under_the_minimum_cell_are_not_named(padded_wellbeing_fit):
    table = missing_outcomes(padded_wellbeing_fit)
    wave0 = table[table["wave"] == 0]
    small = wave0[(wave0["n_dropped"] > 0) & (wave0["n_dropped"] < 10)]
    assert len(small), "the small design should leave fewer than 10 non-responders in some arm at t0"
    line = attrition.mar_assumption(padded_wellbeing_fit, 0)
    for row in small.itertuples():
        assert f"{row.arm} suppressed (a count under 10 persons)" in line
        assert f"({row.n_dropped} of" not in line


def test_the_cli_refuses_the_response_model_without_a_register(small_sim_dir, tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "survey.csv").write_bytes((small_sim_dir / "survey.csv").read_bytes())
    for data in (small_sim_dir / "survey.csv", tmp_path / "only"):
        result = run_cli("fit", "response", "--data", data, "--out", tmp_path / "r.nc", "--quiet")
        assert result.returncode == 2 and result.stderr.strip() == NEEDS_REGISTER, result.stderr
    assert not (tmp_path / "r.nc").exists()
    with pytest.raises(DataError, match="the response model needs everyone randomised"):
        bt.sample(bt.load_spec("response"), bt.load_survey(small_sim_dir / "survey.csv"), progress=False)


def test_fit_with_register_says_did_not_answer_and_query_states_mar(small_sim_dir, tmp_path):
    out = tmp_path / "wb.nc"
    result = run_cli("fit", "wellbeing", "--data", small_sim_dir / "survey.csv", "--register", small_sim_dir / "register.csv",
                     "--out", out, "--quiet", "--draws", "100", "--tune", "100", "--chains", "1")
    assert result.returncode == 0, result.stderr
    assert "Did not answer wellbeing (no survey row, or the answer left empty), of everyone randomised" in result.stdout
    assert re.search(r"arm\s+wave\s+did not answer\s+randomised", result.stdout)
    answer = run_cli("query", out, "intensive - control > 0")
    assert answer.returncode == 0 and answer.stdout.strip().splitlines()[-1].startswith("Assumes missing at random")
    data = __import__("json").loads(run_cli("query", out, "intensive - control > 0", "--json").stdout)
    assert data["missing_at_random"].startswith("Assumes missing at random") and "randomised)" in data["missing_at_random"]


def test_the_report_states_mar_and_draws_response_beside_a_survey_outcome(padded_wellbeing_fit, response_fit, tmp_path):
    paths = report.report([padded_wellbeing_fit, response_fit], tmp_path)
    text = paths["md"].read_text()
    wellbeing, response = text.split("## response", 1)
    assert attrition.mar_assumption(padded_wellbeing_fit, [0, 1]) in wellbeing
    assert "figures/wellbeing/wellbeing_response.png" in wellbeing and "Response: response model 'response'" in wellbeing
    assert "P(differential < 0)" in wellbeing
    assert "Assumes missing at random" not in response and "figures/response/response_response.png" in response
    assert (tmp_path / "figures" / "wellbeing" / "wellbeing_response.png").stat().st_size > 0


def test_without_a_response_fit_the_report_uses_the_stored_counts(padded_wellbeing_fit, tmp_path):
    counted = report.counted_response(padded_wellbeing_fit)
    counts = attrition.response_counts(padded_wellbeing_fit)
    shown = counts[(counts["n_completed"] >= 10) & (counts["n_net"] - counts["n_completed"] >= 10)]
    assert len(counted.rates) == len(shown) < len(counts)  # t0 cells with under 10 non-responders are left out
    both = counted.rates.merge(shown.astype({"wave": int}), on=["arm", "wave"], validate="one_to_one")
    assert len(both) == len(shown)
    observed = 100 * both["n_completed"] / both["n_net"]
    assert ((both["lower"] < observed) & (observed < both["upper"])).all()
    blocks = report.response_blocks(padded_wellbeing_fit, tmp_path)
    assert [b.kind for b in blocks] == ["h3", "p", "p", "figure", "table"]
    assert "Beta posterior per arm x wave" in blocks[2].text
    assert isinstance(blocks[4].table, pd.DataFrame) and "P(differential < 0)" in blocks[4].table.columns
