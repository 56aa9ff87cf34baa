"""The fast sampling paths keep the posterior: each is compared with the plain Bambi model on the same data.

Posterior summaries must agree within Monte Carlo error: |difference of means| below 4.5 combined MCSEs
(a false alarm about once in 100,000 per comparison), posterior SDs within 15%.
"""

from __future__ import annotations

import dataclasses

import arviz as az
import numpy as np
import pytest
from scipy import stats as scipy_stats

import bayes_trial as bt
from bayes_trial.sampling import fastpaths
from bayes_trial.modelling import frames as model_mod
from bayes_trial.sampling import build as bambi_build

SETTINGS = {"draws": 1000, "tune": 500, "chains": 2, "target_accept": 0.9}
FORMULA = "wellbeing ~ arm*wave + (1|participant_id) + (1|municipality:consultant_id)"
PARAMETERS = ["Intercept", "arm", "wave", "arm:wave", "sigma", "1|participant_id_sigma", "1|municipality:consultant_id_sigma"]


def repeated_measures_spec() -> bt.ModelSpec:
    spec = bt.load_spec("wellbeing")
    terms = {"Intercept", "arm", "wave", "arm:wave", "sigma", "1|participant_id", "1|municipality:consultant_id"}
    return dataclasses.replace(spec, formula=FORMULA, priors={k: v for k, v in spec.priors.items() if k in terms})


