"""Every command on a survey of thousands of persons without Bambi's dense participant term (issue 14, item 15).

Bambi builds `(1|participant_id)` from dense rows x persons and persons x persons matrices; the
commands must reach their answers through the model of the other terms and the participant SD prior.
A spy on `NestedModel` fails any build of a formula with that term; a small case checks that the
answers are those of the full model.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.cli import commands as cli
from bayes_trial.checks import compare
from bayes_trial.checks import diagnose
from bayes_trial.sampling import fastpaths
from bayes_trial.checks import priors
from bayes_trial.estimands import query
from bayes_trial.modelling import frames as model_mod
from bayes_trial.sampling import build as bambi_build

DESIGN = Path(__file__).resolve().parents[1] / "benchmarks" / "big_survey_design.toml"
FEW = {"chains": 2, "tune": 150, "draws": 150, "seed": 7}


def survey(persons: int) -> pd.DataFrame:
    """The benchmark design (four towns, three waves, 40% attrition by wave 2) at `persons` persons."""
    design = copy.deepcopy(bt.load_design(DESIGN))
    for town in design["towns"]:
        town["participants"] = {arm: n * persons // 1000 for arm, n in town["participants"].items()}
    return bt.simulate(design, seed=3).survey


@pytest.fixture
def no_participant_term(monkeypatch):
    """Fail any Bambi model built with `(1|participant_id)`."""
    built = []
    original = bambi_build.NestedModel.__init__

    def spy(self, formula, data, **kwargs):
        if fastpaths.PARTICIPANT in dict((f, e) for e, f in model_mod.group_terms(formula)):
            raise AssertionError(f"dense participant term built: {formula}")
        built.append(formula)
        original(self, formula, data, **kwargs)

    monkeypatch.setattr(bambi_build.NestedModel, "__init__", spy)
    return built


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("big")
    data = survey(3000)
    data.to_csv(out / "survey.csv", index=False)
    return out, data


def test_every_command_runs_without_the_dense_participant_term(big_files, no_participant_term, capsys, monkeypatch):
    out, data = big_files
    monkeypatch.setattr(fastpaths, "LOG_LIK_STORE_CELLS", 1000)  # as for 100,000 persons: recomputed when needed
    assert data["participant_id"].nunique() == 3000 and data.groupby("participant_id").size().nunique() == 3
    csv, fit_path = str(out / "survey.csv"), str(out / "fit.nc")
    few = [f"--{k}={v}" for k, v in FEW.items()]
    assert cli.main(["fit", "models/wellbeing.toml", "--data", csv, "--out", fit_path, "--quiet", *few]) == 0
    assert "pointwise log-likelihood not stored" in capsys.readouterr().out
    assert "log_likelihood" not in bt.load(fit_path).idata.groups()
    shutil.copy(fit_path, out / "fit2.nc")
    assert cli.main(["diagnose", fit_path, "--sensitivity"]) in (0, 1)
    assert "participant levels: 1|participant_id: 3000 levels" in capsys.readouterr().out
    assert cli.main(["priors", "models/wellbeing.toml", "--data", csv]) == 0
    assert "1|participant_id" in capsys.readouterr().out
    # exit 0 PASS or 1 FAIL (the verdict); 2 would be an error
    assert cli.main(["prior-check", "models/wellbeing.toml", "--data", csv, "--draws", "50", "--out", str(out / "pc")]) in (0, 1)
    assert cli.main(["query", fit_path, "exemption - control > 0", "--by", "municipality"]) == 0
    assert cli.main(["ppc", fit_path, "--out", str(out / "ppc")]) == 0
    assert cli.main(["report", fit_path, "--out", str(out / "report")]) == 0
    assert cli.main(["compare", fit_path, str(out / "fit2.nc"), "--lomo", "--draws", "100", "--tune", "100", "--out", str(out / "cmp")]) == 0
    assert no_participant_term  # the spy saw the builds: the mean model was built


@pytest.fixture(scope="module")
def small_fit():
    return bt.sample(bt.load_spec("wellbeing"), survey(200), progress=False, **FEW)


def test_priors_and_log_prior_equal_the_full_model(small_fit):
    full = bambi_build.build(small_fit.spec, small_fit.prepared)
    old = bambi_build.pymc_priors(full, small_fit.spec).drop(columns="params")
    new = bambi_build.pymc_priors(small_fit.prior_models, small_fit.spec)
    assert sorted(map(tuple, old.to_numpy())) == sorted(map(tuple, new.drop(columns="params").to_numpy()))
    by_term = lambda table: {r["parameter"]: r["params"] for r in table.to_dict("records")}  # noqa: E731
    for name, params in by_term(bambi_build.pymc_priors(full, small_fit.spec)).items():
        for key, value in params.items():
            np.testing.assert_allclose(by_term(new)[name][key], value, rtol=1e-12)
    table = priors.prior_table(small_fit.spec, survey(200))
    assert "1|participant_id" in set(table["term"])
    fit_full = bt.fit.Fit(small_fit.spec, small_fit.prepared, small_fit.idata, small_fit.info)
    fit_full.__dict__["prior_models"] = [full.backend.model]
    names = diagnose.prior_parameters(fit_full)
    assert sorted(names) == sorted(diagnose.prior_parameters(small_fit))
    expected, found = diagnose.log_prior(fit_full, names), diagnose.log_prior(small_fit, names)
    for name in names:
        np.testing.assert_allclose(found[name].to_numpy(), expected[name].to_numpy(), rtol=1e-10)


def test_held_out_density_integrates_new_participants_as_bambi_draws_them(small_fit):
    """The exact per-row density equals the mean of Bambi's new-participant draws within Monte Carlo error."""
    town = compare.towns(small_fit)[0]
    in_town = (small_fit.data["municipality"].astype(str) == town).to_numpy()
    held_out = small_fit.data.loc[in_town].reset_index(drop=True)
    prepared = dataclasses.replace(small_fit.prepared, data=small_fit.data.loc[~in_town].reset_index(drop=True))
    train = bt.fit.sample_prepared(small_fit.spec, prepared, data_hash="", progress=False)
    exact = compare.held_out_log_density(train, held_out)
    plain = bt.fit.Fit(train.spec, train.prepared, train.idata, train.info)
    plain.__dict__["other_terms"] = None
    plain.__dict__["model"] = bambi_build.build(train.spec, train.prepared)
    sampled = compare.held_out_log_density(plain, held_out)
    assert abs(exact.sum() - sampled.sum()) < 0.02 * abs(sampled.sum())
    assert np.corrcoef(exact, sampled)[0, 1] > 0.99


def test_prior_check_draws_participant_intercepts_from_their_prior(small_fit):
    fit = priors.prior_fit(small_fit.spec, survey(200), draws=2000, seed=1)
    sd = fit.idata.posterior[fastpaths.PARTICIPANT_SIGMA].to_numpy().ravel()
    from scipy import stats

    prior = fit.other_terms.sd_prior
    assert prior.name == "HalfStudentT"  # the `auto` rule's
    median = float(prior.args["sigma"]) * stats.t.ppf(0.75, float(prior.args["nu"]))
    assert abs(np.median(sd) / median - 1) < 0.15
    means = query.standardised_means(fit, [{"arm": "control"}])
    assert np.isfinite(means[0]).all()
