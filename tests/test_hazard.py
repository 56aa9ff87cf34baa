"""Discrete-time hazard models of outflow over time (bayes_trial.hazard).

Two small fits: the bundled `outflow_hazard` spec on a simulated trial whose outflow comes from a
known monthly hazard (true curves in the simulation's truth), and the same data collapsed to one
period, which must reproduce the binary `outflow` model.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from conftest import FAST

import bayes_trial as bt
from bayes_trial.estimands import curves as hazard
from bayes_trial.families import hazard as hazard_family
from bayes_trial.plots import curves as curve_plots
from bayes_trial.estimands import query
from bayes_trial.data.contract import load_register
from bayes_trial.core.errors import DataError, SpecError
from bayes_trial.plots.figures import save_figure
from bayes_trial.sampling.fit import sample_prepared
from bayes_trial.modelling.frames import TRIALS, prepare
from bayes_trial.simulation.design import validate_design

BAD = Path(__file__).resolve().parent / "data" / "bad"
ARM_EFFECTS = {"exemption": [0.1, 0.1], "intensive": [0.7, 0.0]}  # logit monthly hazard, first and last month


def hazard_design(scale: int = 1, effects: dict | None = None) -> dict:
    """The small design with outflow from a monthly hazard and `scale` times as many persons."""
    design = copy.deepcopy(bt.load_design("small"))
    design["outflow"].pop("probability")
    design["outflow"]["hazard"] = {"arm_effects": effects or ARM_EFFECTS}
    for town in design["towns"]:
        town["participants"] = {arm: n * scale for arm, n in town["participants"].items()}
    return design


@pytest.fixture(scope="module")
def hazard_sim() -> bt.Simulation:
    return bt.simulate(hazard_design(scale=5), seed=3)


@pytest.fixture(scope="module")
def hazard_fit(hazard_sim) -> bt.Fit:
    return bt.sample(bt.load_spec("outflow_hazard"), hazard_sim.register, progress=False, **FAST)


def true_curve(sim: bt.Simulation, arm: str, months: list[int]) -> np.ndarray:
    return 100 * np.asarray(sim.truth["outflow"]["hazard"]["cumulative_incidence"][arm])[np.asarray(months) - 1]


# ---------------------------------------------------------------------------------------------
# simulator: outflow from a monthly hazard
# ---------------------------------------------------------------------------------------------


def test_hazard_design_validates_and_excludes_probability():
    design = hazard_design()
    normalised = validate_design(copy.deepcopy(design))
    assert normalised["outflow"]["hazard"]["arm_effects"]["intensive"] == [0.7, 0.0]
    assert "probability" not in normalised["outflow"]
    both = copy.deepcopy(design)
    both["outflow"]["probability"] = bt.load_design("small")["outflow"]["probability"]
    with pytest.raises(SpecError, match="outflow.probability"):
        bt.simulate(both, seed=1)
    wrong = hazard_design(effects={"intensive": [0.7]})
    with pytest.raises(SpecError, match="outflow.hazard.arm_effects.intensive"):
        bt.simulate(wrong, seed=1)


def test_simulated_hazard_truth_matches_a_large_population():
    """The true curves in the truth are what a large trial observes, once arms differ only by arm.

    (With consultant and town-by-arm effects, each arm's own consultants shift its observed curve
    away from the g-computation truth, in which everyone keeps their consultant.) Compared up to
    month 15, before anyone is censored: later, new inflow (higher hazard) is censored earlier
    than stock, which biases the unadjusted Kaplan-Meier curve but not the model, which has stock.
    """
    design = hazard_design(scale=60)
    design["outflow"].update(consultant_sd=0.0, town_arm_sd=0.0)
    sim = bt.simulate(design, seed=5)
    register = sim.register
    assert (register["months_to_outflow"].dropna() <= register.loc[register["outflow_work"] == 1, "months_followed"]).all()
    observed = hazard.observed_curves(register)
    for arm in sim.truth["arms"]:
        rows = observed[(observed["arm"] == arm) & observed["month"].isin([3, 6, 9, 12, 15])]
        assert np.allclose(rows["cumulative"], true_curve(sim, arm, list(rows["month"])), atol=2.0)
    curves = sim.truth["outflow"]["hazard"]["cumulative_incidence"]
    assert curves["intensive"][5] > curves["control"][5]  # a month-1 effect of 0.7 on the logit hazard


# ---------------------------------------------------------------------------------------------
# data: persons -> counts at risk per month x cell
# ---------------------------------------------------------------------------------------------


def naive_person_months(register: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per person and month at risk, then counted: the slow reference."""
    rows = []
    for person in register.itertuples():
        last = int(np.ceil(person.months_to_outflow if person.outflow_work else person.months_followed))
        for month in range(1, last + 1):
            rows.append({**{c: getattr(person, c) for c in by}, "month": month,
                         "left": int(person.outflow_work == 1 and month == last)})
    frame = pd.DataFrame(rows)
    return frame.groupby([*by, "month"]).agg(outflow_work=("left", "sum"), n_trials=("left", "size")).reset_index()


