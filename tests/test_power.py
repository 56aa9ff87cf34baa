"""Power and assurance by simulation and refitting (a two-fit run; the rest without sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.batch import power as pw

FAST = {"draws": 150, "tune": 200, "chains": 2}


def test_targets_are_read_as_query_reads_them_and_checked_against_the_design():
    arms = ["control", "exemption", "intensive"]
    target = pw.parse_target("intensive - control > 2pp", arms)
    assert (target.weights, target.compare, target.threshold) == ({"intensive": 1.0, "control": -1.0}, ">", 0.02)
    assert pw.parse_target(" exemption-control < -2.5 ", arms).threshold == -2.5
    for bad, message in (("job - control > 0", "unknown arm 'job'"), ("control - control > 0", "cancel out"),
                         ("intensive - control > two", "not a number")):
        with pytest.raises(bt.SpecError, match=message):
            pw.parse_target(bad, arms)


def test_scaling_a_design_keeps_its_towns_in_proportion():
    nl7 = bt.load_design("nl7")
    scaled = pw.scale_design(nl7, 100)
    for arm in nl7["arms"]:
        counts = [t["participants"][arm] for t in scaled["towns"] if arm in t["participants"]]
        assert sum(counts) == 100 and min(counts) >= 1
    groningen = next(t for t in scaled["towns"] if t["name"] == "Groningen")
    assert groningen["participants"]["disregard"] > next(t for t in scaled["towns"] if t["name"] == "Deventer")["participants"]["disregard"]
    assert scaled["towns"][0]["consultants"] == nl7["towns"][0]["consultants"]
    with pytest.raises(bt.SpecError, match="at least one participant per town"):
        pw.scale_design(nl7, 3)


def test_assurance_draws_effects_per_simulation_not_per_size():
    design = bt.load_design("small")
    spec = bt.load_spec("outflow")
    a = pw.with_drawn_effects(pw.scale_design(design, 20), spec, np.random.default_rng([1, 0]), 0.5)
    b = pw.with_drawn_effects(pw.scale_design(design, 80), spec, np.random.default_rng([1, 0]), 0.5)
    assert a["outflow"]["probability"] == b["outflow"]["probability"]
    assert a["outflow"]["probability"]["control"] == design["outflow"]["probability"]["control"]
    assert a["outflow"]["probability"]["intensive"] != design["outflow"]["probability"]["intensive"]
    survey = pw.with_drawn_effects(design, bt.load_spec("wellbeing"), np.random.default_rng(3), 0.5)
    shifted = np.subtract(survey["outcomes"]["wellbeing"]["arm_effects"]["intensive"],
                          design["outcomes"]["wellbeing"]["arm_effects"]["intensive"])
    assert np.ptp(shifted) == 0 and shifted[0] != 0  # one shift for every wave after baseline


def test_power_table_counts_decisions_with_wilson_intervals():
    trials = pd.DataFrame({"n_per_arm": [50] * 4 + [100] * 4, "probability": [0.2, 0.96, 0.5, 0.95, 0.99, 0.97, 0.8, 1.0],
                           "effect_mean": 1.0, "divergences": [0, 0, 2, 0, 0, 0, 0, 0]})
    table = pw.power_table(trials, threshold=0.95).set_index("n_per_arm")
    assert table.loc[50, "successes"] == 2 and table.loc[100, "rate"] == 0.75
    assert table.loc[50, "lower95"] < 0.5 < table.loc[50, "upper95"]
    assert table.loc[50, "fits_with_divergences"] == 1
    low, high = pw.wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-3)


def test_power_run_fits_every_size_and_resumes(tmp_path):
    result = pw.power("small", n_per_arm=[20, 60], target="intensive - control > -100pp", threshold=0.95, sims=1,
                      spec="outflow", out=tmp_path, n_workers=1, progress=False, **FAST)
    assert not result.failed
    assert list(result.table["n_per_arm"]) == [20, 60]
    assert (result.table["rate"] == 1.0).all()  # an effect above -100 pp is certain
    assert result.trials["effect_mean"].between(-100, 100).all()  # percentage points, as `query` prints them
    for name in ("power", "trials", "power_curve_png", "power_curve_svg"):
        assert result.files[name].stat().st_size > 0
    stricter = pw.power("small", n_per_arm=[20, 60], target="intensive - control > -100pp", threshold=0.999999,
                        sims=1, spec="outflow", out=tmp_path, progress=False, **FAST)  # stored fits, new decision
    pd.testing.assert_frame_equal(stricter.trials, result.trials)
    with pytest.raises(bt.BayesTrialError, match="other settings"):
        pw.power("small", n_per_arm=[20], target="exemption - control > 0", sims=1, spec="outflow", out=tmp_path,
                 progress=False, **FAST)


def test_bad_power_requests_are_refused(tmp_path):
    for kwargs, message in (({"n_per_arm": [0]}, "n_per_arm"), ({"threshold": 1.0}, "threshold"),
                            ({"effect_sd": -1.0}, "effect_sd"), ({"spec": "wellbeing", "wave": 5}, "wave")):
        with pytest.raises(bt.SpecError, match=message):
            pw.power("small", out=tmp_path, **kwargs)


@pytest.mark.slow
def test_power_rises_with_size_for_a_large_effect(tmp_path):
    design = bt.load_design("oss")
    design["outflow"]["probability"] = {"control": 0.2, "self_direction": 0.2, "intensive": 0.45}
    result = pw.power(design, n_per_arm=[15, 150], target="intensive - control > 0", sims=6, spec="outflow",
                      out=tmp_path, progress=False, draws=300, tune=300, chains=2)
    rates = result.table.set_index("n_per_arm")["rate"]
    assert rates[150] >= 5 / 6 and rates[150] > rates[15]


def test_power_command_prints_the_curve_table_and_refuses_bad_sizes(tmp_path, capsys):
    from bayes_trial.cli import commands as cli

    args = ["power", "--design", "small", "--spec", "outflow", "--target", "intensive - control > -100pp",
            "--sims", "1", "--workers", "1", "--draws", "150", "--tune", "200", "--chains", "2", "--quiet"]
    assert cli.main([*args, "--n-per-arm", "20", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "Power of P(intensive - control > -100pp) >= 0.95" in printed and "power_curve.png" in printed
    assert pd.read_csv(tmp_path / "power.csv")["rate"].tolist() == [1.0]
    assert cli.main([*args, "--n-per-arm", "20,lots", "--out", str(tmp_path / "bad")]) == 2
    assert "--n-per-arm '20,lots'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
