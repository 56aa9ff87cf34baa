import numpy as np
import pandas as pd
import pytest

from bayes_trial.batch.attrition import ANALYSES, attrition_study, coverage_table, true_deltas
from bayes_trial.core.errors import SpecError
from bayes_trial.simulation.design import load_design
from bayes_trial.simulation.generate import simulate

DESIGNS = "data/validation/designs/attrition_{}.toml"


def test_true_delta_comes_from_the_design_and_is_empty_when_ignorable():
    mnar = simulate(load_design(DESIGNS.format("mnar")), seed=1).truth
    mar = simulate(load_design(DESIGNS.format("mar")), seed=1).truth
    assert true_deltas(mnar, "wellbeing") == {"control": -1.5}
    assert true_deltas(mnar, "health") == {} and true_deltas(mar, "wellbeing") == {}


def test_coverage_counts_intervals_holding_the_truth_per_mechanism_and_analysis():
    rng = np.random.default_rng(1)
    rows = []
    for sim in range(40):
        for analysis in ANALYSES:
            centre = rng.normal(0.7 if analysis == ANALYSES[0] else 0.0, 0.3)
            rows.append({"sim": f"mnar_sim{sim}", "mechanism": "mnar", "contrast": "intensive - control", "wave": 2,
                         "analysis": analysis, "truth": 0.0, "mean": centre, "low": centre - 0.5, "high": centre + 0.5,
                         "covered": abs(centre) <= 0.5, "nonresponse_control": 0.47})
    table = coverage_table(pd.DataFrame(rows)).set_index("analysis")
    assert table.loc[ANALYSES[1], "coverage"] > 0.8 > 0.4 > table.loc[ANALYSES[0], "coverage"]
    assert table.loc[ANALYSES[0], "bias"] == pytest.approx(0.7, abs=0.15)
    assert (table["sims"] == 40).all()


def test_register_outcome_is_refused(tmp_path):
    with pytest.raises(SpecError, match="non-response concerns survey outcomes"):
        attrition_study({"mar": DESIGNS.format("mar")}, "outflow", sims=1, out=tmp_path)


@pytest.mark.slow
def test_one_trial_per_mechanism_runs_end_to_end(tmp_path):
    designs = {m: DESIGNS.format(m) for m in ("mar", "mnar")}
    result = attrition_study(designs, sims=1, out=tmp_path, n_workers=1, progress=False, draws=150, tune=150)
    assert not result.failed
    est = result.estimates.set_index(["mechanism", "contrast", "analysis"])
    # Under MAR the true delta is 0: the adjusted answer is the MAR answer. Under MNAR (control delta
    # -1.5) it moves every contrast with control up by 1.5 x control's non-response share.
    mar = est.loc["mar"]
    assert np.allclose(mar.xs(ANALYSES[0], level="analysis")["mean"], mar.xs(ANALYSES[1], level="analysis")["mean"])
    mnar = est.loc["mnar"]
    shift = mnar.xs(ANALYSES[1], level="analysis")["mean"] - mnar.xs(ANALYSES[0], level="analysis")["mean"]
    assert np.allclose(shift, 1.5 * mnar["nonresponse_control"].iloc[0], atol=1e-6)
    assert {p.name for p in tmp_path.iterdir()} >= {"estimates.csv", "coverage.csv", "coverage.png", "runs"}
