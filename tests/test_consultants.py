"""The consultant-variance study: grid designs, the coverage table, one tiny end-to-end run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.batch import consultants
from bayes_trial.modelling.frames import prepare, resolve_priors

BASE = "data/validation/designs/consultants.toml"


def _pools(sim, town_prefix: str) -> dict[str, set[str]]:
    register = sim.register[sim.register["participant_id"].str.startswith(town_prefix)]
    return {arm: set(g["consultant_id"]) for arm, g in register.groupby("arm", observed=True)}


@pytest.mark.parametrize("per_arm", [2, 8])
def test_designs_have_the_asked_consultants_nested_or_shared(per_arm):
    nested = consultants.consultant_design(BASE, per_arm, "nested", 0.5)
    shared = consultants.consultant_design(BASE, per_arm, "shared", 0.5)
    assert nested["outflow"]["consultant_sd"] == 0.5 and nested["outcomes"]["wellbeing"]["consultant_sd"] == 0.5
    for design, nesting in ((nested, "nested"), (shared, "shared")):
        sim = bt.simulate(design, seed=1)
        prefix = design["towns"][0]["id_prefix"]
        pools = _pools(sim, prefix)
        every = set().union(*pools.values())
        pool_sizes = sim.truth["n_consultants"][design["towns"][0]["name"]]
        if nesting == "nested":
            assert len(every) == 3 * per_arm and all(len(p) == per_arm for p in pools.values())
            assert pool_sizes == {"control": per_arm, "exemption": per_arm, "intensive": per_arm}
            assert sum(len(p) for p in pools.values()) == len(every)  # no consultant in two arms
        else:  # every one of the town's 3 x per_arm consultants may serve every arm
            assert pool_sizes == {"control": 3 * per_arm, "exemption": 3 * per_arm, "intensive": 3 * per_arm}
            assert len(pools["control"] & pools["intensive"]) >= per_arm
    with pytest.raises(bt.SpecError, match="nesting"):
        consultants.consultant_design(BASE, 2, "crossed", 0.5)


def test_layout_seed_fixes_persons_and_consultants_but_not_outcomes():
    design = consultants.consultant_design(BASE, 4, "nested", 0.8)
    a, b = bt.simulate(design, seed=5, layout_seed=1), bt.simulate(design, seed=6, layout_seed=1)
    columns = ["participant_id", "arm", "consultant_id"]
    pd.testing.assert_frame_equal(a.register[columns], b.register[columns])
    assert not np.array_equal(a.survey["wellbeing"], b.survey["wellbeing"])
    plain = bt.simulate(design, seed=5)
    pd.testing.assert_frame_equal(bt.simulate(design, seed=5, layout_seed=5).survey, plain.survey)
    with pytest.raises(bt.SpecError, match="layout_seed"):
        bt.simulate(design, seed=5, layout_seed=-1)


def test_grid_and_contrasts():
    grid = consultants.study_grid(("wellbeing", "outflow"), (2, 4, 8))
    assert len(grid) == 36 and len({c.key for c in grid}) == 36
    assert grid[0].key == "wellbeing_k2_nested_sd0.2"
    draws = {"arm[intensive]": np.array([1.0, 2.0]), "arm:wave[intensive, 1]": np.array([0.5, 0.5]),
             "arm:wave[intensive, 2]": np.array([1.0, 3.0]), "sigma": np.array([1.0, 1.0])}
    truth = {"arm[intensive]": 0.1, "arm:wave[intensive, 1]": 0.2, "arm:wave[intensive, 2]": 0.4}
    out = consultants.arm_contrasts(draws, truth)
    values, true = out["arm[intensive] + arm:wave[intensive, 2]"]
    assert list(out) == ["arm[intensive] + arm:wave[intensive, 2]"]
    np.testing.assert_allclose(values, [2.0, 5.0])
    assert true == pytest.approx(0.5)
    assert list(consultants.arm_contrasts({"arm[a]": np.ones(2)}, {"arm[a]": 0.3})) == ["arm[a]"]


def test_coverage_table_from_a_hand_made_frame():
    rows = []
    for i in range(20):  # 15 of 20 intervals hold the truth 0.5; estimates 0.6 or 0.4
        rows.append({"spec": "outflow", "per_arm": 2, "nesting": "nested", "true_sd": 0.5,
                     "parameter": consultants.CONSULTANT_SD, "truth": 0.5, "mean": 0.6 if i % 2 else 0.4,
                     "low": 0.3, "high": 0.9, "covered": i < 15, "divergences": int(i == 0)})
    for i in range(10):  # all 10 cover
        rows.append({"spec": "outflow", "per_arm": 8, "nesting": "shared", "true_sd": 0.5,
                     "parameter": "arm[intensive]", "truth": 0.6, "mean": 0.7, "low": 0.0, "high": 1.0,
                     "covered": True, "divergences": 0})
    table = consultants.coverage_table(pd.DataFrame(rows)).set_index("per_arm")
    low = table.loc[2]
    assert low["sims"] == 20 and low["coverage"] == pytest.approx(0.75)
    assert low["coverage_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 20))
    assert low["mean"] == pytest.approx(0.5) and low["bias"] == pytest.approx(0.0)
    assert low["mean_width"] == pytest.approx(0.6) and low["diverged"] == pytest.approx(0.05)
    high = table.loc[8]
    assert high["coverage"] == 1.0 and high["coverage_se"] == pytest.approx(math.sqrt(0.9 * 0.1 / 10))
    assert high["bias"] == pytest.approx(0.1) and high["bias_se"] == pytest.approx(0.0)


def test_a_tiny_study_writes_its_files(tmp_path):
    cells = [consultants.Cell("outflow", 2, "nested", 0.5)]
    result = consultants.consultant_study(BASE, cells, sims=2, out=tmp_path, n_workers=1, progress=False,
                                          draws=100, tune=100, chains=2)
    assert not result.failed
    est = result.estimates
    assert est["sim"].nunique() == 2
    assert set(est["parameter"]) == {consultants.CONSULTANT_SD, "arm[exemption]", "arm[intensive]"}
    assert (est.loc[est["parameter"] == consultants.CONSULTANT_SD, "truth"] == 0.5).all()
    assert (est["low"] <= est["mean"]).all() and (est["mean"] <= est["high"]).all()
    assert (result.coverage["sims"] == 2).all()
    by_parameter = result.coverage.set_index("parameter")
    assert est.loc[est["parameter"] != consultants.CONSULTANT_SD, "prior_sd"].tolist() == pytest.approx([0.5] * 4)
    assert by_parameter.loc["arm[intensive]", "prior_pull"] < 0 and np.isnan(by_parameter.loc[consultants.CONSULTANT_SD, "prior_pull"])
    for name in ("estimates", "coverage", "coverage_png", "coverage_svg"):
        assert result.files[name].stat().st_size > 0
    assert len(list((tmp_path / "runs").glob("*.json"))) >= 2
    with pytest.raises(bt.SpecError, match="sims"):
        consultants.consultant_study(BASE, cells, sims=0, out=tmp_path)


def test_prior_pull_explains_a_bias_made_by_the_prior_alone():
    # Posterior means shrunk towards 0 by the normal approximation's share sd^2 / prior_sd^2 of a
    # Normal(0, 0.5) prior: the whole bias is the prior's pull.
    truth, sd, prior_sd = 0.6, 0.3, 0.5
    shrunk = truth * (1 - sd**2 / prior_sd**2)
    rows = [{"spec": "outflow", "per_arm": 2, "nesting": "nested", "true_sd": 0.5, "parameter": "arm[intensive]",
             "truth": truth, "mean": shrunk + noise, "sd": sd, "prior_sd": prior_sd, "low": -1.0, "high": 2.0,
             "covered": True, "divergences": 0} for noise in (-0.05, 0.05)]
    row = consultants.coverage_table(pd.DataFrame(rows)).iloc[0]
    assert row["bias"] == pytest.approx(-0.216)
    assert row["prior_pull"] == pytest.approx(-0.216)
    assert row["bias_beyond_prior"] == pytest.approx(0.0, abs=1e-12)


def test_contrast_prior_sd_reads_the_resolved_priors():
    sim = bt.simulate(consultants.consultant_design(BASE, 2, "nested", 0.5), seed=1)
    outflow = bt.load_spec("outflow")
    assert consultants.contrast_prior_sd(outflow, sim.register, "arm[intensive]") == pytest.approx(0.5)
    wellbeing = bt.load_spec("wellbeing")
    priors = resolve_priors(wellbeing, prepare(wellbeing, sim.survey)).spec.priors
    expected = math.hypot(priors["arm"].params["sigma"], priors["arm:wave"].params["sigma"])
    label = "arm[intensive] + arm:wave[intensive, 1]"
    assert consultants.contrast_prior_sd(wellbeing, sim.survey, label) == pytest.approx(expected)
    heavy_tailed = outflow.with_priors({"arm": bt.parse_prior("StudentT(3, 0, 1)")})
    assert math.isnan(consultants.contrast_prior_sd(heavy_tailed, sim.register, "arm[intensive]"))
