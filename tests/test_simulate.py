"""Tests for the trial simulator (no model fitting)."""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import tomli_w

from bayes_trial.core.errors import SpecError
from bayes_trial.simulation.design import (
    REGISTER_COLUMNS,
    bundled_designs,
    load_design,
    validate_design,
)
from bayes_trial.simulation.generate import (
    Simulation,
    read_simulation,
    simulate,
    write_simulation,
)

BUNDLED = ["oss", "nl7", "small", "recovery"]


@pytest.fixture(scope="module")
def designs():
    return {name: load_design(name) for name in BUNDLED}


@pytest.fixture(scope="module")
def sims(designs):
    return {name: simulate(d, 11) for name, d in designs.items()}


# ---------------------------------------------------------------------------------------------
# designs
# ---------------------------------------------------------------------------------------------


def test_bundled_designs_present():
    assert set(BUNDLED) <= set(bundled_designs())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_design_loads(designs, name):
    d = designs[name]
    assert d["name"] == name
    assert d["arms"][0] == d["control_arm"] == "control"
    # normalised designs validate to themselves (idempotent)
    assert validate_design(copy.deepcopy(d)) == d


def test_load_design_by_path(designs):
    from bayes_trial.core.paths import DESIGNS_DIR

    assert load_design(DESIGNS_DIR / "oss.toml") == designs["oss"]
    assert load_design(str(DESIGNS_DIR / "small.toml")) == designs["small"]


def test_unknown_design_name():
    with pytest.raises(SpecError, match="no-such-design"):
        load_design("no-such-design")


def test_oss_design_matches_report(designs):
    d = designs["oss"]
    assert d["arms"] == ["control", "self_direction", "intensive"]
    (town,) = d["towns"]
    assert town["participants"] == {"control": 119, "self_direction": 111, "intensive": 115}
    assert d["response"]["control"] == [0.74, 0.40, 0.48]
    assert d["response"]["self_direction"] == [0.91, 0.82, 0.65]
    assert d["response"]["intensive"] == [0.88, 0.69, 0.66]
    p = d["outflow"]["probability"]
    assert p["control"] == pytest.approx(35 / 119, abs=1e-3)
    assert p["self_direction"] == pytest.approx(38 / 111, abs=1e-3)
    assert p["intensive"] == pytest.approx(33 / 115, abs=1e-3)
    scales = {k: o["scale"] for k, o in d["outcomes"].items()}
    assert scales["wellbeing"] == scales["health"] == "score"
    assert "ordinal" in scales.values() and "count" in scales.values()


def test_nl7_sizes(designs):
    d = designs["nl7"]
    totals = {t["name"]: sum(t["participants"].values()) for t in d["towns"]}
    assert totals == {"Oss": 345, "Nijmegen": 389, "Deventer": 364, "Groningen": 890,
                      "Tilburg": 780, "Utrecht": 710, "Wageningen": 410}
    nijmegen = next(t for t in d["towns"] if t["name"] == "Nijmegen")
    assert nijmegen["consultants"]["exemption"] == 0
    assert len({frozenset(t["participants"]) for t in d["towns"]}) > 1  # arms vary by town


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_data(designs):
    a = simulate(designs["small"], 5)
    b = simulate(copy.deepcopy(designs["small"]), 5)
    pd.testing.assert_frame_equal(a.survey, b.survey)
    pd.testing.assert_frame_equal(a.register, b.register)
    assert a.truth == b.truth


def test_different_seed_different_data(designs):
    a = simulate(designs["small"], 5)
    b = simulate(designs["small"], 6)
    assert not a.survey.equals(b.survey)
    assert not a.register.equals(b.register)
    assert a.truth["seed"] == 5 and b.truth["seed"] == 6


def test_no_global_random_state(designs):
    np.random.seed(0)
    a = simulate(designs["small"], 3)
    np.random.seed(99)
    _ = np.random.random(10)
    b = simulate(designs["small"], 3)
    pd.testing.assert_frame_equal(a.survey, b.survey)


