"""Delta-adjusted (pattern-mixture) sensitivity to survey answers missing not at random, and its tipping point."""

import dataclasses
import json
import time

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial import cli
from bayes_trial.core.errors import SpecError
from bayes_trial.data.contract import with_nonresponse
from bayes_trial.estimands import query
from bayes_trial.estimands.sensitivity import (check_delta_fit, delta_adjusted, delta_values, nice_step,
                                                parse_delta_option)
from bayes_trial.families import registry
from bayes_trial.modelling.frames import missing_outcome_counts, prepare
from bayes_trial.plots.sensitivity import plot_delta_adjusted
from bayes_trial.report import document as report
from bayes_trial.sampling.fit import Fit
from bayes_trial.workflow import runner
from conftest import FAST

EXPRESSION = "intensive - control > 0"


def _padded_record(small_sim, outcome: str) -> tuple:
    """The missing-outcome record of `outcome` in the small survey padded with every randomised person."""
    counts = missing_outcome_counts(with_nonresponse(small_sim.survey, small_sim.register), outcome, "control")
    return tuple((str(r.arm), int(r.wave), int(r.n_dropped), int(r.n_total)) for r in counts.itertuples(index=False))


def _with_record(fit: Fit, missing: tuple, **info) -> Fit:
    """`fit` with another missing-outcome record (and `info`), in memory and in what `save` writes (draws shared)."""
    info = {"missing_outcomes": json.dumps([list(row) for row in missing]), "missing_over_randomised": 1, **info}
    posterior = fit.idata.posterior.copy()
    posterior.attrs = {**posterior.attrs, **{f"bayes_trial_{k}": v for k, v in info.items()}}
    groups = {name: getattr(fit.idata, name) for name in fit.idata.groups() if name != "posterior"}
    return Fit(fit.spec, dataclasses.replace(fit.prepared, missing=missing, missing_over_randomised=True),
               az.InferenceData(posterior=posterior, **groups), {**fit.info, **info})


@pytest.fixture(scope="module")
def padded_wellbeing(wellbeing_fit, small_sim) -> Fit:
    """The shared wellbeing fit with the record of the survey padded with non-responders.

    Padding adds rows without an outcome, which `prepare` leaves out: the model rows are the same
    answers (checked below), so this fit stands for a fit of the padded survey, whose control arm
    lacks 35 of 80 answers at wave 1.
    """
    return _with_record(wellbeing_fit, _padded_record(small_sim, "wellbeing"))


@pytest.fixture(scope="module")
def trust_fit(small_sim) -> Fit:
    """A small ordinal (cumulative logit) fit of the 1-5 trust item, with the padded survey's record."""
    fit = bt.sample(bt.load_spec("trust_item"), small_sim.survey, progress=False, **FAST)
    return _with_record(fit, _padded_record(small_sim, "trust_item"))


def test_padding_leaves_the_model_rows_unchanged(small_sim):
    spec = bt.load_spec("wellbeing")
    plain = prepare(spec, small_sim.survey)
    padded = prepare(spec, with_nonresponse(small_sim.survey, small_sim.register))
    columns = ["wellbeing", "arm", "wave", "municipality", "consultant_id"]

    def rows(data):
        return sorted(map(tuple, data[columns].astype(str).to_numpy()))

    assert rows(plain.data) == rows(padded.data)
    assert ("control", 1, 35, 80) in padded.missing


# -- the delta grid ------------------------------------------------------------------------------

def test_delta_ranges_read_as_documented():
    assert nice_step(4) == pytest.approx(0.2) and nice_step(3) == pytest.approx(0.2) and nice_step(10) == 0.5
    default = delta_values("-2:2")
    assert len(default) == 21 and 0.0 in default and default[0] == -2 and default[-1] == 2
    fine = delta_values("-2:2:0.1")
    assert len(fine) == 41 and np.allclose(np.diff(fine), 0.1) and 0.3 in fine
    assert delta_values("0.5").tolist() == [0.5] and delta_values(1).tolist() == [1.0]
    # HIGH and 0 are always on the grid, even when the step misses them
    assert delta_values("-1:1:0.3").tolist() == [-1.0, -0.7, -0.4, -0.1, 0.0, 0.2, 0.5, 0.8, 1.0]
    assert parse_delta_option("control=-2:2") == ("control", "-2:2")


