"""Model-ready data and model building (no sampling)."""

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.modelling import frames as model
from bayes_trial.sampling import build as bambi_build


def test_binary_outflow_is_aggregated_into_cells_that_keep_every_person(small_sim):
    prepared = model.prepare(bt.load_spec("outflow"), small_sim.register)
    assert prepared.aggregated and prepared.family == "binomial"
    assert prepared.formula.startswith("p(outflow_work, n_trials) ~")
    assert prepared.data[model.TRIALS].sum() == len(small_sim.register)
    assert prepared.data["outflow_work"].sum() == small_sim.register["outflow_work"].sum()
    assert len(prepared.data) < len(small_sim.register) / 5


def test_control_arm_is_the_reference_level(small_sim):
    prepared = model.prepare(bt.load_spec("outflow"), small_sim.register)
    assert list(prepared.data["arm"].cat.categories)[0] == "control"
    built = bambi_build.build(bt.load_spec("outflow"), prepared)
    assert "control" not in [str(level) for level in built.backend.model.coords["arm_dim"]]


def test_a_single_town_drops_town_terms_with_a_note(small_sim):
    one_town = small_sim.register[small_sim.register["municipality"] == "Oss"]
    prepared = model.prepare(bt.load_spec("outflow"), one_town)
    assert "(arm|municipality)" not in prepared.formula
    assert any("municipality has one level" in note for note in prepared.notes)


def test_arms_without_consultants_share_one_level_per_arm(small_sim):
    prepared = model.prepare(bt.load_spec("outflow"), small_sim.register)
    consultants = set(prepared.data["consultant_id"])
    assert "none:exemption" in consultants
    assert not any(c in ("", "nan", "None") for c in consultants)


def test_participant_ids_are_pseudonymised(small_sim):
    prepared = model.prepare(bt.load_spec("wellbeing"), small_sim.survey)
    stored = set(prepared.data["participant_id"])
    original = set(small_sim.survey["participant_id"].astype(str))
    assert not stored & original
    assert len(stored) == len(original)


def test_a_formula_naming_a_missing_column_is_refused(small_sim):
    spec = bt.load_spec("outflow")
    spec = bt.spec.spec_from_dict({**spec.to_dict(), "formula": "outflow_work ~ arm + education"})
    with pytest.raises(bt.DataError, match="education"):
        model.prepare(spec, small_sim.register)


def test_a_prior_for_an_unknown_term_lists_the_valid_terms(small_sim):
    spec = bt.load_spec("outflow").with_priors({"armm": bt.parse_prior("Normal(0, 1)")})
    prepared = model.prepare(spec, small_sim.register)
    with pytest.raises(bt.SpecError, match="armm.*arm"):
        bambi_build.build(spec, prepared)


def test_user_priors_reach_the_pymc_graph(small_sim):
    spec = bt.load_spec("outflow").with_priors({"arm": bt.parse_prior("Normal(0, 0.25)")})
    table = bambi_build.pymc_priors(bambi_build.build(spec, model.prepare(spec, small_sim.register)), spec)
    arm = table[table["term"] == "arm"].iloc[0]
    assert arm["distribution"].lower() == "normal" and arm["set_by"] == "user"
    assert np.isclose(pd.Series(arm["params"])["sigma"], 0.25)


CONSULTANT_DIM = "municipality:consultant_id__factor_dim"


def _consultant_levels(spec_name: str, frame: pd.DataFrame) -> list[str]:
    spec = bt.load_spec(spec_name)
    built = bambi_build.build(spec, model.prepare(spec, frame))
    return [str(level) for level in built.backend.model.coords[CONSULTANT_DIM]]