def assert_same_posterior(fast: az.InferenceData, plain: az.InferenceData, names: list[str]) -> None:
    a = az.summary(fast, var_names=names, kind="all")
    b = az.summary(plain, var_names=names, kind="all")
    z = (a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert (z.abs() < 4.5).all(), f"posterior means differ beyond Monte Carlo error:\n{z[z.abs() >= 4.5]}"
    ratio = a["sd"] / b["sd"]
    assert ratio.between(0.85, 1.15).all(), f"posterior SDs differ:\n{ratio}"


@pytest.fixture(scope="module")
def repeated(small_sim):
    spec = repeated_measures_spec()
    prepared = model_mod.prepare(spec, small_sim.survey)
    return spec, prepared, bambi_build.build(spec, prepared)


@pytest.fixture(scope="module")
def plain_repeated(repeated):
    _, prepared, full = repeated
    return fastpaths.sample_nutpie(full, prepared, {**SETTINGS, "seed": 1}, marginalise=False)


def test_only_gaussian_participant_intercept_models_are_marginalised(wellbeing_fit, outflow_fit):
    assert fastpaths.can_marginalise(wellbeing_fit.prepared)
    assert not fastpaths.can_marginalise(outflow_fit.prepared)
    slopes = dataclasses.replace(wellbeing_fit.prepared, formula="wellbeing ~ arm*wave + (wave|participant_id)")
    assert not fastpaths.can_marginalise(slopes)


def test_statistics_give_the_multivariate_normal_density_of_each_persons_waves(repeated):
    """The quadratic-form likelihood equals the sum over persons of MVN(mu_i, sigma^2 I + tau^2 J) densities."""
    _, prepared, full = repeated
    stats = fastpaths.participant_statistics(prepared, full)
    pymc_model = full.backend.model
    rng = np.random.default_rng(5)
    point = {name: rng.normal(0, 0.5, np.shape(value)) for name, value in pymc_model.initial_point().items()}
    point["1|participant_id_offset"] = np.zeros_like(point["1|participant_id_offset"])
    outputs = [pymc_model[name] for name in ("mu", "sigma", "1|participant_id_sigma", *stats.blocks)]
    evaluate = pymc_model.compile_fn(pymc_model.replace_rvs_by_values(outputs), inputs=pymc_model.value_vars,
                                     on_unused_input="ignore", point_fn=True)
    mu, sigma, tau, *blocks = evaluate(point)
    y = prepared.data["wellbeing"].to_numpy()
    persons = prepared.data["participant_id"].to_numpy()
    expected = 0.0
    for person in np.unique(persons):
        rows = persons == person
        cov = sigma**2 * np.eye(rows.sum()) + tau**2
        expected += scipy_stats.multivariate_normal(mu[rows], cov).logpdf(y[rows])
    theta = np.concatenate([np.ravel(b) for b in blocks])
    found = fastpaths.marginal_logp(None, None, theta, sigma, tau, stats).eval()
    assert found == pytest.approx(expected, rel=1e-9)


def test_collapsed_and_marginal_paths_match_the_plain_posterior(repeated, plain_repeated):
    _, prepared, full = repeated
    collapsed = fastpaths.sample_nutpie(full, prepared, {**SETTINGS, "seed": 2})
    marginal = fastpaths.sample_nutpie(full, prepared, {**SETTINGS, "seed": 3}, collapse=False)
    assert "Intercept" in collapsed.sample_stats.attrs["bayes_trial_integrated_out"]
    assert marginal.sample_stats.attrs["bayes_trial_integrated_out"] == "1|participant_id"
    for fast in (collapsed, marginal):
        assert set(plain_repeated.posterior.data_vars) - set(fast.posterior.data_vars) <= {
            v for v in plain_repeated.posterior.data_vars if v.endswith("__")}
        assert_same_posterior(fast, plain_repeated, PARAMETERS)
        # Participant intercepts, drawn after sampling from their conditional posterior.
        fast_u, plain_u = (f.posterior["1|participant_id"] for f in (fast, plain_repeated))
        mcse = np.hypot(az.mcse(fast_u)["1|participant_id"], az.mcse(plain_u)["1|participant_id"])
        assert (np.abs(fast_u.mean(("chain", "draw")) - plain_u.mean(("chain", "draw"))) < 4.5 * mcse).mean() > 0.99
        assert float(fast_u.std(("chain", "draw")).mean() / plain_u.std(("chain", "draw")).mean()) == pytest.approx(1, abs=0.05)


def test_low_rank_mass_matrix_keeps_the_posterior(repeated, plain_repeated):
    _, prepared, full = repeated
    low_rank = fastpaths.sample_nutpie(full, prepared, {**SETTINGS, "seed": 4}, low_rank=True)
    assert_same_posterior(low_rank, plain_repeated, PARAMETERS)


def test_refit_with_new_prior_reuses_the_compiled_collapsed_model(repeated):
    """New prior values reach a cached model: a tight prior on `arm` pulls the posterior to it."""
    _, prepared, full = repeated
    fastpaths.sample_nutpie(full, prepared, {**SETTINGS, "seed": 5, "draws": 200, "tune": 200})
    spec = repeated_measures_spec().with_priors({"arm": bt.parse_prior("Normal(2, 0.01)")})
    tight = fastpaths.sample_nutpie(bambi_build.build(spec, prepared), prepared, {**SETTINGS, "seed": 6, "draws": 200, "tune": 200})
    assert tight.sample_stats.attrs["compile_cached"] == 1
    assert float(tight.posterior["arm"].mean()) == pytest.approx(2, abs=0.01)


def test_fit_takes_the_fast_path_and_stores_the_full_model(wellbeing_fit):
    posterior = wellbeing_fit.idata.posterior
    assert "1|participant_id" in wellbeing_fit.idata.sample_stats.attrs["bayes_trial_integrated_out"]
    assert posterior["1|participant_id"].shape[-1] == wellbeing_fit.data["participant_id"].nunique()
    assert wellbeing_fit.idata.log_likelihood["wellbeing"].sizes["__obs__"] == len(wellbeing_fit.data)
    assert np.isfinite(wellbeing_fit.idata.log_likelihood["wellbeing"]).all()


def test_log_likelihood_totals_without_the_pointwise_array_equal_its_sums(wellbeing_fit):
    from bayes_trial.sampling.fit import Fit, log_likelihood_totals

    stored = wellbeing_fit.idata.log_likelihood["wellbeing"].sum("__obs__", dtype=float).to_numpy()
    idata = az.InferenceData(**{g: wellbeing_fit.idata[g] for g in wellbeing_fit.idata.groups() if g != "log_likelihood"})
    unstored = Fit(wellbeing_fit.spec, wellbeing_fit.prepared, idata, wellbeing_fit.info)
    unstored.other_terms = wellbeing_fit.other_terms
    totals = log_likelihood_totals(unstored)["wellbeing"]
    assert totals.dims == ("chain", "draw") and "log_likelihood" not in unstored.idata.groups()
    # Stored values are float32 per row; the totals sum double-precision densities.
    np.testing.assert_allclose(totals.to_numpy(), stored, rtol=1e-5)


def test_binomial_cells_match_bernoulli_rows(small_sim, outflow_fit):
    spec = outflow_fit.spec
    rows = model_mod.prepare(dataclasses.replace(spec, aggregate=False), small_sim.register)
    assert not rows.aggregated and outflow_fit.prepared.aggregated
    plain = fastpaths.sample_nutpie(bambi_build.build(spec, rows), rows, {**SETTINGS, "seed": 7})
    cells = fastpaths.sample_nutpie(outflow_fit.model, outflow_fit.prepared, {**SETTINGS, "seed": 8})
    assert_same_posterior(cells, plain, ["Intercept", "arm", "1|municipality:consultant_id_sigma"])


def test_structure_key_ignores_prior_values_and_outcomes_but_not_layout_or_prior_families(small_sim, outflow_fit):
    def key(spec, frame):
        prepared = model_mod.prepare(spec, frame)
        model = bambi_build.build(spec, prepared).backend.model
        return fastpaths.structure_key(fastpaths.lift_data(fastpaths.lift_priors(model)))

    spec = outflow_fit.spec
    base = key(spec, small_sim.register)
    assert key(spec.with_priors({"arm": bt.parse_prior("Normal(0, 0.2)")}), small_sim.register) == base
    assert key(spec.with_priors({"arm": bt.parse_prior("StudentT(3, 0, 0.5)")}), small_sim.register) != base
    flipped = small_sim.register.assign(outflow_work=1 - small_sim.register["outflow_work"])
    assert key(spec, flipped) == base
    other = bt.simulate(bt.load_design("small"), seed=4).register
    assert key(spec, other) != base


def test_new_survey_outcome_of_the_same_layout_reuses_the_collapsed_model(repeated):
    """The outcome reaches a cached model as data: shifting every score by 3 shifts the intercept by 3."""
    spec, prepared, full = repeated
    settings = {**SETTINGS, "draws": 200, "tune": 200}
    first = fastpaths.sample_nutpie(full, prepared, {**settings, "seed": 9})
    shifted = dataclasses.replace(prepared, data=prepared.data.assign(wellbeing=prepared.data["wellbeing"] + 3))
    second = fastpaths.sample_nutpie(bambi_build.build(spec, shifted), shifted, {**settings, "seed": 9})
    assert second.sample_stats.attrs["compile_cached"] == 1
    difference = float(second.posterior["Intercept"].mean() - first.posterior["Intercept"].mean())
    assert difference == pytest.approx(3, abs=0.1)
    assert float(second.posterior["sigma"].mean()) == pytest.approx(float(first.posterior["sigma"].mean()), rel=0.1)


def test_refit_reuses_the_compiled_model_with_the_new_prior(outflow_fit):
    first = bt.refit(outflow_fit, priors={"arm": bt.parse_prior("Normal(0, 0.05)")}, progress=False)
    second = bt.refit(outflow_fit, priors={"arm": bt.parse_prior("Normal(1, 0.01)")}, progress=False)
    assert second.idata.sample_stats.attrs["compile_cached"] == 1
    assert float(second.idata.posterior["arm"].mean()) == pytest.approx(1, abs=0.03)
    assert float(first.idata.posterior["arm"].std()) < 0.06


# ---------------------------------------------------------------------------------------------
# Unbalanced panels and size (issue 14, item 15)
# ---------------------------------------------------------------------------------------------

THREE_WAVES = """
name = "three_waves"
description = "Two towns, three arms, three waves with attrition: persons with 1, 2 and 3 waves."
control_arm = "control"
arms = ["control", "exemption", "intensive"]
waves = 3

[[towns]]
name = "Oss"
participants = {{ control = {n}, exemption = {n}, intensive = {n} }}
consultants = {{ control = 2, exemption = 2, intensive = 2 }}

[[towns]]
name = "Nijmegen"
participants = {{ control = {n}, exemption = {n}, intensive = {n} }}
consultants = {{ control = 2, exemption = 2, intensive = 2 }}

[response]
control = [0.9, 0.6, 0.5]
exemption = [0.9, 0.7, 0.6]
intensive = [0.9, 0.7, 0.6]

[outflow]
probability = {{ control = 0.28, exemption = 0.30, intensive = 0.35 }}
town_sd = 0.3
town_arm_sd = 0.1
consultant_sd = 0.3

[outcomes.wellbeing]
scale = "score"
intercept = 5.8
wave_effects = [0.3, 0.4]
arm_effects = {{ exemption = [0.2, 0.2], intensive = [0.4, 0.5] }}
town_sd = 0.2
town_arm_sd = 0.1
town_wave_sd = 0.1
consultant_sd = 0.3
participant_sd = 1.0
residual_sd = 1.0
"""


def three_wave_survey(tmp_path_factory, per_arm: int):
    path = tmp_path_factory.mktemp("designs") / f"three_waves_{per_arm}.toml"
    path.write_text(THREE_WAVES.format(n=per_arm))
    return bt.simulate(bt.load_design(path), seed=8).survey


@pytest.fixture(scope="module")
def unbalanced(tmp_path_factory):
    spec = repeated_measures_spec()
    return spec, model_mod.prepare(spec, three_wave_survey(tmp_path_factory, 40))


def test_a_trial_of_another_layout_reuses_the_collapsed_model_and_samples_as_if_compiled_for_it(repeated, unbalanced):
    """Other towns' consultants, waves and persons: the compiled collapsed model holds no size of the data."""
    _, prepared, full = repeated
    spec, other = unbalanced
    settings = {**SETTINGS, "draws": 100, "tune": 100, "seed": 12}
    fastpaths.sample_nutpie(full, prepared, settings)
    model = fastpaths.model_for_priors(spec, other)
    reused = fastpaths.sample_nutpie(model, other, settings)
    assert reused.sample_stats.attrs["compile_cached"] == 1
    assert fastpaths.participant_statistics(other, model).within_matrix.shape != \
        fastpaths.participant_statistics(prepared, full).within_matrix.shape
    fresh = fastpaths.sample_nutpie(model, other, settings, cache=False)
    assert fresh.sample_stats.attrs["compile_cached"] == 0
    for name in fresh.posterior.data_vars:
        np.testing.assert_array_equal(reused.posterior[name].values, fresh.posterior[name].values, err_msg=name)
        assert reused.posterior[name].coords.equals(fresh.posterior[name].coords)


def test_unbalanced_panel_takes_the_fast_path_and_matches_plain_bambi(unbalanced):
    """Persons with 1, 2 and 3 waves: the path `fit` takes (no full Bambi model) gives Bambi's posterior."""
    spec, prepared = unbalanced
    other = fastpaths.build_other_terms(spec, prepared)
    stats = fastpaths.participant_statistics(prepared, other)
    assert stats.sizes.tolist() == [1, 2, 3] and (stats.persons > 10).all()
    assert fastpaths.can_marginalise(prepared)
    full = bambi_build.build(spec, prepared)
    assert stats.levels.tolist() == list(full.backend.model.coords[fastpaths.PARTICIPANT_DIM])
    fast = fastpaths.sample_nutpie(other, prepared, {**SETTINGS, "seed": 9}, for_storage=True)
    plain = fastpaths.sample_nutpie(full, prepared, {**SETTINGS, "seed": 10}, marginalise=False)
    assert "Intercept" in fast.sample_stats.attrs["bayes_trial_integrated_out"]
    assert_same_posterior(fast, plain, PARAMETERS)
    fast_u, plain_u = (f.posterior["1|participant_id"] for f in (fast, plain))
    mcse = np.hypot(az.mcse(fast_u)["1|participant_id"], az.mcse(plain_u)["1|participant_id"])
    assert (np.abs(fast_u.mean(("chain", "draw")) - plain_u.mean(("chain", "draw"))) < 4.5 * mcse).mean() > 0.99
    # Its own log-likelihood is PyMC's for the full model at the same draws (stored in single precision).
    import pymc as pm

    few = fast.sel(draw=slice(0, 20))
    offsets = [rv.name.removesuffix("_offset") for rv in full.backend.model.free_RVs if rv.name.endswith("_offset")]
    padded = few.posterior.assign({f"{n}_offset": few.posterior[n] / few.posterior[f"{n}_sigma"] for n in offsets})
    pymc_ll = pm.compute_log_likelihood(az.InferenceData(posterior=padded), model=full.backend.model,
                                        extend_inferencedata=False, progressbar=False)["wellbeing"]
    assert np.allclose(few.log_likelihood["wellbeing"].to_numpy(), pymc_ll.to_numpy(), rtol=1e-6, atol=1e-6)


def test_default_prior_of_the_participant_sd_is_the_full_models(unbalanced):
    spec, prepared = unbalanced
    spec = dataclasses.replace(spec, priors={k: v for k, v in spec.priors.items() if k != "1|participant_id"})
    other = fastpaths.build_other_terms(spec, prepared)
    full = bambi_build.build(spec, prepared)
    expected = full.components["mu"].terms["1|participant_id"].prior.args["sigma"]
    assert other.sd_prior.name == expected.name == "HalfStudentT"  # the `auto` rule's, as in the full model
    for name, value in expected.args.items():
        assert float(other.sd_prior.args[name]) == pytest.approx(float(value))


def test_fit_path_builds_nothing_of_size_persons_squared_or_rows_times_persons(tmp_path_factory, monkeypatch):
    """On about 3,000 persons: no Bambi model with the participant term, no array with a persons-sized and a
    rows- or persons-sized dimension in the built model, the summaries or the compiled log density."""
    import bambi as bmb
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import ancestors

    from bayes_trial.sampling import fit as fit_mod

    spec = bt.load_spec("wellbeing")
    prepared = model_mod.prepare(spec, three_wave_survey(tmp_path_factory, 500))
    persons, rows = prepared.data["participant_id"].nunique(), len(prepared.data)
    assert persons > 2500 and rows > persons
    built = []
    original = bmb.Model.__init__
    monkeypatch.setattr(bmb.Model, "__init__", lambda self, formula, *a, **k: (built.append(str(formula)), original(self, formula, *a, **k))[1])
    other = fit_mod.model_to_sample(spec, prepared, spec.sampler)
    assert isinstance(other, fastpaths.OtherTerms)
    stats = fastpaths.participant_statistics(prepared, other)
    target = fastpaths.collapsed_model(other, stats)
    assert built and not any("participant_id" in formula for formula in built)

    def too_big(shape) -> bool:
        return sum(n >= persons for n in shape) >= 2

    for term in other.model.components["mu"].terms.values():
        assert not too_big(np.shape(term.data)), term.name
        assert persons not in np.shape(term.data), term.name
    for name in ("within_matrix", "between_matrix", "design", "mean_design"):
        assert not too_big(getattr(stats, name).shape), name
    assert stats.design.nnz <= rows * len(stats.informed) and stats.mean_design.shape == (persons, len(stats.informed))
    inputs = [v for v in ancestors([target.logp()]) if isinstance(v, (Constant, SharedVariable))]
    shapes = [np.shape(v.data if isinstance(v, Constant) else v.get_value()) for v in inputs]
    # Only summaries of the q coefficients: the compiled model does not grow with the data.
    q = sum(int(np.prod(shape)) for shape in stats.block_shapes)
    assert max(max(shape, default=0) for shape in shapes) <= q < persons
