"""Survey non-response in the simulator: MCAR, MAR (previous-score slope), MNAR (pattern-mixture
delta), the Oss variants against Tabel 2.5.1, and the design settings' errors."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import tomli_w

from bayes_trial.aggregate.published import load_published
from bayes_trial.core.errors import SpecError
from bayes_trial.simulation.design import load_design, merge_designs, validate_design
from bayes_trial.simulation.generate import simulate

PER_ARM = 6000
RATES = {"control": [0.75, 0.40, 0.50], "treat": [0.90, 0.80, 0.65]}
LARGE = {
    "name": "large_attrition",
    "arms": ["control", "treat"],
    "waves": 3,
    "towns": [{"name": "Big", "participants": {"control": PER_ARM, "treat": PER_ARM},
               "consultants": {"control": 5, "treat": 5}}],
    "response": copy.deepcopy(RATES),
    "outflow": {"probability": {"control": 0.3, "treat": 0.35}},
    "outcomes": {
        # wide bounds: no score is ever clipped, so shifts are exact up to rounding to 0.1
        "wb": {"scale": "score", "intercept": 5.0, "residual_sd": 1.0, "participant_sd": 1.0, "lower": -100.0,
               "upper": 100.0, "wave_effects": [0.3, 0.4], "arm_effects": {"treat": [0.5, 0.8]}},
        "apps": {"scale": "count", "intercept": 0.4, "alpha": 0.8},
    },
}


def _large(**response) -> dict:
    design = copy.deepcopy(LARGE)
    design["response"].update(response)
    return validate_design(design)


def _observed_rates(sim) -> pd.DataFrame:
    """Share of each arm's randomised persons with a survey row, (wave x arm)."""
    answered = sim.survey.groupby(["arm", "wave"]).size().unstack("arm")
    return answered / sim.register.groupby("arm").size()


def _sampling_se(rate: float, n: int = PER_ARM) -> float:
    return float(np.sqrt(rate * (1 - rate) / n))


# --------------------------------------------------------------------------------------------- draws

def test_default_mechanism_draws_as_before():
    """Numbers measured on main before non-response mechanisms existed: same rows, same scores."""
    sim = simulate(load_design("oss"), seed=1)
    assert len(sim.survey) == 721
    assert sim.survey["wellbeing"].sum() == pytest.approx(4204.4)
    assert sim.survey["health"].sum() == pytest.approx(3466.6)
    assert sim.survey["job_applications"].sum() == 1349
    assert sim.survey["wave"].sum() == 643
    assert sim.truth["attrition"]["mechanism"] == "mar"
    assert sim.truth["attrition"]["response_rate"]["control"] == {"0": 0.74, "1": 0.40, "2": 0.48}


def test_same_seed_same_data():
    d = load_design("oss_mnar")
    a, b = simulate(d, 5), simulate(d, 5)
    pd.testing.assert_frame_equal(a.survey, b.survey)
    assert a.truth == b.truth


# --------------------------------------------------------------------------------------------- mechanisms

@pytest.mark.parametrize("response", [
    {"mechanism": "mar"},
    {"mechanism": "mar", "previous_score_slope": 0.8},
    {"mechanism": "mnar", "previous_score_slope": -0.6, "delta": {"control": 1.0, "treat": -0.5}},
], ids=["mar", "mar_slope", "mnar"])
def test_realised_response_matches_design_rates(response):
    sim = simulate(_large(**response), 3)
    observed = _observed_rates(sim)
    for arm, rates in RATES.items():
        for wave, rate in enumerate(rates):
            assert abs(observed.loc[wave, arm] - rate) < 4 * _sampling_se(rate), (arm, wave, observed.loc[wave, arm])
    shares = sim.truth["attrition"]["nonresponse_share"]
    assert shares["control"]["1"] == pytest.approx(1 - observed.loc[1, "control"])


def test_mcar_one_rate_for_every_arm_and_wave():
    design = _large(mechanism="mcar")
    expected = np.mean([r for rates in RATES.values() for r in rates])  # default: mean of the arm x wave rates
    assert design["response"]["rate"] == pytest.approx(expected)
    observed = _observed_rates(simulate(design, 4))
    assert (observed - expected).abs().to_numpy().max() < 4 * _sampling_se(expected)
    # the design's arm differences (0.40 vs 0.80 at wave 1) are gone
    assert abs(observed.loc[1, "control"] - observed.loc[1, "treat"]) < 5 * _sampling_se(expected) * np.sqrt(2)
    assert _large(mechanism="mcar", rate=0.3)["response"]["treat"] == [0.3, 0.3, 0.3]