def test_raw_toml_dict_equals_loaded(designs):
    import tomllib

    from bayes_trial.core.paths import DESIGNS_DIR

    raw = tomllib.loads((DESIGNS_DIR / "small.toml").read_text())
    a = simulate(raw, 2)
    b = simulate(designs["small"], 2)
    pd.testing.assert_frame_equal(a.survey, b.survey)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed(designs, seed):
    with pytest.raises(SpecError, match="seed"):
        simulate(designs["small"], seed)


# ---------------------------------------------------------------------------------------------
# data contract
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_columns_and_dtypes(designs, sims, name):
    sim = sims[name]
    assert isinstance(sim, Simulation)
    outcomes = list(designs[name]["outcomes"])
    assert list(sim.survey.columns) == (
        ["participant_id", "municipality", "arm", "consultant_id", "wave"] + outcomes + ["age", "stock"])
    assert list(sim.register.columns) == list(REGISTER_COLUMNS)
    for frame in (sim.survey, sim.register):
        for col in ("participant_id", "municipality", "arm", "consultant_id"):
            assert pd.api.types.is_string_dtype(frame[col]), col
        for col in ("age", "stock"):
            assert frame[col].dtype == np.int64
        assert set(frame["stock"].unique()) <= {0, 1}
        assert frame.index.equals(pd.RangeIndex(len(frame)))
    assert sim.survey["wave"].dtype == np.int64
    for col in ("outflow_work", "months_followed"):
        assert sim.register[col].dtype == np.int64
    assert sim.register["months_to_outflow"].dtype == np.float64


@pytest.mark.parametrize("name", BUNDLED)
def test_counts_per_town_and_arm(designs, sims, name):
    reg = sims[name].register
    got = reg.groupby(["municipality", "arm"]).size().to_dict()
    want = {(t["name"], a): n for t in designs[name]["towns"] for a, n in t["participants"].items()}
    assert got == want
    assert sims[name].truth["n_randomised"] == {t["name"]: t["participants"] for t in designs[name]["towns"]}


@pytest.mark.parametrize("name", BUNDLED)
def test_ids_and_survey_register_agree(sims, name):
    sim = sims[name]
    reg, sur = sim.register, sim.survey
    assert reg["participant_id"].is_unique
    assert not sur.duplicated(["participant_id", "wave"]).any()
    assert set(sur["participant_id"]) <= set(reg["participant_id"])
    merged = sur.merge(reg, on="participant_id", suffixes=("", "_reg"))
    for col in ("municipality", "arm", "age", "stock"):
        assert (merged[col] == merged[f"{col}_reg"]).all(), col
    same_cons = (merged["consultant_id"] == merged["consultant_id_reg"]) | (
        merged["consultant_id"].isna() & merged["consultant_id_reg"].isna())
    assert same_cons.all()
    prefix = reg["participant_id"].str.split("-").str[0]
    assert prefix.groupby(reg["municipality"]).nunique().eq(1).all()
    assert set(sur["wave"]) <= set(range(len(sim.truth["attrition"]["response_rate"]["control"])))


def test_response_rates_near_design(designs):
    d = designs["nl7"]
    sim = simulate(d, 123)
    n_arm = sim.register.groupby("arm").size()
    resp = sim.survey.groupby(["arm", "wave"]).size()
    for arm in d["arms"]:
        for w, r in enumerate(d["response"][arm]):
            observed = resp.get((arm, w), 0) / n_arm[arm]
            se = math.sqrt(r * (1 - r) / n_arm[arm])
            assert abs(observed - r) < 4 * se + 0.005, (arm, w, observed, r)


def test_response_is_per_arm(designs):
    # Oss: control answered far less at t1 (40%) than self-direction (82%)
    sim = simulate(designs["oss"], 1)
    resp = sim.survey.groupby(["arm", "wave"]).size() / sim.register.groupby("arm").size()
    assert resp[("control", 1)] < resp[("self_direction", 1)] - 0.2


@pytest.mark.parametrize("name", BUNDLED)
def test_outcome_ranges(designs, sims, name):
    sur = sims[name].survey
    for oname, o in designs[name]["outcomes"].items():
        y = sur[oname]
        assert y.notna().all()
        if o["scale"] == "score":
            assert y.dtype == np.float64
            assert y.min() >= o["lower"] and y.max() <= o["upper"]
            assert np.allclose(y, y.round(o["decimals"]))
        elif o["scale"] == "ordinal":
            assert y.dtype == np.int64
            assert y.min() >= o["lower"] and y.max() <= o["upper"]
            assert o["upper"] - o["lower"] == len(o["cutpoints"])
        else:
            assert y.dtype == np.int64
            assert y.min() >= 0