@pytest.mark.parametrize("text, message", [
    ("", "not a delta range"), ("a:b", "'a' in 'a:b' is not a number"), ("2:-2", "LOW must be below HIGH"),
    ("1:2:0", "step must be positive"), ("1:2:3:4", "not a delta range"), ("nan", "finite"),
    ("0:1000:0.001", "at most"), ("1:", "not a delta range")])
def test_bad_delta_ranges_are_one_line_errors(text, message):
    with pytest.raises(SpecError, match=message) as error:
        delta_values(text, "--delta")
    assert "\n" not in str(error.value)


# -- the numbers ----------------------------------------------------------------------------------

def test_delta_zero_reproduces_the_query_answer_exactly(padded_wellbeing, trust_fit):
    for fit in (padded_wellbeing, trust_fit):
        result = delta_adjusted(fit, EXPRESSION, deltas={"control": "-1:1"}, wave=1)
        expected = query.hypothesis(fit, EXPRESSION, wave=1).iloc[0]
        at_zero = result.grid[result.grid["delta_control"] == 0].iloc[0]
        for key in ("mean", "lower", "upper", "p_hypothesis"):
            assert result.mar[key] == expected[key] == at_zero[key]


def test_gaussian_contrast_moves_by_delta_times_the_share_missing(padded_wellbeing):
    result = delta_adjusted(padded_wellbeing, EXPRESSION, deltas={"control": "-2:2:0.1"}, wave=1)
    share = 35 / 80
    grid = result.grid
    assert len(grid) == 41 and result.scale == "points" and result.missing == {"control": (35, 80)}
    # Control non-responders scoring delta higher lower the control mean by share x delta: the contrast falls by it.
    for key in ("mean", "lower", "upper"):
        np.testing.assert_allclose(grid[key], result.mar[key] - share * grid["delta_control"], rtol=0, atol=1e-12)
    assert np.all(np.diff(grid["p_hypothesis"]) <= 0)
    assert "35 of 80" in result.method_line() and "points" in result.method


def test_tipping_point_matches_a_direct_computation_from_the_mar_draws(padded_wellbeing):
    """The tipping point, recomputed here from the MAR contrast draws, the share missing and the grid."""
    fit = padded_wellbeing
    result = delta_adjusted(fit, EXPRESSION, deltas={"control": "-2:2:0.1"}, wave=1, threshold=0.9, interval=0.9)
    hypothesis = query.parse_hypothesis(EXPRESSION, query.arms(fit))
    mar = query.contrast_draws(fit, hypothesis, query.population(fit), 1)
    share = 35 / 80
    tipping = []
    for delta in delta_values("-2:2:0.1"):
        draws = mar - share * delta
        low, high = np.quantile(draws, [0.05, 0.95])
        if np.mean(draws > 0) < 0.9 or low <= 0 <= high:
            tipping.append(delta)
    expected = min(tipping, key=abs)
    point = result.tipping_point
    assert point is not None and point.deltas == {"control": expected} and point.size == abs(expected)
    # control scoring higher than MAR assumes narrows intensive - control: it tips upwards
    assert expected > 0
    sentence = result.sentence()
    assert sentence.startswith("the 90% interval includes 0" if point.reasons == ("interval",)
                               else "P(intensive - control > 0) falls below 0.90")
    assert f"delta_control = +{expected:g} points" in sentence
    assert f"control non-responders would have to score {expected:g} points higher" in sentence