def _logistic_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Maximum-likelihood slope of a logistic regression of y on x (Newton-Raphson)."""
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(25):
        p = 1 / (1 + np.exp(-X @ beta))
        beta += np.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]), X.T @ (y - p))
    return float(beta[1])


@pytest.mark.parametrize("slope", [0.8, -0.8, 0.0])
def test_mar_responders_differ_in_previous_score_as_the_slope_says(slope):
    sim = simulate(_large(previous_score_slope=slope), 6)
    wide = sim.survey.pivot(index="participant_id", columns="wave", values="wb")
    arms = sim.survey.drop_duplicates("participant_id").set_index("participant_id")["arm"]
    seen = wide[wide[0].notna()]  # answered wave 0: their wave-0 score is observed
    answered_next = seen[1].notna()
    gap = seen.loc[answered_next, 0].mean() - seen.loc[~answered_next, 0].mean()
    if slope == 0.0:
        assert abs(gap) < 0.05
    else:
        assert np.sign(gap) == np.sign(slope) and abs(gap) > 0.3
    # within an arm the log-odds change per SD of the previous score is the slope (SD over all persons,
    # estimated here by the wave-0 responders, a random sample since wave-0 response ignores scores)
    z = (seen[0] - seen[0].mean()) / seen[0].std()
    for arm in ("control", "treat"):
        in_arm = (arms.reindex(seen.index) == arm).to_numpy()
        estimate = _logistic_slope(z.to_numpy()[in_arm], answered_next.to_numpy()[in_arm].astype(float))
        assert estimate == pytest.approx(slope, abs=0.12), arm


def test_mnar_shift_is_invisible_in_the_data_and_moves_the_truth_by_delta():
    delta = {"control": 1.0, "treat": -0.5}
    mar = simulate(_large(previous_score_slope=0.5), 7)
    mnar = simulate(_large(mechanism="mnar", previous_score_slope=0.5, delta=delta), 7)
    # the survey holds responders only: identical, whatever the non-responders' scores are
    pd.testing.assert_frame_equal(mar.survey, mnar.survey)
    truth_mar, truth_mnar = mar.truth["attrition"], mnar.truth["attrition"]
    share = truth_mnar["nonresponse_share"]
    wb_mar, wb_mnar = truth_mar["outcomes"]["wb"], truth_mnar["outcomes"]["wb"]
    arm_effect = {"0": 0.0, "1": 0.5, "2": 0.8}
    for w in ("0", "1", "2"):
        shift = delta["treat"] * share["treat"][w] - delta["control"] * share["control"][w]
        # the true contrast over all randomised persons is the design's effect plus the mixture term
        assert wb_mnar["true_contrast"]["treat"][w] == pytest.approx(arm_effect[w] + shift)
        assert wb_mar["true_contrast"]["treat"][w] == pytest.approx(arm_effect[w])
        # in the full panel, non-responders' own scores moved by exactly delta (no clipping here)
        moved = wb_mnar["complete_panel_contrast"]["treat"][w] - wb_mar["complete_panel_contrast"]["treat"][w]
        assert moved == pytest.approx(shift, abs=1e-9)
        assert wb_mnar["complete_case_contrast"] == wb_mar["complete_case_contrast"]
    # a large shift is visible: the complete-case contrast misses it
    assert wb_mnar["complete_panel_contrast"]["treat"]["1"] < wb_mnar["complete_case_contrast"]["treat"]["1"] - 0.5
    assert "apps" not in truth_mnar["delta"] and "true_contrast" not in truth_mnar["outcomes"]["apps"]
    assert truth_mnar["scores_clipped_to_bounds"] is True


def test_mnar_scores_are_clipped_to_the_bounds():
    design = copy.deepcopy(LARGE)
    design["outcomes"]["wb"].update({"lower": 0.0, "upper": 10.0, "intercept": 9.0})
    design["response"].update({"mechanism": "mnar", "delta": {"control": 3.0}})
    truth = simulate(validate_design(design), 2).truth["attrition"]
    wb = truth["outcomes"]["wb"]
    share = truth["nonresponse_share"]["control"]["1"]
    # clipping at 10 keeps the shift below delta * share: the formula overstates it
    assert wb["true_contrast"]["treat"]["1"] == pytest.approx(0.5 - 3.0 * share)
    assert wb["complete_panel_contrast"]["treat"]["1"] > wb["true_contrast"]["treat"]["1"] + 0.3


# --------------------------------------------------------------------------------------------- Oss variants

ARM_CODES = {"SG": "control", "ER": "self_direction", "IB": "intensive"}


@pytest.mark.parametrize("name", ["oss_mar", "oss_mnar"])
def test_oss_variants_reproduce_table_2_5_1(name):
    printed = load_published("oss_response")
    design = load_design(name)
    assert validate_design(copy.deepcopy(design)) == design
    assert design["response"]["previous_score_slope"] == 0.5
    observed = sum(_observed_rates(simulate(design, seed)) for seed in range(6)) / 6
    for row in printed.itertuples():
        wave = int(row.wave[1])
        target = row.n_completed / row.n_net
        assert abs(observed.loc[wave, ARM_CODES[row.arm]] - target) < 0.03, (row.arm, row.wave)


def test_oss_variants_extend_oss():
    oss, mar, mnar = (load_design(n) for n in ("oss", "oss_mar", "oss_mnar"))
    assert (mar["name"], mnar["name"]) == ("oss_mar", "oss_mnar")
    for key in ("arms", "towns", "outflow", "outcomes", "covariates", "follow_up"):
        assert mar[key] == oss[key] == mnar[key]
    assert [mar["response"][a] for a in oss["arms"]] == [oss["response"][a] for a in oss["arms"]]
    assert mnar["response"]["delta"] == {o: {"control": -0.5, "self_direction": 0.0, "intensive": 0.0}
                                         for o in ("wellbeing", "health")}


def test_merge_designs_is_deep_and_replaces_lists():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "towns": [{"name": "A"}], "n": 1}
    merged = merge_designs(base, {"a": {"y": {"q": 5}}, "towns": [{"name": "B"}]})
    assert merged == {"a": {"x": 1, "y": {"p": 1, "q": 5}}, "towns": [{"name": "B"}], "n": 1}
    assert base["a"]["y"]["q"] == 2  # unchanged


def test_extends_a_file_beside_it(tmp_path):
    (tmp_path / "base.toml").write_text(tomli_w.dumps(LARGE))
    (tmp_path / "variant.toml").write_text('extends = "base"\n[response]\nmechanism = "mcar"\nrate = 0.5\n')
    d = load_design(tmp_path / "variant.toml")
    assert d["name"] == "variant" and d["towns"] == validate_design(LARGE)["towns"]
    assert d["response"]["control"] == [0.5, 0.5, 0.5]


# --------------------------------------------------------------------------------------------- errors

def _settings(**response):
    def mutate(design):
        design["response"].update(response)
        return design
    return mutate


BAD = [
    ("unknown mechanism", _settings(mechanism="nmar"), "response.mechanism"),
    ("delta for an unknown arm", _settings(mechanism="mnar", delta={"ghost": 1.0}), "response.delta.ghost"),
    ("delta on a count outcome", _settings(mechanism="mnar", delta={"apps": {"control": 1.0}}),
     "response.delta.apps"),
    ("delta without mnar", _settings(delta={"control": 1.0}), "response.delta"),
    ("slope with mcar", _settings(mechanism="mcar", previous_score_slope=0.5), "response.previous_score_slope"),
    ("depends on a count", _settings(previous_score_slope=0.5, depends_on="apps"), "response.depends_on"),
    ("mcar rate above 1", _settings(mechanism="mcar", rate=1.5), "response.rate"),
    ("slope as text", _settings(previous_score_slope="steep"), "response.previous_score_slope"),
    ("one arm without rates", lambda d: {**d, "response": {"control": [0.9, 0.8, 0.7]}}, "response.treat"),
]


@pytest.mark.parametrize("label,mutate,key", BAD, ids=[b[0] for b in BAD])
def test_bad_response_settings(tmp_path, label, mutate, key):
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(mutate(copy.deepcopy(LARGE))))
    with pytest.raises(SpecError) as info:
        load_design(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"'{key}" in message, message


def test_bad_extends(tmp_path):
    path = tmp_path / "orphan.toml"
    path.write_text('extends = "no_such_base"\n')
    with pytest.raises(SpecError, match=r"orphan\.toml: key 'extends': no design file 'no_such_base'"):
        load_design(path)
    (tmp_path / "a.toml").write_text('extends = "b"\n')
    (tmp_path / "b.toml").write_text('extends = "a"\n')
    with pytest.raises(SpecError, match="cycle"):
        load_design(tmp_path / "a.toml")