def _register(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Register rows (town, arm, consultant), 12 persons each, half of them leaving for work."""
    records = [{"participant_id": f"{town}-{arm}-{consultant}-{i}", "municipality": town, "arm": arm,
                "consultant_id": consultant, "outflow_work": i % 2}
               for town, arm, consultant in rows for i in range(12)]
    return pd.DataFrame(records)


def test_consultant_levels_are_the_observed_town_consultant_pairs_on_nl7():
    sim = bt.simulate(bt.load_design("nl7"), seed=1)
    observed = sim.register[["municipality", "consultant_id"]].drop_duplicates()
    expected = {f"{town}:{consultant if isinstance(consultant, str) and consultant else 'none:exemption'}"
                for town, consultant in observed.itertuples(index=False)}
    for spec_name, frame in (("outflow", sim.register), ("wellbeing", sim.survey)):
        levels = _consultant_levels(spec_name, frame)
        assert len(levels) == len(set(levels)) == len(observed) == 85  # 84 consultants + Nijmegen's no-contact arm
        assert set(levels) == expected


def test_a_consultant_id_reused_in_two_towns_is_two_consultants():
    frame = _register([("A", "control", "c1"), ("A", "intensive", "c2"), ("B", "control", "c1"), ("B", "intensive", "c3")])
    assert sorted(_consultant_levels("outflow", frame)) == ["A:c1", "A:c2", "B:c1", "B:c3"]


def test_a_consultant_serving_two_arms_of_a_town_is_one_consultant():
    frame = _register([("A", "control", "c1"), ("A", "intensive", "c1"), ("A", "intensive", "c2"),
                       ("B", "control", "c3"), ("B", "intensive", "c3")])
    assert sorted(_consultant_levels("outflow", frame)) == ["A:c1", "A:c2", "B:c3"]


def test_persons_without_a_consultant_get_a_level_per_town_and_arm_never_shared_between_towns():
    frame = _register([("A", "control", ""), ("A", "intensive", "c1"), ("B", "control", ""), ("B", "intensive", "c2")])
    assert sorted(_consultant_levels("outflow", frame)) == ["A:c1", "A:none:control", "B:c2", "B:none:control"]


def test_a_prior_keyed_by_the_nested_term_name_reaches_it(small_sim):
    spec = bt.load_spec("outflow").with_priors({"1|municipality:consultant_id": bt.parse_prior("HalfNormal(0.2)")})
    built = bambi_build.build(spec, model.prepare(spec, small_sim.register))
    row = bambi_build.pymc_priors(built, spec).set_index("term").loc["1|municipality:consultant_id"]
    assert row["set_by"] == "user" and row["params"]["sigma"] == pytest.approx(0.2)


@pytest.mark.parametrize("spec_name", ["outflow", "wellbeing"])
def test_graph_priors_hold_the_values_that_evaluating_each_parameter_gives(small_sim, spec_name):
    spec = bt.load_spec(spec_name).with_priors({"arm": bt.parse_prior("Normal(0, 0.3)")})
    frame = small_sim.register if spec.table == "register" else small_sim.survey
    built = bambi_build.build(spec, model.prepare(spec, frame))
    table = bambi_build.pymc_priors(built, spec).set_index("parameter")
    free = {rv.name: rv for rv in built.backend.model.free_RVs}
    assert len(table) >= 3
    for name, row in table.iterrows():
        rv = free[name]
        evaluated = [np.asarray(p.eval()).ravel() for p in rv.owner.op.dist_params(rv.owner)]
        assert [np.ravel(v).tolist() for v in row["params"].values()] == [v[:1].tolist() if np.all(v == v[0]) else
                                                                        v.round(4).tolist() for v in evaluated]


def test_parameter_values_are_those_of_eval_for_constants_broadcasts_shared_values_and_expressions():
    import pytensor
    import pytensor.tensor as pt

    shared = pytensor.shared(np.array([0.5, 2.0]), name="values")
    params = [pt.constant(np.float32(1.5)), pt.constant(np.array([3.0]))[None, :], shared[1:], pt.exp(shared) * 2]
    values = bambi_build.parameter_values(params)
    for value, param in zip(values, params):
        expected = np.asarray(param.eval())
        assert value.dtype == expected.dtype and value.shape == expected.shape and np.array_equal(value, expected)
    assert bambi_build.parameter_values([]) == []