def test_a_known_shift_recovers_the_all_randomised_contrast(padded_wellbeing):
    """Pattern-mixture truth: if control's non-responders score 1.2 points above MAR, the all-randomised
    control mean is the MAR mean + share x 1.2; shifting by the true delta gives that contrast draw for draw,
    and the tipping point lies where the truth's contrast draws first meet the criterion."""
    fit = padded_wellbeing
    hypothesis = query.parse_hypothesis(EXPRESSION, query.arms(fit))
    means = query.arm_means(fit, wave=1)
    share, true_delta = 35 / 80, 1.2
    true_contrast = means["intensive"] - (means["control"] + share * true_delta)
    result = delta_adjusted(fit, EXPRESSION, deltas={"control": true_delta}, wave=1)
    row = result.grid.iloc[0]
    expected = query.answer(true_contrast, hypothesis, 1.0, 0.9)
    for key in ("mean", "lower", "upper", "p_hypothesis"):
        assert row[key] == pytest.approx(expected[key], abs=1e-12)


def test_product_grid_tips_by_the_largest_shift(padded_wellbeing):
    result = delta_adjusted(padded_wellbeing, EXPRESSION, deltas={"control": "-1:1:0.5", "Intensive": "-1:1:0.5"},
                            wave=1)
    assert len(result.grid) == 25 and {"delta_control", "delta_intensive"} <= set(result.grid.columns)
    tipping = result.grid[result.grid["tips"]]
    sizes = tipping[["delta_control", "delta_intensive"]].abs().max(axis=1)
    assert result.tipping_point.size == sizes.min()
    # control up and intensive down both narrow the contrast
    assert result.tipping_point.deltas["control"] >= 0 >= result.tipping_point.deltas["intensive"]


def test_ordinal_shift_is_on_the_latent_scale_finite_and_monotone(trust_fit):
    started = time.perf_counter()
    result = delta_adjusted(trust_fit, EXPRESSION, deltas={"control": "-3:3:0.25"}, wave=1)
    assert time.perf_counter() - started < 30
    grid = result.grid
    assert result.scale == "latent log-odds" and "latent log-odds" in result.method
    assert np.isfinite(grid[["mean", "lower", "upper", "p_hypothesis"]].to_numpy()).all()
    # each draw's imputed control answers rise with delta, so the contrast falls, draw by draw
    assert np.all(np.diff(grid["mean"]) < 0) and np.all(np.diff(grid["p_hypothesis"]) <= 0)
    # a mean shift on a 1-5 item is bounded: share x 4 points at most
    assert (grid["mean"] - result.mar["mean"]).abs().max() < 35 / 80 * 4


def test_a_conclusion_that_fails_under_mar_says_where_it_would_hold(padded_wellbeing):
    # "control - intensive > 0" is doubtful under MAR; control non-responders scoring higher would make it hold.
    result = delta_adjusted(padded_wellbeing, "control - intensive > 0", deltas={"control": "-4:4:0.1"}, wave=1)
    assert result.tipping_point.size == 0
    holding = result.grid[~result.grid["tips"]]
    first = holding.loc[holding["delta_control"].abs().idxmin(), "delta_control"]
    assert first > 0 and result.sentence().startswith("already at delta = 0 (missing at random) P(control - intensive > 0)")
    assert (f"it would hold (P(control - intensive > 0) at least 0.90, the 90% interval excluding 0) from "
            f"delta_control = +{first:g} points: control non-responders would have to score {first:g} points higher"
            in result.sentence())


def test_an_arm_without_missing_answers_warns_that_delta_has_no_effect(wellbeing_fit):
    # The unpadded survey records no missing wellbeing: delta changes nothing, which the result says.
    result = delta_adjusted(wellbeing_fit, EXPRESSION, deltas={"control": "-2:2"}, wave=1)
    assert any("no missing wellbeing at wave 1" in w and "has no effect" in w for w in result.warnings)
    assert (result.grid["mean"] == result.mar["mean"]).all() and (result.grid["p_hypothesis"] == result.mar["p_hypothesis"]).all()
    assert result.tipping_point is None and result.sentence().startswith("no delta tips it")


