"""The family conformance suite: every registered family through simulate -> fit -> store/load ->
diagnose -> ppc -> query -> report section (in the spirit of scikit-learn's `parametrize_with_checks`).

A family joins the suite the moment it is registered: `check_family` is the suite, run here over
every registered family with its bundled spec, and over a toy family registered from this file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.checks import diagnose, ppc
from bayes_trial.core.errors import DataError, SpecError
from bayes_trial.core.paths import MODELS_DIR
from bayes_trial.estimands import answers, query
from bayes_trial.families import registry
from bayes_trial.families.base import Family, mean_statistic, sd_statistic, share_statistic
from bayes_trial.report import document as report
from bayes_trial.sampling.fit import load, sample, save

CONFORMANCE = {"draws": 150, "tune": 200, "chains": 2, "seed": 5}
HYPOTHESIS = "intensive - control > 0"


def bundled_specs() -> dict[str, bt.ModelSpec]:
    """The first bundled spec (models/*.toml) of each family."""
    found = {}
    for path in sorted(MODELS_DIR.glob("*.toml")):
        spec = bt.load_spec(path)
        found.setdefault(spec.family, spec)
    return found


def table_for(spec: bt.ModelSpec, sim: bt.Simulation) -> pd.DataFrame:
    return sim.survey if spec.table == "survey" else sim.register


def check_family(spec: bt.ModelSpec, frame: pd.DataFrame, out) -> dict:
    """Take `spec`'s family through the whole workbench; assert what every family promises."""
    family = registry.get(spec.family)
    fit = sample(spec, frame, progress=False, **CONFORMANCE)
    assert fit.family is family

    loaded = load(save(fit, out / f"{spec.name}.nc"))
    for name, values in fit.idata.posterior.data_vars.items():
        np.testing.assert_array_equal(loaded.idata.posterior[name].to_numpy(), values.to_numpy(), err_msg=name)

    diagnosis = diagnose.diagnose(loaded)
    assert diagnosis.verdict in ("pass", "fail")
    assert not diagnosis.parameters.empty

    predictive = ppc.posterior_predictive(loaded, max_draws=100, seed=1)
    assert predictive.draws.shape == (100, len(loaded.data))
    statistics = ppc.test_statistics(loaded, predictive)
    assert set(statistics["statistic"]) == set(family.ppc_statistics(spec, loaded.categories))
    assert statistics["ppp"].between(0, 1).all()

    answer = answers.hypothesis(loaded, HYPOTHESIS)
    assert not answer.empty
    assert answer["p_hypothesis"].between(0, 1).all()
    if not family.over_time:
        # Expected outcomes are on the outcome's own scale: each arm's mean lies within the observed range.
        observed = loaded.data[loaded.prepared.response].astype(float)
        if loaded.prepared.aggregated:
            observed = observed / loaded.prepared.weights
        for arm, draws in query.arm_means(loaded).items():
            mean = float(np.mean(draws))
            assert observed.min() <= mean <= observed.max(), (arm, mean)

    blocks = report.fit_blocks(loaded, out / "figures", diagnosis=diagnosis)
    verdicts = [b for b in blocks if b.kind == "verdict"]
    assert len(verdicts) == 1 and verdicts[0].passed == diagnosis.passed
    assert any(b.kind == "figure" for b in blocks)
    return {"fit": loaded, "answer": answer}


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_family_has_a_bundled_spec(name):
    assert name in bundled_specs(), f"family {name!r} is registered but models/ has no spec that uses it"


@pytest.mark.parametrize("name", registry.names())
def test_family_conformance(name, small_sim, tmp_path):
    spec = bundled_specs()[name]
    check_family(spec, table_for(spec, small_sim), tmp_path)


# A toy family registered from the test: Poisson counts without dispersion. Nothing outside this
# file knows it, so passing the suite shows that a family is one class plus one registration.
class PoissonToy(Family):
    """Counts with variance equal to the mean."""

    name = "poisson_toy"
    bambi_name = "poisson"
    link = "log"
    auto_rule = {**registry.get("negativebinomial").auto_rule, "aux": None}  # log scale, no dispersion

    def outcome_values(self, spec, values: pd.Series) -> pd.Series:
        bad = (values < 0) | (values != np.round(values))
        if bad.any():
            raise DataError(f"model {spec.name!r}: {spec.outcome} must be a non-negative count")
        return values.astype(int)

    def latent_variance(self, posterior, outcome: pd.Series) -> float:
        return float(np.log1p(1 / max(float(outcome.mean()), 1e-9)))

    def predictive_draws(self, parameter, posterior, trials, rng):
        return rng.poisson(parameter).astype(float)

    def ppc_statistics(self, spec, categories):
        return {"mean": mean_statistic, "sd": sd_statistic, "share of zeros": share_statistic(lambda v: v == 0)}


@pytest.fixture
def poisson_toy():
    family = registry.register(PoissonToy())
    yield family
    registry.unregister(family.name)


def toy_spec() -> bt.ModelSpec:
    return bt.spec.spec_from_dict({
        "name": "applications_poisson", "outcome": "job_applications", "table": "survey", "family": "poisson_toy",
        "formula": "job_applications ~ arm*wave + (1|municipality:consultant_id)",
    }, where="test")


def test_a_toy_family_registered_from_a_test_passes_the_suite(poisson_toy, small_sim, tmp_path):
    result = check_family(toy_spec(), small_sim.survey, tmp_path)
    components = query.variance_components(result["fit"])
    assert "consultant share of variance" in set(components["parameter"])


def test_an_unregistered_family_is_a_one_line_error_listing_the_registered_ones():
    with pytest.raises(SpecError, match=r"unknown family 'poisson_toy'; registered families: gaussian, bernoulli"):
        toy_spec()
    with pytest.raises(SpecError, match="unknown family"):
        registry.get("poisson_toy")


def test_family_names_are_compared_only_inside_families():
    import re
    from pathlib import Path

    package = Path(bt.__file__).parent
    names = "|".join(["binomial", *registry.names()])
    compared = re.compile(rf"\bfamily\s*(==|!=)|\bfamily\s+(not\s+)?in\s*[(\[{{\"']|\bfamily\b[^\n]*[\"'](?:{names})[\"']")
    offenders = [f"{path.relative_to(package)}:{n}: {line.strip()}" for path in package.rglob("*.py")
                 if path.parent.name != "families"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if compared.search(line)]
    assert offenders == []