def test_realistic_magnitudes(designs):
    oss = designs["oss"]
    sims = [simulate(oss, s) for s in range(8)]
    base = np.mean([s.survey.loc[s.survey.wave == 0, "wellbeing"].mean() for s in sims])
    assert 5.3 < base < 6.2  # reported 5.7 at t0
    outflow = np.mean([s.register["outflow_work"].mean() for s in sims])
    assert 0.24 < outflow < 0.38  # about 30% in two years
    apps = np.concatenate([s.survey["job_applications"].to_numpy() for s in sims])
    assert (apps == 0).mean() > 0.3  # many zeros
    trust = np.concatenate([s.survey["trust_item"].to_numpy() for s in sims])
    assert set(np.unique(trust)) == {1, 2, 3, 4, 5}


def test_score_effects_point_in_the_right_direction(designs):
    # recovery design: intensive wellbeing effect at wave 2 is +0.8 over control
    sims = [simulate(designs["recovery"], s) for s in range(4)]
    diffs = []
    for s in sims:
        m = s.survey.groupby(["arm", "wave"])["wellbeing"].mean()
        diffs.append((m[("intensive", 2)] - m[("control", 2)]) - (m[("intensive", 0)] - m[("control", 0)]))
    assert 0.4 < np.mean(diffs) < 1.2


@pytest.mark.parametrize("name", BUNDLED)
def test_outflow_consistent_with_months(designs, sims, name):
    reg = sims[name].register
    fu = designs[name]["follow_up"]
    left = reg["outflow_work"] == 1
    assert set(reg["outflow_work"].unique()) <= {0, 1}
    assert reg.loc[~left, "months_to_outflow"].isna().all()
    m = reg.loc[left, "months_to_outflow"]
    assert m.notna().all()
    assert (m >= 1).all() and (m == m.round()).all()
    assert (m <= reg.loc[left, "months_followed"]).all()
    # outflow_work == 1 exactly when months_to_outflow <= months_followed
    within = reg["months_to_outflow"].le(reg["months_followed"]).fillna(False)
    assert (within == left).all()
    stock = reg["stock"] == 1
    assert (reg.loc[stock, "months_followed"] == fu["stock_months"]).all()
    inflow = reg.loc[~stock, "months_followed"]
    assert inflow.between(fu["inflow_months_min"], fu["inflow_months_max"]).all()


def test_stock_leaves_later(designs):
    d = copy.deepcopy(designs["oss"])
    d["towns"][0]["participants"] = {"control": 1500, "self_direction": 1500, "intensive": 1500}
    reg = simulate(d, 4).register
    med = reg[reg.outflow_work == 1].groupby("stock")["months_to_outflow"].median()
    assert med[1] > med[0]


@pytest.mark.parametrize("name", BUNDLED)
def test_consultants_nested_in_towns(designs, sims, name):
    reg = sims[name].register
    with_c = reg[reg["consultant_id"].notna()]
    towns_per_c = with_c.groupby("consultant_id")["municipality"].nunique()
    assert (towns_per_c == 1).all()
    prefix = with_c["consultant_id"].str.split("-").str[0]
    town_prefix = with_c["participant_id"].str.split("-").str[0]
    assert (prefix == town_prefix).all()
    n_cons = sims[name].truth["n_consultants"]
    for town in designs[name]["towns"]:
        for arm, k in town["consultants"].items():
            sub = reg[(reg.municipality == town["name"]) & (reg.arm == arm)]
            if k == 0:
                assert sub["consultant_id"].isna().all()
                assert n_cons[town["name"]][arm] == 0
            else:
                assert sub["consultant_id"].notna().all()
                assert sub["consultant_id"].nunique() <= n_cons[town["name"]][arm]
                assert n_cons[town["name"]][arm] >= k


