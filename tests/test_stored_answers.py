"""Answers from a stored fit without PyMC or Bambi: the numpy predictor against Bambi's `predict`,
the numpy diagnostics against ArviZ's, and a query process that imports neither."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayes_trial as bt
from bayes_trial.checks import convergence
from bayes_trial.estimands import query
from bayes_trial.sampling.fit import expected_response

TINY = {"draws": 40, "tune": 40, "chains": 2, "seed": 5}
HEAVY = ("pymc", "bambi", "arviz", "nutpie", "numba", "pytensor")


@pytest.fixture(scope="module")
def uneven_sim() -> bt.Simulation:
    """The small design plus Deventer, which ran no intensive arm."""
    design = copy.deepcopy(bt.load_design("small"))
    design["towns"].append({"name": "Deventer", "participants": {"control": 30, "exemption": 30},
                            "consultants": {"control": 1, "exemption": 1}})
    return bt.simulate(design, seed=6)


@pytest.fixture(scope="module", params=["trust_item", "job_applications", "outflow_hazard"])
def uneven_fit(request, uneven_sim) -> bt.Fit:
    spec = bt.load_spec(request.param)
    table = uneven_sim.register if spec.table == "register" else uneven_sim.survey
    return bt.sample(spec, table, progress=False, **TINY)


def bambi_response(fit: bt.Fit, posterior: xr.Dataset, rows: pd.DataFrame) -> np.ndarray:
    """Bambi's `predict(kind="response_params")` with the full model, (chain, draw, rows[, category])."""
    model = fit.model
    predicted = model.predict(az.InferenceData(posterior=posterior), kind="response_params", data=rows, inplace=False)
    values = predicted.posterior[model.family.likelihood.parent]
    return values.transpose("chain", "draw", "__obs__", ...).to_numpy()


def every_arm(fit: bt.Fit) -> pd.DataFrame:
    """Each person (or cell) once per arm: counterfactual rows, some of arms their town never ran."""
    frame = query.population(fit)
    arms = list(fit.data["arm"].cat.categories)
    copies = [frame.assign(arm=pd.Categorical([arm] * len(frame), categories=arms, ordered=True)) for arm in arms]
    return pd.concat(copies, ignore_index=True)