def test_figure_has_both_panels(padded_wellbeing):
    result = delta_adjusted(padded_wellbeing, EXPRESSION, deltas={"control": "-2:2"}, wave=1)
    figure = plot_delta_adjusted(result)
    top, bottom = figure.axes
    assert "P(intensive - control > 0)" in top.get_ylabel() and "points" in bottom.get_xlabel()
    assert any("tips at delta_control" in text.get_text() for text in top.texts)


# -- errors ---------------------------------------------------------------------------------------

def test_api_errors_are_one_line(padded_wellbeing, outflow_fit):
    cases = [
        (padded_wellbeing, {"controle": "-2:2"}, "unknown arm 'controle' (arms in this fit: control, exemption, intensive)"),
        (padded_wellbeing, {"control": "low:high"}, "is not a number"),
        (padded_wellbeing, {}, "give at least one"),
        (outflow_fit, {"control": "-2:2"}, "delta adjustment is for survey outcomes; outflow models outflow_work "
                                           "from the register"),
    ]
    for fit, deltas, message in cases:
        with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
            delta_adjusted(fit, EXPRESSION, deltas=deltas)
        assert "\n" not in str(error.value)


def test_a_hazard_fit_is_refused_in_one_line():
    spec = bt.load_spec("outflow_hazard")
    hazard = type("HazardFit", (), {"spec": spec, "family": registry.get(spec.family)})()
    with pytest.raises(SpecError, match="outflow_hazard is a discrete-time hazard fit") as error:
        check_delta_fit(hazard)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def padded_wellbeing_path(padded_wellbeing, tmp_path_factory):
    return bt.save(padded_wellbeing, tmp_path_factory.mktemp("sensitivity") / "wellbeing.nc")


@pytest.mark.parametrize("delta, message", [
    ("controle=-2:2", "unknown arm 'controle' (arms in this fit: control, exemption, intensive)"),
    ("control=low:2", "'low' in 'low:2' is not a number"),
    ("control=", "not a delta range"),
    ("=-2:2", "expected ARM=LOW:HIGH"),
])
def test_cli_bad_deltas_exit_2_with_one_line(padded_wellbeing_path, capsys, delta, message):
    code = cli.main(["sensitivity", str(padded_wellbeing_path), EXPRESSION, "--wave", "1", "--delta", delta])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err