def test_no_caseworker_arm_in_nijmegen(sims):
    reg = sims["nl7"].register
    nij_ex = reg[(reg.municipality == "Nijmegen") & (reg.arm == "exemption")]
    assert len(nij_ex) == 130 and nij_ex["consultant_id"].isna().all()
    nij_int = reg[(reg.municipality == "Nijmegen") & (reg.arm == "intensive")]
    assert nij_int["consultant_id"].nunique() == 3


def test_shared_consultants(sims):
    reg = sims["oss"].register
    arms_per_c = reg.groupby("consultant_id")["arm"].nunique()
    assert (arms_per_c > 1).sum() == 1  # one shared consultant
    assert (arms_per_c == 1).sum() == 10
    rec = sims["recovery"].register
    assert (rec.groupby("consultant_id")["arm"].nunique() == 1).all()  # fully nested
    assert rec["consultant_id"].nunique() == 96


# ---------------------------------------------------------------------------------------------
# truth
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_truth_keys(designs, sims, name):
    truth = sims[name].truth
    d = designs[name]
    json.dumps(truth)  # JSON-serialisable
    assert set(truth) == {"design", "seed", "control_arm", "arms", "municipalities", "n_randomised",
                          "n_consultants", "outflow", "outcomes", "attrition"}
    assert truth["design"] == name and truth["seed"] == 11
    assert truth["arms"][0] == truth["control_arm"] == "control"
    assert truth["municipalities"] == [t["name"] for t in d["towns"]]
    of = truth["outflow"]
    assert set(of) == {"probability", "log_odds", "log_odds_ratio", "town_sd", "town_arm_sd", "consultant_sd"}
    assert set(of["probability"]) == set(of["log_odds"]) == set(truth["arms"])
    assert set(of["log_odds_ratio"]) == set(truth["arms"][1:])
    for arm, p in of["probability"].items():
        assert of["log_odds"][arm] == pytest.approx(math.log(p / (1 - p)))
    for arm, lor in of["log_odds_ratio"].items():
        assert lor == pytest.approx(of["log_odds"][arm] - of["log_odds"]["control"])
    waves = [str(w) for w in range(d["waves"])]
    for oname, o in truth["outcomes"].items():
        assert o["scale"] == d["outcomes"][oname]["scale"]
        common = {"scale", "lower", "upper", "wave_effects", "arm_effects", "consultant_sd", "participant_sd"}
        assert common <= set(o)
        assert list(o["wave_effects"]) == waves[1:]
        assert set(o["arm_effects"]) == set(truth["arms"][1:])
        for arm_eff in o["arm_effects"].values():
            assert list(arm_eff) == waves
            assert arm_eff["0"] == 0.0  # default: no baseline difference
        if o["scale"] == "score":
            assert {"intercept", "town_sd", "town_arm_sd", "town_wave_sd", "residual_sd"} <= set(o)
        elif o["scale"] == "ordinal":
            assert "cutpoints" in o and "intercept" not in o
        else:
            assert {"intercept", "alpha", "parameterisation"} <= set(o)
            assert "NegativeBinomial(mu, alpha)" in o["parameterisation"]
    rr = truth["attrition"]["response_rate"]
    assert set(rr) == set(truth["arms"])
    assert all(list(v) == waves for v in rr.values())


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def test_write_simulation_round_trip(sims, tmp_path):
    sim = sims["small"]
    out = tmp_path / "run" / "sim"
    paths = write_simulation(sim, out)
    assert set(paths) == {"survey", "register", "truth"}
    assert paths["survey"].name == "survey.csv" and paths["register"].name == "register.csv"
    assert paths["truth"].name == "truth.json"
    assert sorted(os.listdir(out)) == ["register.csv", "survey.csv", "truth.json"]  # no temp files left
    back = read_simulation(out)
    pd.testing.assert_frame_equal(back.survey, sim.survey)
    pd.testing.assert_frame_equal(back.register, sim.register)
    assert back.truth == json.loads(json.dumps(sim.truth))
    # plain pandas reading: empty consultant_id comes back as missing
    plain = pd.read_csv(paths["register"])
    assert plain["consultant_id"].isna().sum() == sim.register["consultant_id"].isna().sum() > 0
    # overwriting works
    write_simulation(sims["oss"], out)
    assert json.loads(paths["truth"].read_text())["design"] == "oss"