def assert_same_as_bambi(fit: bt.Fit, rows: pd.DataFrame, draws=None) -> None:
    draws = fit.idata if draws is None else draws
    ours = expected_response(fit, draws, rows).transpose("chain", "draw", "__obs__", ...).to_numpy()
    np.testing.assert_allclose(ours, bambi_response(fit, draws.posterior, rows), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("fit_name", ["outflow_fit", "wellbeing_fit"])
def test_expected_response_equals_bambi_for_counterfactual_rows(request, fit_name):
    fit = request.getfixturevalue(fit_name)
    assert_same_as_bambi(fit, every_arm(fit))


@pytest.mark.parametrize("fit_name", ["outflow_fit", "wellbeing_fit"])
def test_expected_response_equals_bambi_in_a_new_town(request, fit_name):
    fit = request.getfixturevalue(fit_name)
    assert_same_as_bambi(fit, every_arm(fit), query.new_town_posterior(fit, seed=2))


def test_expected_response_equals_bambi_for_other_families(uneven_fit):
    """Ordinal category probabilities, count means and monthly hazards; Deventer is given intensive."""
    rows = every_arm(uneven_fit)
    ran = set(zip(uneven_fit.data["municipality"].astype(str), uneven_fit.data["arm"].astype(str)))
    assert ("Deventer", "intensive") not in ran
    assert ((rows["municipality"] == "Deventer") & (rows["arm"] == "intensive")).any()
    assert_same_as_bambi(uneven_fit, rows)


def test_stored_fit_answers_as_the_fresh_fit(outflow_fit, outflow_fit_path):
    stored = bt.load(outflow_fit_path)
    fresh = query.hypothesis(outflow_fit, "intensive - control > 0", by="municipality")
    again = query.hypothesis(stored, "intensive - control > 0", by="municipality")
    pd.testing.assert_frame_equal(fresh, again)


def test_an_unseen_group_level_is_an_error(outflow_fit):
    rows = query.population(outflow_fit).head(2).copy()
    rows["consultant_id"] = "nobody"
    with pytest.raises(ValueError, match="no draws for level"):
        expected_response(outflow_fit, outflow_fit.idata, rows)


def test_numpy_diagnostics_equal_arviz(wellbeing_fit):
    posterior = wellbeing_fit.idata.posterior
    for name in ("arm", "sigma", "1|municipality:consultant_id"):
        values = posterior[name].transpose("chain", "draw", ...)
        draws = values.to_numpy().reshape(values.sizes["chain"], values.sizes["draw"], -1)
        ours = convergence.summary_diagnostics(draws)
        theirs = az.summary(xr.Dataset({name: (("chain", "draw", "k"), draws)}), kind="diagnostics", round_to="none")
        for key, found in ours.items():
            np.testing.assert_allclose(found, theirs[key].to_numpy(dtype=float), rtol=1e-9, err_msg=f"{name} {key}")
    energy = wellbeing_fit.idata.sample_stats["energy"].to_numpy()
    np.testing.assert_allclose(convergence.bfmi(energy), az.bfmi(wellbeing_fit.idata), rtol=1e-9)


def test_ranks_average_ties():
    values = np.array([[3.0, 1.0], [1.0, 1.0], [3.0, 2.0], [2.0, 1.0]])
    np.testing.assert_array_equal(convergence.average_ranks(values), [[3.5, 2.0], [1.0, 2.0], [3.5, 4.0], [2.0, 2.0]])


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def command_in_a_new_process(args: list[str]) -> tuple[str, str]:
    """The CLI's output for `args` in a new Python process, and which of HEAVY it imported."""
    code = (f"import sys\nfrom bayes_trial.cli.commands import main\ncode = main({args!r})\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if sys.modules.get(m)))")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    answer, _, heavy = done.stdout.rpartition("HEAVY")
    return answer, heavy.strip()


def test_query_process_imports_no_sampler_or_arviz(outflow_fit_path):
    answer, heavy = command_in_a_new_process(["query", str(outflow_fit_path), "intensive - control > 0",
                                              "--by", "municipality", "--json"])
    assert heavy == "[]"
    results = json.loads(answer)["results"]
    assert results[-1]["municipality"] == query.NEW_MUNICIPALITY and 0 <= results[-1]["p_hypothesis"] <= 1


def test_what_if_process_imports_no_sampler_or_arviz(outflow_fit_path):
    answer, heavy = command_in_a_new_process(["what-if", str(outflow_fit_path), "--prior", "arm=Normal(0, 0.25)"])
    assert heavy == "[]"
    assert "re-weighted the stored draws (PSIS)" in answer and "intensive - control > 0" in answer


def test_diagnose_of_a_stored_fit_imports_no_sampler_or_arviz(wellbeing_fit_path, wellbeing_fit):
    code = (f"import sys\nimport bayes_trial as bt\nfrom bayes_trial.checks import diagnose\n"
            f"print(diagnose.diagnose(bt.load({str(wellbeing_fit_path)!r})).to_json())\n"
            f"print('HEAVY', sorted(m for m in ('pymc', 'bambi', 'arviz', 'nutpie', 'pytensor') if sys.modules.get(m)))")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    answer, _, heavy = done.stdout.rpartition("HEAVY")
    assert heavy.strip() == "[]"
    assert json.loads(answer)["verdict"] == bt.diagnose.diagnose(wellbeing_fit).verdict


def test_chi_squared_quantiles_equal_scipy():
    from scipy import stats

    for df in (1, 3, 7, 8, 15):
        for p in (0.5, 1e-3, 1e-7):
            assert convergence.chi2_isf(p, df) == pytest.approx(stats.chi2.isf(p, df), rel=1e-9)
    values = np.random.default_rng(1).normal(size=(200, 4))
    np.testing.assert_array_equal(convergence.average_ranks(values), stats.rankdata(values, axis=0))
