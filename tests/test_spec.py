"""Model specs and priors: parsing, validation, round trips."""

import pytest

from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import MODELS_DIR
from bayes_trial.modelling.spec import (
    Prior, load_priors_file, load_spec, parse_prior, parse_prior_assignment, spec_from_json,
)


@pytest.mark.parametrize("name", sorted(p.stem for p in MODELS_DIR.glob("*.toml")))
def test_bundled_specs_load_and_round_trip_through_json(name):
    spec = load_spec(name)
    assert spec.name == name
    assert spec_from_json(spec.to_json()) == spec


def test_bundled_specs_cover_the_five_families():
    families = {load_spec(p).family for p in MODELS_DIR.glob("*.toml")}
    assert families == {"gaussian", "bernoulli", "cumulative", "negativebinomial", "hazard"}


@pytest.mark.parametrize("text, expected", [
    ("Normal(0, 0.5)", Prior("Normal", {"mu": 0.0, "sigma": 0.5})),
    ("Normal(mu=1, sigma=2)", Prior("Normal", {"mu": 1.0, "sigma": 2.0})),
    ("HalfNormal(0.3)", Prior("HalfNormal", {"sigma": 0.3})),
    ("StudentT(3, 0, 2.5)", Prior("StudentT", {"nu": 3.0, "mu": 0.0, "sigma": 2.5})),
    ({"dist": "Exponential", "lam": 2}, Prior("Exponential", {"lam": 2.0})),
])
def test_parse_prior_accepts_positional_keyword_and_table_forms(text, expected):
    assert parse_prior(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("Normall(0, 1)", "unknown distribution 'Normall'; valid: Normal"),
    ("HalfNormal(-0.3)", "sigma must be > 0"),
    ("Normal(0)", "missing sigma"),
    ("Normal(0, 1, 2)", "Normal takes (mu, sigma)"),
    ("Normal(0, scale=1)", "unknown scale"),
    ("Normal(0, 'a')", "must be a number"),
    ("Uniform(2, 1)", "lower < upper"),
    ("Normal 0 1", "cannot read prior"),
    ("Normal(0, 1", "cannot read prior"),
])
def test_parse_prior_rejects_bad_priors_with_one_line(text, fragment):
    with pytest.raises(SpecError) as err:
        parse_prior(text)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_prior_assignment_from_the_command_line():
    term, prior = parse_prior_assignment("1|municipality:consultant_id=HalfNormal(0.3)")
    assert term == "1|municipality:consultant_id"
    assert prior == Prior("HalfNormal", {"sigma": 0.3})
    with pytest.raises(SpecError, match="TERM=DISTRIBUTION"):
        parse_prior_assignment("HalfNormal(0.3)")


def test_with_priors_overrides_only_the_named_terms():
    spec = load_spec("outflow")
    changed = spec.with_priors({"arm": parse_prior("Normal(0, 2)")})
    assert changed.priors["arm"] == Prior("Normal", {"mu": 0.0, "sigma": 2.0})
    assert changed.priors["Intercept"] == spec.priors["Intercept"]


def _write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


GOOD = '''
name = "m"
outcome = "y"
table = "survey"
formula = "y ~ arm"
family = "gaussian"
'''


@pytest.mark.parametrize("extra, fragment", [
    ('family = "poisson"\n', "unknown family 'poisson'"),
    ('table = "panel"\n', "table must be one of survey, register"),
    ('formula = "y arm"\n', "has no '~'"),
    ('formula = "z ~ arm"\n', "differs from outcome 'y'"),
    ('colour = "red"\n', "unknown key(s) colour"),
    ('[priors]\narm = "Normal(0, -1)"\n', "sigma must be > 0"),
    ('[sampler]\ndraws = 0\n', "draws must be a positive integer"),
    ('[sampler]\nsampler = "stan"\n', "sampler must be one of nutpie, pymc"),
    ('bounds = [10, 0]\n', "lower < upper"),
])
def test_bad_specs_name_the_file_and_the_problem(tmp_path, extra, fragment):
    lines = {line.split("=")[0].strip(): line for line in GOOD.strip().splitlines()}
    key = extra.split("=")[0].strip()
    body = "\n".join(v for k, v in lines.items() if k != key) + "\n" + extra
    path = _write(tmp_path, body)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_toml_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(_write(tmp_path, 'name = "m\n'))
    with pytest.raises(SpecError, match="no such model spec file .*bundled specs: .*outflow"):
        load_spec(tmp_path / "nope.toml")


def test_priors_file(tmp_path):
    path = tmp_path / "priors.toml"
    path.write_text('[priors]\narm = "Normal(0, 0.25)"\n"1|municipality" = "Exponential(2)"\n')
    priors = load_priors_file(path)
    assert priors["arm"].params == {"mu": 0.0, "sigma": 0.25}
    assert priors["1|municipality"].dist == "Exponential"
