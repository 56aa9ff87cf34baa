"""Survey non-response: fits over everyone randomised, the response model, the MAR assumption in words.

One small response-model fit and one padded wellbeing fit are shared by the tests (on `small_sim`:
two towns x three arms x 40, response 85-90% at t0 and 60-75% at t1), and one response-model fit of
`oss_mar` (response more likely after a higher wellbeing score at the previous wave) checks the
baseline score against that known dependence.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.core.errors import DataError
from bayes_trial.data import contract
from bayes_trial.estimands import attrition
from bayes_trial.families.base import TRIALS
from bayes_trial.modelling.frames import missing_outcomes, prepare, with_baseline
from bayes_trial.modelling.spec import spec_from_dict, spec_from_json
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


@pytest.fixture(scope="module")
def mar_sim():
    return bt.simulate(bt.load_design("oss_mar"), seed=1)


@pytest.fixture(scope="module")
def mar_response_fit(mar_sim):
    return bt.sample(bt.load_spec("response"), bt.with_nonresponse(mar_sim.survey, mar_sim.register),
                     progress=False, **FAST)


def test_the_response_model_recovers_the_true_response_rates(small_sim, response_fit):
    # Rows that share arm, wave, town, consultant and baseline columns are still one binomial cell.
    cells = response_fit.data
    assert response_fit.prepared.aggregated and cells[TRIALS].sum() == 2 * len(small_sim.register)
    assert len(cells[cells["wave"] == 0]) < len(cells[cells["wave"] == 1]) < len(small_sim.register)
    assert "baseline_score + no_baseline" in response_fit.prepared.formula
    assert "(1|municipality)" in response_fit.prepared.formula
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


def test_the_baseline_score_is_the_wave0_score_on_later_waves_only(small_sim, padded):
    spec = bt.load_spec("response")
    frame = with_baseline(spec, padded)
    wave0 = frame[frame["wave"] == 0]
    assert (wave0["baseline_score"] == 0).all() and (wave0["no_baseline"] == 0).all()
    answered = wave0.dropna(subset=["wellbeing"]).set_index("participant_id")["wellbeing"]
    later = frame[frame["wave"] == 1].set_index("participant_id")
    assert len(later) == len(small_sim.register)
    has = later.index.isin(answered.index)
    assert 0 < (~has).sum() and (later.loc[~has, "no_baseline"] == 1).all() and (later.loc[has, "no_baseline"] == 0).all()
    assert (later.loc[~has, "baseline_score"] == 0).all()
    expected = (answered - answered.mean()) / answered.std()
    np.testing.assert_allclose(later.loc[has, "baseline_score"].to_numpy(), expected.loc[later.index[has]].to_numpy())
    assert later.loc[has, "baseline_score"].mean() == pytest.approx(0, abs=1e-12)


def test_the_baseline_score_recovers_response_that_depends_on_the_previous_score(mar_sim, mar_response_fit):
    # oss_mar: +0.5 log odds per SD of the previous wave's wellbeing; the t0 score stands in for it.
    slope = mar_response_fit.posterior["baseline_score"].to_numpy().ravel()
    assert np.quantile(slope, 0.05) > 0
    rates = attrition.response_rates(mar_response_fit, interval=0.9)
    realised = mar_sim.truth["attrition"]["outcomes"]["wellbeing"]["nonresponse_share"]
    assert len(rates.rates) == 9
    for row in rates.rates.itertuples():
        assert row.lower <= 100 * (1 - realised[row.arm][str(row.wave)]) <= row.upper, row
    # Each wave is averaged over everyone randomised, each person with their own row of that wave.
    answered = mar_sim.survey.groupby(["arm", "wave"]).size() / mar_sim.register.groupby("arm").size()
    for row in rates.rates.itertuples():
        assert row.mean == pytest.approx(100 * answered[(row.arm, row.wave)], abs=4), row


def test_a_stored_response_fit_with_a_baseline_gives_the_same_rates(mar_response_fit, tmp_path):
    stored = bt.load(bt.save(mar_response_fit, tmp_path / "response.nc"))
    assert stored.spec.baseline == "wellbeing" and "baseline_score" in stored.data
    pd.testing.assert_frame_equal(attrition.response_rates(stored).rates, attrition.response_rates(mar_response_fit).rates)


def test_a_file_read_for_the_response_model_carries_its_baseline_score(small_sim_dir):
    spec = bt.load_spec("response")
    frame = contract.load_for_spec(spec, small_sim_dir / "survey.csv", register=small_sim_dir / "register.csv")
    prepared = prepare(spec, frame)
    assert {"baseline_score", "no_baseline"} <= set(prepared.data.columns)
    assert prepared.data.loc[prepared.data["wave"] == 1, "baseline_score"].std() > 0.5


def response_raw(**changes):
    raw = bt.load_spec("response").to_dict()
    raw.update(changes)
    return raw


@pytest.mark.parametrize("changes, message", [
    ({"baseline": "arm"}, "baseline 'arm' is not a score"),
    ({"baseline": 3}, "'baseline' must be the name of a survey score column"),
    ({"formula": "responded ~ arm*wave"}, "the formula does not use baseline_score"),
    ({"baseline": ""}, "the formula uses baseline_score, no_baseline, which only a 'baseline' setting makes"),
    ({"outcome": "wellbeing", "formula": "wellbeing ~ arm*wave + baseline_score + no_baseline", "family": "gaussian"},
     "'baseline' is for the response model"),
])
def test_a_wrong_baseline_setting_is_a_one_line_spec_error(changes, message):
    with pytest.raises(bt.SpecError, match=re.escape(message)) as error:
        spec_from_dict(response_raw(**changes), where="models/response.toml")
    assert "\n" not in str(error.value) and str(error.value).startswith("models/response.toml: ")


def test_a_baseline_that_is_not_a_survey_score_is_refused_when_preparing(padded):
    spec = spec_from_dict(response_raw(baseline="trust"))
    with pytest.raises(bt.SpecError, match=re.escape("baseline 'trust' is not a column of the survey; expected a "
                                                     "score column (")) as error:
        prepare(spec, padded)
    assert "wellbeing" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(bt.SpecError, match="baseline 'trust' holds no numbers"):
        prepare(spec, padded.assign(trust="high"))


def test_the_baseline_setting_round_trips_and_is_absent_when_unset():
    spec = bt.load_spec("response")
    assert spec.baseline == "wellbeing" and spec_from_json(spec.to_json()) == spec
    plain = dataclasses.replace(spec, baseline="", formula=spec.formula.replace(" + baseline_score + no_baseline", ""))
    assert "baseline" not in plain.to_dict() and spec_from_dict(plain.to_dict()) == plain
