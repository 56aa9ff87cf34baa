"""Centred or non-centred group effects per term: the data rule, the spec setting, and that both fit the same posterior."""

from __future__ import annotations

import dataclasses
import json

import arviz as az
import numpy as np
import pytest

import bayes_trial as bt
from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import MODELS_DIR
from bayes_trial.modelling import frames
from bayes_trial.modelling.parametrisation import choose, level_information
from bayes_trial.modelling.spec import load_spec, spec_from_dict, spec_from_json
from bayes_trial.sampling import build as bambi_build
from conftest import FAST

TERMS = ("1|municipality", "arm|municipality", "1|municipality:consultant_id")


@pytest.fixture(scope="module")
def nl7_cells():
    """nl7's outflow cells (7 towns, some without an arm, some with one consultant per arm), and x30 of them."""
    spec = load_spec("outflow")
    prepared = frames.prepare(spec, bt.simulate(bt.load_design("nl7"), seed=5).register)
    data = prepared.data.copy()
    data[["outflow_work", "n_trials"]] *= 30
    return spec, prepared, dataclasses.replace(prepared, data=data)


def parametrisations(spec, prepared) -> dict[str, str]:
    return {term: choice.parametrisation for term, choice in choose(spec, prepared).items()}


def test_auto_centres_terms_whose_every_level_has_large_cells_and_not_small_ones(nl7_cells, small_sim):
    spec, x1, x30 = nl7_cells
    assert set(parametrisations(spec, x1).values()) == {"noncentred"}  # the default, whatever the data
    spec = dataclasses.replace(spec, parametrisation="auto")
    small = frames.prepare(spec, small_sim.register)  # 2 towns x 3 arms x 40 persons
    assert parametrisations(spec, x1) == {"1|municipality": "centred", "arm|municipality": "noncentred",
                                          "1|municipality:consultant_id": "noncentred"}
    # 30 times the persons per consultant (at least 500): centred now; town slopes stay non-centred
    # because a town without an arm has a slope that no person informs.
    assert parametrisations(spec, x30)["1|municipality:consultant_id"] == "centred"
    assert parametrisations(spec, x30)["arm|municipality"] == "noncentred"
    assert set(parametrisations(spec, small).values()) == {"noncentred"}


def test_level_information_counts_a_town_without_an_arm_as_uninformed(nl7_cells):
    spec, x1, _ = nl7_cells
    slopes = level_information("arm|municipality", x1, 0.2)
    towns, arms = x1.data["municipality"].nunique(), x1.data["arm"].cat.categories.size
    observed = x1.data.groupby(["municipality", "arm"], observed=True).size()
    assert len(slopes) == towns * (arms - 1)
    assert (slopes == 0).sum() == towns * arms - len(observed)  # every missing town x arm pair, none else
    persons = level_information("1|municipality", x1, 1.0)
    assert persons.sum() == x1.data["n_trials"].sum()


def test_the_spec_setting_overrides_the_rule_for_all_terms_or_one(nl7_cells):
    spec, x1, _ = nl7_cells
    assert set(parametrisations(dataclasses.replace(spec, parametrisation="centred"), x1).values()) == {"centred"}
    one = dataclasses.replace(spec, parametrisation={"1|municipality": "noncentred"})
    assert parametrisations(one, x1)["1|municipality"] == "noncentred"
    assert parametrisations(one, x1)["arm|municipality"] == "noncentred"  # the others: the default
    mixed = dataclasses.replace(spec, parametrisation={"1|municipality": "auto"})
    assert parametrisations(mixed, x1)["1|municipality"] == "centred"
    assert parametrisations(mixed, x1)["1|municipality:consultant_id"] == "noncentred"
    model = bambi_build.build(dataclasses.replace(spec, parametrisation={"arm|municipality": "centred"}), x1)
    free = {rv.name for rv in model.backend.model.free_RVs}
    assert {"arm|municipality", "1|municipality_offset", "1|municipality:consultant_id_offset"} <= free
    assert "1|municipality:consultant_id" in {v.name for v in model.backend.model.deterministics}


@pytest.mark.parametrize("value, message", [
    ("centered", "parametrisation must be one of auto, centred, noncentred"),
    ({"1|municipality": "yes"}, "parametrisation of '1|municipality' must be one of auto, centred, noncentred"),
    ({"arm": "centred"}, "parametrisation is for group terms"),
])
def test_a_bad_parametrisation_is_a_one_line_spec_error(value, message):
    raw = {**load_spec("outflow").to_dict(), "parametrisation": value}
    with pytest.raises(SpecError, match=message) as err:
        spec_from_dict(raw, where="models/x.toml")
    assert "\n" not in str(err.value) and str(err.value).startswith("models/x.toml:")


def test_a_parametrisation_for_a_term_not_in_the_model_is_refused(nl7_cells):
    spec, x1, _ = nl7_cells
    with pytest.raises(SpecError, match=r"unknown group term\(s\) 1\|town; group terms: 1\|municipality"):
        choose(dataclasses.replace(spec, parametrisation={"1|town": "centred"}), x1)


def test_the_setting_round_trips_and_the_default_is_left_out_of_stored_specs(tmp_path):
    spec = load_spec("outflow")
    assert "parametrisation" not in spec.to_dict()
    spec_path = tmp_path / "outflow.toml"
    spec_path.write_text(MODELS_DIR.joinpath("outflow.toml").read_text() + '[parametrisation]\n"1|municipality" = "noncentred"\n')
    assert load_spec(spec_path).parametrisation == {"1|municipality": "noncentred"}
    set_ = dataclasses.replace(spec, parametrisation={"1|municipality": "noncentred"})
    assert spec_from_json(set_.to_json()) == set_


def test_centred_and_noncentred_fits_of_the_same_data_agree_and_the_fit_stores_its_choice(outflow_fit, small_sim):
    stored = json.loads(outflow_fit.info["parametrisation"])
    assert set(stored) == set(TERMS) and set(stored.values()) == {"noncentred"}  # the default
    centred = bt.sample(dataclasses.replace(load_spec("outflow"), parametrisation="centred"), small_sim.register,
                        progress=False, **FAST)
    assert set(json.loads(centred.info["parametrisation"]).values()) == {"centred"}
    for name in ("Intercept", "arm"):
        a, b = outflow_fit.idata.posterior[name], centred.idata.posterior[name]
        error = np.hypot(az.mcse(a)[name], az.mcse(b)[name])
        assert (np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))) < 4 * error + 0.02).all(), name


def test_priors_with_data_says_each_group_terms_parametrisation_and_why(small_sim_dir, capsys):
    from bayes_trial.cli import commands as cli

    assert cli.main(["priors", "outflow", "--data", str(small_sim_dir)]) == 0
    out = capsys.readouterr().out
    assert "group effects 1|municipality: noncentred (default: set parametrisation = \"auto\" to choose" in out
    assert sum(line.startswith("group effects ") for line in out.splitlines()) == len(TERMS)