# ---------------------------------------------------------------------------------------------
# bad designs
# ---------------------------------------------------------------------------------------------

BASE = {
    "name": "tiny",
    "arms": ["control", "treat"],
    "waves": 2,
    "towns": [
        {"name": "Oss", "participants": {"control": 10, "treat": 10},
         "consultants": {"control": 1, "treat": 2}},
    ],
    "response": {"control": [0.9, 0.7], "treat": [0.9, 0.8]},
    "outflow": {"probability": {"control": 0.3, "treat": 0.35}},
    "outcomes": {
        "wb": {"scale": "score", "intercept": 5.8, "residual_sd": 1.0,
               "wave_effects": [0.2], "arm_effects": {"treat": [0.3]}},
        "item": {"scale": "ordinal", "cutpoints": [-1.0, 0.0, 1.0, 2.0]},
        "apps": {"scale": "count", "intercept": 0.4, "alpha": 0.8},
    },
}


def _write(tmp_path, design, name="bad.toml"):
    path = tmp_path / name
    path.write_text(tomli_w.dumps(design))
    return path


def test_base_design_is_valid(tmp_path):
    d = load_design(_write(tmp_path, BASE, "tiny.toml"))
    sim = simulate(d, 1)
    assert len(sim.register) == 20
    # defaults filled in
    assert d["control_arm"] == "control"
    assert d["outflow"]["town_sd"] == 0.0
    assert d["outcomes"]["wb"]["lower"] == 0.0 and d["outcomes"]["wb"]["upper"] == 10.0
    assert d["outcomes"]["item"]["wave_effects"] == [0.0]
    assert d["outcomes"]["wb"]["baseline_arm_effects"] == {"treat": 0.0}


def test_name_defaults_to_file_stem(tmp_path):
    design = copy.deepcopy(BASE)
    del design["name"]
    assert load_design(_write(tmp_path, design, "mydesign.toml"))["name"] == "mydesign"


def _mutate(path_keys, value=None, delete=False):
    def f(d):
        node = d
        for k in path_keys[:-1]:
            node = node[k]
        if delete:
            del node[path_keys[-1]]
        else:
            node[path_keys[-1]] = value
        return d
    return f


BAD = [
    ("unknown top-level key", _mutate(["colour"], "red"), "colour"),
    ("missing arms", _mutate(["arms"], delete=True), "'arms'"),
    ("missing outflow", _mutate(["outflow"], delete=True), "'outflow'"),
    ("negative size", _mutate(["towns", 0, "participants", "control"], -5), "towns[0].participants.control"),
    ("size as text", _mutate(["towns", 0, "participants", "treat"], "ten"), "towns[0].participants.treat"),
    ("negative consultants", _mutate(["towns", 0, "consultants", "control"], -1), "towns[0].consultants.control"),
    ("missing consultants for an arm", _mutate(["towns", 0, "consultants", "treat"], delete=True),
     "towns[0].consultants.treat"),
    ("arm not in arms", _mutate(["towns", 0, "participants", "ghost"], 5), "towns[0].participants.ghost"),
    ("unknown town key", _mutate(["towns", 0, "sise"], 3), "towns[0].sise"),
    ("too many shared", _mutate(["towns", 0, "shared_consultants"], 9), "towns[0].shared_consultants"),
    ("rate above 1", _mutate(["response", "treat", 1], 1.2), "response.treat[1]"),
    ("rate below 0", _mutate(["response", "control", 0], -0.1), "response.control[0]"),
    ("response too short", _mutate(["response", "control"], [0.9]), "response.control"),
    ("response arm missing", _mutate(["response", "treat"], delete=True), "response.treat"),
    ("probability 1.5", _mutate(["outflow", "probability", "control"], 1.5), "outflow.probability.control"),
    ("probability arm missing", _mutate(["outflow", "probability", "treat"], delete=True),
     "outflow.probability.treat"),
    ("negative sd", _mutate(["outflow", "consultant_sd"], -0.2), "outflow.consultant_sd"),
    ("control arm unknown", _mutate(["control_arm"], "placebo"), "control_arm"),
    ("duplicate arms", _mutate(["arms"], ["control", "treat", "treat"]), "'arms'"),
    ("zero waves", _mutate(["waves"], 0), "'waves'"),
    ("bad scale", _mutate(["outcomes", "wb", "scale"], "gaussian"), "outcomes.wb.scale"),
    ("missing intercept", _mutate(["outcomes", "wb", "intercept"], delete=True), "outcomes.wb.intercept"),
    ("typo in outcome key", _mutate(["outcomes", "wb", "intercpt"], 5.0), "outcomes.wb.intercpt"),
    ("wave effects length", _mutate(["outcomes", "wb", "wave_effects"], [0.1, 0.2]), "outcomes.wb.wave_effects"),
    ("arm effect for control", _mutate(["outcomes", "wb", "arm_effects", "control"], [0.1]),
     "outcomes.wb.arm_effects.control"),
    ("cutpoints not increasing", _mutate(["outcomes", "item", "cutpoints"], [0.0, -1.0, 1.0, 2.0]),
     "outcomes.item.cutpoints"),
    ("alpha zero", _mutate(["outcomes", "apps", "alpha"], 0.0), "outcomes.apps.alpha"),
    ("score upper below lower", _mutate(["outcomes", "wb", "upper"], -1.0), "outcomes.wb.upper"),
    ("outcome named like a column", _mutate(["outcomes", "age"], {"scale": "count", "intercept": 0.0, "alpha": 1.0}),
     "outcomes.age"),
    ("timing hazard", _mutate(["outflow", "timing"], {"stock_hazard": 1.5}), "outflow.timing.stock_hazard"),
    ("follow-up range", _mutate(["follow_up"], {"inflow_months_min": 20, "inflow_months_max": 12}),
     "follow_up.inflow_months_max"),
]


