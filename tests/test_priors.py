"""Priors: the table of priors in use, errors for bad priors, and prior predictive checks."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from scipy.stats import norm

import bayes_trial as bt
from bayes_trial.families import registry
from bayes_trial.modelling import autoprior
from bayes_trial.modelling import frames as model_mod
from bayes_trial.sampling import build as bambi_build
from bayes_trial.estimands import query
from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import MODELS_DIR
from bayes_trial.checks.priors import (
    DEFAULT_NOTE, check_priors, format_prior_check, format_prior_table, ordered_normal, plot_prior_check, prior_check,
    prior_fit, prior_table, prior_terms,
)
from bayes_trial.modelling.spec import parse_prior, parse_prior_assignment

BUNDLED = sorted(p.stem for p in MODELS_DIR.glob("*.toml"))
TINY = "HalfNormal(0.001)"  # a standard deviation that is as good as zero


def frame_for(spec, sim):
    if spec.outcome == "responded":  # the response model is fitted to everyone randomised
        return bt.data.contract.with_nonresponse(sim.survey, sim.register)
    return sim.survey if spec.table == "survey" else sim.register


def with_priors(name, **priors):
    spec = bt.load_spec(name)
    return spec.with_priors({term.replace("__", "|"): parse_prior(text) for term, text in priors.items()})


def pinned(name, **priors):
    """A spec whose group SDs are ~0, so that the prior predictive has a closed form."""
    spec = bt.load_spec(name)
    sds = {term: parse_prior(TINY) for term in spec.priors if "|" in term}
    return spec.with_priors(sds | {term: parse_prior(text) for term, text in priors.items()})


# ---------------------------------------------------------------------------------------------
# Which priors are used
# ---------------------------------------------------------------------------------------------


def test_prior_terms_follow_the_formula_and_family_without_data():
    assert prior_terms(bt.load_spec("wellbeing")) == [
        "Intercept", "arm", "wave", "arm:wave", "1|participant_id", "1|municipality:consultant_id",
        "1|municipality", "arm|municipality", "1|municipality:wave", "sigma"]
    ordinal = prior_terms(bt.load_spec("trust_item"))
    assert "Intercept" not in ordinal and ordinal[-1] == "threshold"
    assert prior_terms(bt.load_spec("job_applications"))[-1] == "alpha"
    assert prior_terms(bt.load_spec("outflow")) == [
        "Intercept", "arm", "1|municipality", "arm|municipality", "1|municipality:consultant_id"]


@pytest.mark.parametrize("name", BUNDLED)
def test_every_prior_in_the_bundled_specs_reaches_the_pymc_model(name, small_sim):
    spec = bt.load_spec(name)
    frame = frame_for(spec, small_sim)
    resolved = model_mod.resolve_priors(spec, model_mod.prepare(spec, frame))
    table = prior_table(spec, frame).set_index("term")
    for term, prior in spec.priors.items():
        row = table.loc[term]
        assert row["set_by"] == ("auto" if prior.dist == "auto" else "user")
        used = resolved.spec.priors[term]
        assert row["prior"] == str(used)  # the spec's own notation
        assert set(row["params"]) == set(used.params)
        assert all(np.allclose(row["params"][k], v) for k, v in used.params.items())
        assert row["note"].startswith("auto: ") == (prior.dist == "auto")
    assert set(table.index[table["set_by"] == "default"]) <= {"threshold"}


@pytest.mark.parametrize("name, priors", [
    ("wellbeing", {"Intercept": "Logistic(5, 1)", "arm": "StudentT(3, 0, 1)", "wave": "Cauchy(0, 0.5)",
                   "arm:wave": "Normal(0.1, 0.2)", "1|participant_id": "Gamma(2, 4)",
                   "1|municipality:consultant_id": "LogNormal(-1, 0.5)", "1|municipality": "HalfStudentT(3, 0.5)",
                   "arm|municipality": "InverseGamma(3, 1)", "1|municipality:wave": "HalfCauchy(0.2)",
                   "sigma": "Exponential(0.5)"}),
    ("job_applications", {"alpha": "Uniform(0.1, 20)", "1|participant_id": "Beta(2, 5)"}),
])
def test_every_distribution_family_reaches_the_model_as_written(name, priors, small_sim):
    spec = bt.load_spec(name).with_priors({t: parse_prior(p) for t, p in priors.items()})
    table = prior_table(spec, frame_for(spec, small_sim)).set_index("term")
    for term, text in priors.items():
        assert table.loc[term, "prior"] == str(parse_prior(text)), term
        assert table.loc[term, "set_by"] == "user"


def test_prior_table_marks_defaults_and_reads_them_from_the_data(small_sim):
    spec = bt.load_spec("wellbeing")
    spec = dataclasses.replace(spec, priors={k: v for k, v in spec.priors.items() if k not in ("arm", "sigma")})
    without_data = prior_table(spec).set_index("term")
    assert without_data.loc["arm", "set_by"] == "auto" and without_data.loc["arm", "prior"] == DEFAULT_NOTE
    assert without_data.loc["1|municipality:consultant_id", "set_by"] == "user"
    with_data = prior_table(spec, small_sim.survey).set_index("term")
    assert list(with_data.index) == list(without_data.index)
    sd = small_sim.survey["wellbeing"].dropna().std()
    assert with_data.loc["arm", "set_by"] == "auto"
    assert with_data.loc["arm", "prior"] == f"Normal(mu=0, sigma={float(f'{0.5 * sd:.3g}'):.4g})"
    assert with_data.loc["arm", "note"] == f"auto: 0.5 x SD(wellbeing)={sd:.3g} -> Normal(mu=0, sigma={float(f'{0.5 * sd:.3g}'):g})"
    assert with_data.loc["sigma", "prior"].startswith("Exponential(lam=")
    assert with_data.loc["1|participant_id", "applies_to"] == "SD of group effects"
    text = format_prior_table(prior_table(spec, small_sim.survey))
    assert "set by" in text and "auto" in text and "user" in text


def test_a_prior_for_a_term_dropped_from_these_data_is_reported_unused(small_sim):
    one_town = small_sim.register[small_sim.register["municipality"] == "Oss"]
    table = prior_table(bt.load_spec("outflow"), one_town).set_index("term")
    assert table.loc["arm|municipality", "note"].startswith("not used: dropped (arm|municipality)")


def test_the_guard_fails_when_the_model_has_another_prior_than_the_spec(small_sim):
    spec = bt.load_spec("outflow")
    built = bambi_build.build(spec, model_mod.prepare(spec, small_sim.register))
    bambi_build.check_priors_reached(built, spec)
    changed = spec.with_priors({"arm": parse_prior("Normal(0, 2)")})
    with pytest.raises(SpecError, match="prior for 'arm' did not reach the PyMC model: asked Normal"):
        bambi_build.check_priors_reached(built, changed)


# ---------------------------------------------------------------------------------------------
# Bad priors: one line, naming the valid choices
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("term, prior, fragment", [
    ("arms", "Normal(0, 1)", "unknown term 'arms'; valid terms: Intercept, arm, wave, arm:wave, 1|participant_id"),
    ("1|consultant_id", "HalfNormal(1)", "unknown term '1|consultant_id'; valid terms:"),
    ("1|participant_id", "Normal(0, 1)", "must be positive; got Normal(mu=0, sigma=1); valid: Exponential, Gamma"),
    ("sigma", "StudentT(3, 0, 1)", "'sigma' is a standard deviation or dispersion"),
    ("arm|municipality", "Uniform(-1, 1)", "Uniform(lower >= 0)"),
])
def test_bad_priors_are_refused_with_the_valid_choices(term, prior, fragment):
    spec = bt.load_spec("wellbeing").with_priors({term: parse_prior(prior)})
    with pytest.raises(SpecError) as err:
        check_priors(spec)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_threshold_priors_are_refused_because_they_cannot_stay_ordered():
    with pytest.raises(SpecError, match="thresholds keep Bambi's default prior"):
        check_priors(bt.load_spec("trust_item").with_priors({"threshold": parse_prior("Normal(0, 2)")}))


def test_positive_priors_other_than_half_distributions_are_accepted():
    check_priors(bt.load_spec("wellbeing").with_priors({
        "sigma": parse_prior("Uniform(0, 10)"), "1|participant_id": parse_prior("Exponential(1)")}))


def test_build_refuses_a_prior_below_zero_for_a_standard_deviation(small_sim):
    """The same rule guards model building, which every fit goes through (Python API included)."""
    spec = bt.load_spec("job_applications").with_priors({"alpha": parse_prior("Normal(0, 1)")})
    with pytest.raises(SpecError, match="'alpha' is a standard deviation or dispersion"):
        bambi_build.build(spec, model_mod.prepare(spec, small_sim.survey))


@pytest.mark.parametrize("text, fragment", [
    ("arm=Normall(0, 1)", "unknown distribution 'Normall'; valid: Normal, StudentT"),
    ("arm=Normal(0, -1)", "sigma must be > 0"),
    ("1|municipality=HalfNormal(scale=1)", "HalfNormal takes (sigma); unknown scale"),
])
def test_command_line_priors_name_the_problem_and_the_choices(text, fragment):
    with pytest.raises(SpecError) as err:
        parse_prior_assignment(text)
    assert fragment in str(err.value)


# ---------------------------------------------------------------------------------------------
# Prior predictive checks
# ---------------------------------------------------------------------------------------------


def summary_row(result, quantity, arm, wave=None):
    table = result.summary
    rows = table[(table["quantity"] == quantity) & (table["arm"] == arm)]
    if wave is not None:
        rows = rows[rows["wave"] == wave]
    assert len(rows) == 1, (quantity, arm, wave)
    return rows.iloc[0]


def test_prior_check_outflow_percentages_and_effects_match_a_pinned_prior(small_sim, tmp_path):
    """Intercept -1 and arm effects +0.5 on the log-odds scale, no town or consultant variation."""
    spec = pinned("outflow", Intercept="Normal(-1, 0.001)", arm="Normal(0.5, 0.001)")
    result = prior_check(spec, small_sim.register, draws=100, seed=1)
    assert summary_row(result, "arm mean", "control")["mean"] == pytest.approx(100 * expit(-1), abs=0.1)
    assert summary_row(result, "arm mean", "intensive")["unit"] == "%"
    effect = summary_row(result, "effect", "intensive - control")
    assert effect["mean"] == pytest.approx(100 * (expit(-0.5) - expit(-1)), abs=0.1)
    assert effect["unit"] == "pp" and effect["p_gt_0"] == 1.0
    assert set(result.summary["quantity"]) == {"arm mean", "effect"}
    under_prior = query.effects(prior_fit(spec, small_sim.register, draws=100, seed=1)).set_index("contrast")
    assert under_prior.loc["intensive - control", "mean"] == pytest.approx(effect["mean"])
    paths = plot_prior_check(result, tmp_path)
    assert {p.suffix for p in paths} == {".png", ".svg"} and all(p.stat().st_size > 0 for p in paths)


def test_prior_check_share_outside_the_scale_matches_the_normal_tail(small_sim, tmp_path):
    """Scores ~ Normal(9, 1) under the prior: P(score > 10) = 1 - Phi(1) = 15.9%, P(< 0) ~ 0."""
    spec = pinned("wellbeing", Intercept="Normal(9, 0.001)", arm="Normal(0, 0.001)", wave="Normal(0, 0.001)",
                  **{"arm:wave": "Normal(0, 0.001)", "sigma": "Uniform(0.999, 1.001)"})
    result = prior_check(spec, small_sim.survey, draws=200, seed=2)
    share = summary_row(result, "predicted share outside 0-10", "all")
    assert share["mean"] == pytest.approx(100 * norm.sf(1), abs=0.5)
    assert share["unit"] == "%"
    assert summary_row(result, "arm mean", "exemption", wave=1)["mean"] == pytest.approx(9, abs=0.01)
    arms = {"control", "exemption", "intensive"}
    assert set(result.summary["arm"]) <= arms | {"all", "exemption - control", "intensive - control"}
    assert "predicted share outside 0-10" in format_prior_check(result)
    assert len(plot_prior_check(result, tmp_path)) == 2


def test_a_too_wide_prior_predicts_more_wellbeing_outside_0_to_10(small_sim):
    sensible = prior_check(bt.load_spec("wellbeing"), small_sim.survey, draws=200, seed=3)
    wide = prior_check(with_priors("wellbeing", Intercept="Normal(6, 20)", arm="Normal(0, 10)", sigma="HalfNormal(20)"),
                       small_sim.survey, draws=200, seed=3)
    outside = "predicted share outside 0-10"
    assert summary_row(wide, outside, "all")["mean"] > summary_row(sensible, outside, "all")["mean"] + 30
    effect = ("effect", "intensive - control")
    assert summary_row(wide, *effect, wave=1)["sd"] > 5 * summary_row(sensible, *effect, wave=1)["sd"]


def test_prior_check_counts_match_a_poisson_limit(small_sim):
    """Dispersion ~1000 makes the negative binomial Poisson(2): P(0) = exp(-2) = 13.5%."""
    spec = pinned("job_applications", Intercept=f"Normal({np.log(2)}, 0.001)", arm="Normal(0, 0.001)",
                  wave="Normal(0, 0.001)", alpha="Uniform(999, 1001)", **{"arm:wave": "Normal(0, 0.001)"})
    result = prior_check(spec, small_sim.survey, draws=200, seed=4)
    assert summary_row(result, "predicted share of zeros", "all")["mean"] == pytest.approx(100 * np.exp(-2), abs=0.7)
    assert summary_row(result, "arm mean", "control", wave=0)["mean"] == pytest.approx(2, abs=0.01)
    assert summary_row(result, "predicted share above 200", "all")["mean"] == 0


def test_prior_check_ordinal_category_shares_add_up_and_thresholds_stay_ordered(small_sim):
    result = prior_check(bt.load_spec("trust_item"), small_sim.survey, draws=100, seed=5)
    shares = result.summary[result.summary["quantity"].str.startswith("predicted share in category")]
    assert sorted(shares["quantity"].unique()) == [f"predicted share in category {k}" for k in range(1, 6)]
    for _, group in shares.groupby(["arm", "wave"], dropna=False):
        assert group["mean"].sum() == pytest.approx(100)
    means = result.summary[result.summary["quantity"] == "arm mean"]
    assert means["lower"].min() >= 1 and means["upper"].max() <= 5
    assert any("restricted to increasing values" in note for note in result.notes)


def test_ordered_thresholds_follow_the_normal_prior_restricted_to_increasing_values():
    """Gibbs draws against rejection sampling, which is exact but wasteful."""
    rng = np.random.default_rng(6)
    mu = np.linspace(-2, 2, 4)
    gibbs = ordered_normal(mu, 1.0, 4000, rng)
    assert (np.diff(gibbs, axis=1) > 0).all()
    proposals = rng.normal(mu, 1.0, size=(40_000, 4))
    exact = proposals[(np.diff(proposals, axis=1) > 0).all(axis=1)]
    np.testing.assert_allclose(gibbs.mean(axis=0), exact.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(gibbs.std(axis=0), exact.std(axis=0), atol=0.05)


def test_prior_check_refuses_too_few_draws(small_sim):
    with pytest.raises(SpecError, match="draws must be an integer of at least 10"):
        prior_check(bt.load_spec("outflow"), small_sim.register, draws=3)


# ---------------------------------------------------------------------------------------------
# auto priors and the prior-check verdict
# ---------------------------------------------------------------------------------------------


def _prepared(family, outcome, **columns):
    data = pd.DataFrame({"y": outcome, **columns})
    return model_mod.PreparedData(data, "y ~ " + " + ".join(columns), family, "y")


def test_auto_priors_of_a_gaussian_score_with_sd_2_follow_the_documented_rule():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 400)
    y = 6 + 2 * (y - y.mean()) / y.std(ddof=1)  # mean 6, SD exactly 2
    arm = pd.Categorical(np.repeat(["control", "a"], 200), categories=["control", "a"])
    age = rng.normal(40, 10, 400)
    prepared = _prepared("gaussian", y, arm=arm, age=age)
    spec = dataclasses.replace(bt.load_spec("wellbeing"), outcome="y", formula="y ~ arm + age", priors={})
    resolved = autoprior.resolve(spec, prepared)
    priors = resolved.spec.priors
    assert priors["Intercept"] == parse_prior("Normal(6, 1)")          # mean(y), 0.5 x SD
    assert priors["arm"] == parse_prior("Normal(0, 1)")                # 0.5 x SD for a dummy-coded arm
    assert priors["age"].params["sigma"] == pytest.approx(1 / age.std(ddof=1), rel=1e-2)  # / SD(age)
    assert priors["sigma"] == parse_prior("Exponential(0.5)")          # rate 1 / SD
    assert resolved.reasons["arm"] == "auto: 0.5 x SD(y)=2 -> Normal(mu=0, sigma=1)"
    grouped = _prepared("gaussian", y, arm=arm)
    grouped = dataclasses.replace(grouped, formula="y ~ arm + (1|arm)")
    assert autoprior.resolve(dataclasses.replace(spec, formula="y ~ arm + (1|arm)"), grouped).spec.priors[
        "1|arm"] == parse_prior("HalfStudentT(3, 0.5)")                # Student-t(3), 0.25 x SD


def test_auto_priors_of_a_binary_outcome_are_fixed_on_the_logit_scale():
    arm = pd.Categorical(np.repeat(["control", "a"], 100), categories=["control", "a"])
    for y in (np.tile([0, 1], 100), np.r_[np.zeros(180), np.ones(20)]):  # whatever the rate
        spec = dataclasses.replace(bt.load_spec("outflow"), outcome="y", formula="y ~ arm + (1|arm)", priors={})
        prepared = dataclasses.replace(_prepared("bernoulli", y, arm=arm), formula="y ~ arm + (1|arm)")
        priors = autoprior.resolve(spec, prepared).spec.priors
        assert priors == {"Intercept": parse_prior("Normal(0, 1.5)"), "arm": parse_prior("Normal(0, 0.5)"),
                          "1|arm": parse_prior("HalfStudentT(3, 0.5)")}


def test_auto_and_unset_priors_resolve_alike_and_numbers_stay(small_sim):
    spec = bt.load_spec("outflow")
    unset = dataclasses.replace(spec, priors={"arm": parse_prior("Normal(0, 0.2)")})
    prepared = model_mod.prepare(spec, small_sim.register)
    auto = model_mod.resolve_priors(spec.with_priors({"arm": parse_prior("Normal(0, 0.2)")}), prepared).spec.priors
    assert model_mod.resolve_priors(unset, prepared).spec.priors == auto
    assert auto["arm"] == parse_prior("Normal(0, 0.2)")


@pytest.mark.parametrize("name", ["wellbeing", "outflow", "job_applications", "trust_item"])
def test_the_bundled_specs_pass_their_prior_check(name, small_sim):
    spec = bt.load_spec(name)
    verdict = prior_check(spec, frame_for(spec, small_sim), draws=200, seed=7).verdict
    assert verdict.passed, verdict.format()
    if name == "wellbeing":
        assert verdict.outside <= 5 and verdict.implausible == 3


def test_prior_check_fails_a_deliberately_wide_prior(small_sim):
    wide = with_priors("wellbeing", Intercept="Normal(6, 5)", arm="Normal(0, 5)", sigma="HalfNormal(5)")
    verdict = prior_check(wide, small_sim.survey, draws=200, seed=7).verdict
    assert not verdict.passed
    assert verdict.outside > 5 and verdict.effect_prob > 0.1
    assert verdict.format().startswith("prior predictive check FAIL: ")
    # A binary outcome has no bounds to leave, only implausible effects; the size is settable.
    outflow = with_priors("outflow", arm="Normal(0, 3)")
    assert prior_check(outflow, small_sim.register, draws=200, seed=7).verdict.outside is None
    assert not prior_check(outflow, small_sim.register, draws=200, seed=7).verdict.passed
    assert prior_check(outflow, small_sim.register, draws=200, seed=7, implausible=99).verdict.passed


def test_stored_fits_keep_and_report_their_resolved_priors(wellbeing_fit, wellbeing_fit_path, monkeypatch):
    loaded = bt.load(wellbeing_fit_path)
    assert loaded.used_spec.priors == wellbeing_fit.used_spec.priors
    assert all(p.dist != "auto" for p in loaded.used_spec.priors.values())
    assert loaded.prior_reasons["arm"].startswith("auto: 0.5 x SD(wellbeing)=")
    # A later change of the auto rule does not change what a stored fit says it used.
    gaussian = registry.get("gaussian")
    monkeypatch.setattr(gaussian, "auto_rule", {**gaussian.auto_rule, "coefficient": 5.0})
    again = bt.load(wellbeing_fit_path)
    assert again.used_spec.priors["arm"] == wellbeing_fit.used_spec.priors["arm"]
    graph = bambi_build.pymc_priors(again.model, again.spec).set_index("term")
    assert graph.loc["arm", "params"]["sigma"] == pytest.approx(wellbeing_fit.used_spec.priors["arm"].params["sigma"])


def test_one_consultant_per_arm_says_the_arm_effect_rests_on_the_consultant_prior(small_sim):
    register = small_sim.register.copy()
    town = register["municipality"].iloc[0]
    here = register["municipality"] == town
    register.loc[here, "consultant_id"] = "c-" + register.loc[here, "arm"].astype(str)
    notes = model_mod.prepare(bt.load_spec("outflow"), register).notes
    assert (f"consultants cannot be separated from arms in {town}: one consultant per arm; "
            "the arm effect there rests on the consultant prior") in notes
    assert not any(n.startswith(model_mod.CONFOUNDED) for n in model_mod.prepare(bt.load_spec("outflow"),
                                                                                   small_sim.register).notes)