def test_person_months_counts_equal_the_person_month_expansion(small_sim):
    register = small_sim.register.assign(consultant_id=small_sim.register["consultant_id"].fillna("none"))
    by = ["arm", "municipality", "consultant_id", "stock"]
    cells = hazard_family.person_months(register, by)
    reference = naive_person_months(register, by)
    mine = cells.assign(arm=cells["arm"].astype(str)).sort_values([*by, "month"]).reset_index(drop=True)
    reference = reference.sort_values([*by, "month"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[[*by, "month", "outflow_work", TRIALS]], reference, check_dtype=False)
    # censored people count: every person is at risk in month 1, and leavers leave once
    first = cells[cells["month"] == 1]
    assert first[TRIALS].sum() == len(register)
    assert cells["outflow_work"].sum() == register["outflow_work"].sum()
    assert set(cells.columns) >= set(hazard_family.TIME_COLUMNS)


def test_cells_grow_with_months_not_with_persons(hazard_sim):
    spec = bt.load_spec("outflow_hazard")
    small = prepare(spec, hazard_sim.register)
    large = prepare(spec, bt.simulate(hazard_design(scale=40), seed=3).register)
    assert small.aggregated and small.family == "binomial" and small.formula.startswith("p(outflow_work, n_trials) ~")
    person_cells = (large.data["month"] == 1).sum()  # everyone is at risk in month 1
    assert len(large.data) <= person_cells * 24
    assert large.data[TRIALS].sum() > 20 * len(large.data)  # many person-months behind each row
    assert len(large.data) < 1.5 * len(small.data)  # 8x the persons, about the same rows
    assert any("person-months at risk" in note for note in large.notes)


def test_one_period_cells_are_the_binary_outflow_cells(small_sim, outflow_fit):
    spec = dataclasses.replace(bt.load_spec("outflow"), family="hazard")
    one = prepare(spec, small_sim.register, family=hazard_family.Hazard(width=int(small_sim.register["months_followed"].max())))
    key = ["arm", "municipality", "consultant_id"]
    binary = outflow_fit.prepared.data.sort_values(key).reset_index(drop=True)
    one_cells = one.data.sort_values(key).reset_index(drop=True)
    assert one.formula == outflow_fit.prepared.formula
    assert (one_cells["month"] == 24).all()
    pd.testing.assert_frame_equal(one_cells[[*key, "outflow_work", TRIALS]], binary[[*key, "outflow_work", TRIALS]],
                                  check_dtype=False, check_categorical=False)


@pytest.mark.parametrize("name, message", [
    ("register_outflow_after_followup.csv", "months_to_outflow 30 is after months_followed 24"),
    ("register_negative_months.csv", "months_to_outflow': -3 is negative"),
])
def test_bad_months_give_a_data_error(name, message):
    raw = pd.read_csv(BAD / name, dtype=str)
    with pytest.raises(DataError, match=message):
        load_register(BAD / name)
    with pytest.raises(DataError, match=message):  # also when handed an unchecked table
        prepare(bt.load_spec("outflow_hazard"), raw)


def test_register_without_months_gives_a_data_error(small_sim):
    with pytest.raises(DataError, match="needs column.*months_followed"):
        prepare(bt.load_spec("outflow_hazard"), small_sim.register.drop(columns="months_followed"))
    with pytest.raises(SpecError, match="register table"):
        prepare(dataclasses.replace(bt.load_spec("outflow_hazard"), table="survey"), small_sim.register)


# ---------------------------------------------------------------------------------------------
# fits: truth inside the bands; one period = the binary model
# ---------------------------------------------------------------------------------------------


def test_true_curves_lie_inside_the_bands(hazard_fit, hazard_sim):
    months = [3, 6, 12, 16, 24]
    table = hazard.cumulative_incidence(hazard_fit, months, interval=0.98)
    for arm, rows in table.groupby("arm"):
        truth = true_curve(hazard_sim, arm, months)
        assert ((rows["lower"] <= truth) & (truth <= rows["upper"])).all(), (arm, rows, truth)
        assert (rows["upper"] - rows["lower"]).max() < 20  # informative bands, so the check can fail
        assert rows["mean"].is_monotonic_increasing
    contrasts = hazard.contrasts_at(hazard_fit, [12, 24], interval=0.98)
    for row in contrasts.itertuples():
        arm = row.contrast.split(" - ")[0]
        truth = true_curve(hazard_sim, arm, [row.month])[0] - true_curve(hazard_sim, "control", [row.month])[0]
        assert row.lower <= truth <= row.upper
        assert row.unit == "pp" and 0 <= row.p_gt_0 <= 1
    early = contrasts[(contrasts["contrast"] == "intensive - control") & (contrasts["month"] == 12)].iloc[0]
    assert early.p_gt_0 > 0.8  # the intensive arm's early effect is found


def test_one_period_model_agrees_with_the_binary_model(small_sim, outflow_fit):
    spec = dataclasses.replace(bt.load_spec("outflow"), name="outflow_one_period", family="hazard").with_sampler(**FAST)
    prepared = prepare(spec, small_sim.register, family=hazard_family.Hazard(width=24))
    one = sample_prepared(spec, prepared, data_hash="one period", progress=False)
    by_end = hazard.cumulative_incidence(one).set_index("arm")
    binary = query.arm_means(outflow_fit)
    for arm, draws in binary.items():
        assert by_end.loc[arm, "month"] == 24
        assert by_end.loc[arm, "mean"] == pytest.approx(100 * draws.mean(), abs=1.5)
    assert np.allclose(one.idata.posterior["arm"].mean(("chain", "draw")),
                       outflow_fit.idata.posterior["arm"].mean(("chain", "draw")), atol=0.1)


def test_towns_new_town_and_time_to_outflow(hazard_fit, hazard_sim):
    by_town = hazard.contrasts_at(hazard_fit, [16], by="municipality")
    assert list(pd.unique(by_town["municipality"])) == ["Nijmegen", "Oss", query.NEW_MUNICIPALITY]
    pooled = hazard.contrasts_at(hazard_fit, [16])
    width = (by_town["upper"] - by_town["lower"]).groupby(by_town["municipality"]).max()
    assert width[query.NEW_MUNICIPALITY] > (pooled["upper"] - pooled["lower"]).max()
    new_town = hazard.cumulative_incidence(hazard_fit, [16], municipality="new").set_index("arm")
    new_contrast = by_town[by_town["municipality"] == query.NEW_MUNICIPALITY].set_index("contrast")
    # every arm meets the same new town: the contrast is tighter than the new town's level (with two towns
    # the town x arm SD rests mostly on its prior, so not by much)
    level_width = new_town.loc["control", "upper"] - new_town.loc["control", "lower"]
    contrast = new_contrast.loc["intensive - control"]
    assert contrast["upper"] - contrast["lower"] < level_width
    again = hazard.contrasts_at(hazard_fit, [16], municipality="new").set_index("contrast")
    assert again.loc["intensive - control", "mean"] == contrast["mean"]  # seeded: reproducible
    quarter = hazard.median_time(hazard_fit, share=0.25, interval=0.98).set_index("arm")
    for arm, row in quarter.iterrows():
        truth = hazard.time_to_share(true_curve(hazard_sim, arm, hazard.month_grid(hazard_fit))[None, :] / 100,
                                     hazard.month_grid(hazard_fit), 0.25)[0]
        assert row["p_reached"] == 1 and row["lower"] <= truth <= row["upper"]
    half = hazard.median_time(hazard_fit)
    assert (half["p_reached"] < 0.5).all() and np.isinf(half["median"]).all()  # about 45% leave within 24 months


def test_time_to_share_interpolates_within_the_month():
    curves = np.array([[0.2, 0.4, 0.6], [0.1, 0.2, 0.3]])
    assert np.allclose(hazard.time_to_share(curves, [1, 2, 3], 0.5), [2.5, np.inf])
    assert np.allclose(hazard.time_to_share(curves, [1, 2, 3], 0.1), [0.5, 1.0])


def test_month_outside_follow_up_and_non_hazard_fits_are_refused(hazard_fit, outflow_fit):
    with pytest.raises(SpecError, match="month 30 is not in this fit; it has months 1 to 24"):
        hazard.contrasts_at(hazard_fit, [30])
    with pytest.raises(SpecError, match="not a hazard model"):
        hazard.cumulative_incidence(outflow_fit)
    with pytest.raises(SpecError, match="municipality 'Utrecht' is not in this fit"):
        hazard.cumulative_incidence(hazard_fit, [12], municipality="Utrecht")


# ---------------------------------------------------------------------------------------------
# observed curves, figures, stored fits
# ---------------------------------------------------------------------------------------------


def test_observed_curves_are_kaplan_meier_steps(hazard_fit, hazard_sim):
    register = hazard_sim.register
    observed = hazard.observed_curves(register)
    pd.testing.assert_frame_equal(observed, hazard.observed_curves(hazard_fit))
    assert "participant_id" not in observed and (observed["at_risk"] >= query.MIN_CELL).all()
    # nobody is censored before month 15, so there the curve is the plain share who left
    for arm, persons in register.groupby("arm"):
        row = observed[(observed["arm"] == arm) & (observed["month"] == 12)].iloc[0]
        assert row["cumulative"] == pytest.approx(100 * (persons["months_to_outflow"] <= 12).mean())
    by_town = hazard.observed_curves(register, by="municipality", min_cell=200)
    assert list(by_town.columns[:2]) == ["municipality", "arm"]
    assert by_town["at_risk"].min() >= 200 and by_town["month"].max() < 24  # suppressed before the end


def test_figures_and_stored_fit(hazard_fit, tmp_path):
    written = save_figure(curve_plots.plot_cumulative_incidence(hazard_fit), tmp_path, "outflow_curves")
    written += save_figure(curve_plots.plot_outflow_contrast(hazard_fit), tmp_path, "outflow_contrast")
    assert {p.suffix for p in written} == {".png", ".svg"} and all(p.stat().st_size > 1000 for p in written)
    loaded = bt.load(bt.save(hazard_fit, tmp_path / "hazard.nc"))
    assert loaded.spec.family == "hazard"
    pd.testing.assert_frame_equal(hazard.contrasts_at(loaded, [16]), hazard.contrasts_at(hazard_fit, [16]))


# ---------------------------------------------------------------------------------------------
# new towns and towns that did not run every arm (issue 14, item 2)
# ---------------------------------------------------------------------------------------------


def test_new_town_curves_come_from_the_shared_new_town_posterior(hazard_fit):
    persons = hazard.population(hazard_fit)
    curves = hazard.curve_draws(hazard_fit, persons, new_town=True, seed=7, arms=["intensive"])
    assert list(curves) == ["intensive"]
    first = hazard.month_grid(hazard_fit)[0]
    grid = persons.drop(columns=TRIALS).assign(
        arm=pd.Categorical(["intensive"] * len(persons), categories=hazard_fit.data["arm"].cat.categories, ordered=True),
        **hazard_family.time_columns(np.full(len(persons), first)))
    new_town = az.InferenceData(posterior=query.new_town_posterior(hazard_fit, seed=7).posterior)
    predicted = hazard_fit.model.predict(new_town, kind="response_params", data=grid, inplace=False)
    monthly = predicted.posterior[hazard_fit.model.family.likelihood.parent].stack(sample=("chain", "draw"))
    weights = persons[TRIALS].to_numpy(dtype=float)
    expected = monthly.transpose("sample", "__obs__").to_numpy() @ (weights / weights.sum())
    np.testing.assert_allclose(curves["intensive"][:, 0], expected)  # month 1: the share leaving is the hazard


@pytest.fixture(scope="module")
def uneven_hazard_fit() -> bt.Fit:
    """Three towns; Deventer ran no intensive arm."""
    design = hazard_design()
    design["towns"].append({"name": "Deventer", "participants": {"control": 40, "exemption": 40},
                            "consultants": {"control": 1, "exemption": 1}})
    return bt.sample(bt.load_spec("outflow_hazard"), bt.simulate(design, seed=4).register, progress=False, **FAST)


def test_towns_have_curves_only_for_arms_they_ran(uneven_hazard_fit):
    fit = uneven_hazard_fit
    incidence = hazard.cumulative_incidence(fit, [12], by="municipality")
    arms = incidence.groupby("municipality")["arm"].agg(list).to_dict()
    assert arms["Deventer"] == ["control", "exemption"]
    assert arms["Oss"] == arms[query.NEW_MUNICIPALITY] == ["control", "exemption", "intensive"]
    contrasts = hazard.contrasts_at(fit, [12], by="municipality")
    assert set(contrasts.loc[contrasts["municipality"] == "Deventer", "contrast"]) == {"exemption - control"}
    table = hazard.contrast_hypothesis(fit, "intensive - control > 2pp", [12], by="municipality").set_index("municipality")
    assert np.isnan(table.loc["Deventer", "mean"]) and "Deventer did not run intensive" in table.loc["Deventer", "note"]
    new = table.loc[query.NEW_MUNICIPALITY]
    assert new["note"] == "" and new["lower"] < new["mean"] < new["upper"]
    with pytest.raises(SpecError, match="Deventer did not run intensive"):
        hazard.contrast_hypothesis(fit, "intensive - control", [12], municipality="Deventer")
    with pytest.raises(SpecError, match="unit 'points'"):
        hazard.contrast_hypothesis(fit, "intensive - control > 2 points", [12])