@pytest.mark.parametrize("label,mutate,key", BAD, ids=[b[0] for b in BAD])
def test_bad_design_raises_spec_error(tmp_path, label, mutate, key):
    path = _write(tmp_path, mutate(copy.deepcopy(BASE)))
    with pytest.raises(SpecError) as info:
        load_design(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert key in msg, msg


def test_invalid_toml_syntax(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\narms = [control\n')
    with pytest.raises(SpecError) as info:
        load_design(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_simulate_validates_dicts():
    design = copy.deepcopy(BASE)
    design["response"]["treat"][0] = 2.0
    with pytest.raises(SpecError, match=r"response\.treat\[0\]"):
        simulate(design, 1)


def test_ordinal_and_count_parameterisation(tmp_path):
    """Without random effects, category shares follow logistic(cutpoint - eta) and the count
    has mean mu and variance mu + mu**2 / alpha (PyMC NegativeBinomial(mu, alpha))."""
    design = copy.deepcopy(BASE)
    design["towns"][0]["participants"] = {"control": 20000, "treat": 20000}
    design["towns"][0]["consultants"] = {"control": 0, "treat": 0}
    design["response"] = {"control": [1.0, 1.0], "treat": [1.0, 1.0]}
    design["outcomes"] = {
        "item": {"scale": "ordinal", "cutpoints": [-1.5, -0.2, 0.9, 2.0], "arm_effects": {"treat": [0.7]}},
        "apps": {"scale": "count", "intercept": 0.4, "alpha": 0.8, "arm_effects": {"treat": [0.5]}},
    }
    sim = simulate(load_design(_write(tmp_path, design, "param.toml")), 8)
    sur = sim.survey
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    cuts = np.array([-1.5, -0.2, 0.9, 2.0])
    for arm, wave, eta in [("control", 0, 0.0), ("treat", 1, 0.7)]:
        y = sur.loc[(sur.arm == arm) & (sur.wave == wave), "item"].to_numpy()
        cdf = np.array([(y <= k).mean() for k in (1, 2, 3, 4)])
        assert np.allclose(cdf, expit(cuts - eta), atol=0.015)
        a = sur.loc[(sur.arm == arm) & (sur.wave == wave), "apps"].to_numpy()
        mu = math.exp(0.4 + (0.5 if arm == "treat" else 0.0))
        assert a.mean() == pytest.approx(mu, rel=0.05)
        assert a.var() == pytest.approx(mu + mu**2 / 0.8, rel=0.1)