def test_cli_refuses_a_register_outcome(outflow_fit_path, capsys):
    code = cli.main(["sensitivity", str(outflow_fit_path), EXPRESSION, "--delta", "control=-2:2"])
    err = capsys.readouterr().err
    assert code == 2 and "delta adjustment is for survey outcomes; outflow models outflow_work from the register" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_prints_the_tipping_point_and_writes_grid_and_figure(padded_wellbeing_path, tmp_path, capsys):
    started = time.perf_counter()
    code = cli.main(["sensitivity", str(padded_wellbeing_path), EXPRESSION, "--wave", "t1", "--delta",
                     "control=-2:2:0.1", "--out", str(tmp_path)])
    seconds = time.perf_counter() - started
    out = capsys.readouterr().out
    assert code == 0 and seconds < 30
    assert "Missing at wave 1: control 44% (35 of 80)" in out and "Missing at random (delta = 0)" in out
    assert "41 points" in out and "control non-responders would have to score" in out
    grid = pd.read_csv(tmp_path / "sensitivity.csv")
    assert len(grid) == 41 and {"delta_control", "mean", "lower", "upper", "p_hypothesis", "tips"} <= set(grid.columns)
    assert (tmp_path / "sensitivity.png").stat().st_size > 0 and (tmp_path / "sensitivity.svg").exists()
    assert cli.main(["sensitivity", str(padded_wellbeing_path), EXPRESSION, "--wave", "1", "--delta", "control=-2:2",
                     "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["tipping_point"]["deltas"]["control"] > 0 and len(answer["grid"]) == 21


# -- workflow -------------------------------------------------------------------------------------

WORKFLOW = """
name = "sens"
out = "{out}"
[data]
design = "small"
seed = 3
[[models]]
spec = "wellbeing"
draws = {draws}
tune = {tune}
chains = {chains}
seed = {seed}
"""


@pytest.mark.parametrize("block, message", [
    ('model = "wellbeing"\nexpression = "intensive - control > 0"\ndelta = { control = "-2:2" }\ncolour = 1',
     "unknown key(s) colour"),
    ('model = "trust_item"\nexpression = "intensive - control > 0"\ndelta = { control = "-2:2" }', "needs 'model'"),
    ('model = "wellbeing"\nexpression = "intensive - control > 0"', "needs 'delta'"),
    ('model = "outflow"\nexpression = "intensive - control > 0"\ndelta = { control = "-2:2" }',
     "delta adjustment is for survey outcomes; outflow models outflow_work from the register"),
    ('model = "wellbeing"\nexpression = "intensive - control > 0"\ndelta = { control = "-2:x" }', "is not a number"),
    ('model = "wellbeing"\nexpression = "intensive - control > 0"\ndelta = { control = "-2:2" }\nthreshold = 1.5',
     "threshold must be a number between 0 and 1"),
])
def test_workflow_sensitivity_blocks_are_validated(tmp_path, block, message):
    path = tmp_path / "sens.toml"
    path.write_text(WORKFLOW.format(out=tmp_path, **FAST) + '[[models]]\nspec = "outflow"\n\n[[sensitivity]]\n' + block + "\n")
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        runner.load_workflow(path)
    assert "\n" not in str(error.value)


def test_workflow_runs_sensitivity_blocks_into_csv_and_report(tmp_path, wellbeing_fit, padded_wellbeing, monkeypatch):
    """A workflow whose wellbeing fit is the shared one (reused: same spec, seed and data), with a block."""
    path = tmp_path / "sens.toml"
    path.write_text(WORKFLOW.format(out=tmp_path, **FAST) + '\n[[sensitivity]]\nmodel = "wellbeing"\n'
                    'expression = "intensive - control > 0"\nwave = 1\ndelta = { control = "-2:2" }\nthreshold = 0.9\n')
    workflow = runner.load_workflow(path)
    assert workflow.sensitivity[0]["delta"] == {"control": "-2:2"}
    # The runner fits the survey padded with the register's non-responders: the stored fit stands for that fit.
    frame = runner.model_frames(workflow)["wellbeing"]
    stored = _with_record(padded_wellbeing, padded_wellbeing.prepared.missing, data_hash=bt.data_hash(frame))
    bt.save(stored, tmp_path / "fits" / "wellbeing.nc")
    monkeypatch.setattr(report, "fit_blocks", lambda fit, figure_dir, **kwargs: [report.Block("h2", fit.spec.name)])
    monkeypatch.setattr(report.diagnose_mod, "diagnose", lambda fit, *a, **k: _passing())
    monkeypatch.setattr(report, "fit_prior_check", lambda fit: "prior check not run in this test")
    outputs = runner.run(workflow, progress=False)
    grid = pd.read_csv(outputs["sensitivity"])
    assert len(grid) == 21 and set(grid["model"]) == {"wellbeing"} and grid["tips"].any()
    markdown = outputs["md"].read_text()
    assert "Sensitivity to survey answers missing not at random" in markdown
    assert "control 44% (35 of 80)" in markdown and "control non-responders would have to score" in markdown
    assert (tmp_path / "figures" / "sensitivity" / "wellbeing_1.png").exists()


def _passing():
    return type("Passing", (), {"passed": True, "failed": ()})()
