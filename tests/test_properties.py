"""Property-based tests (hypothesis) of the loaders and the spec parser.

Whatever bytes a user hands the loaders, and whatever text they write as a prior or a spec, the
result is either a valid value or a one-line BayesTrialError subclass: never another exception.
Valid tables and priors survive a round trip through their file or text form unchanged.
"""

from __future__ import annotations

import math
import string
import tomllib
import unicodedata

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bayes_trial.data.contract import load_register, load_survey, validate_register, validate_survey
from bayes_trial.data.readers import read_table
from bayes_trial.core.errors import DataError, SpecError
from bayes_trial.core.paths import MODELS_DIR
from bayes_trial.modelling.spec import (
    DISTRIBUTIONS, POSITIVE_PARAMS, Prior, load_spec, parse_prior, spec_from_dict, spec_from_json,
)

ARMS = ("control", "ER", "IB", "SG")
OUTCOMES = {"wellbeing": (0, 10)}
# Examples write files to one reused temporary folder per test, hence the fixture health check.
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line(error: Exception) -> bool:
    text = str(error)
    return bool(text) and "\n" not in text and "\r" not in text


# --------------------------------------------------------------------------------------------
# loaders: arbitrary bytes
# --------------------------------------------------------------------------------------------

CSV_TOKENS = [
    ",", ";", "\t", "|", " ", "\n", "\r\n", '"', "'", "sep=;\n", "\ufeff", "\x00", "\u200b",
    "participant_id", "municipality", "arm", "consultant_id", "wave", "wellbeing", "outflow_work",
    "months_to_outflow", "months_followed", "Arm", "control", "IB", "t1", "0", "1", "2", "-1", "5,5",
    "5.5", "1e300", "1e999", "inf", "NA", "nan", "007", "Zoë", "ja", "nee", ".", "",
]
CONTRACT_HEADER = "participant_id,municipality,arm,consultant_id,wave,wellbeing,outflow_work,months_followed\n"

csv_like_text = st.lists(st.sampled_from(CSV_TOKENS), max_size=60).map("".join)
csv_like_bytes = st.one_of(
    st.binary(max_size=300),
    st.tuples(csv_like_text, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"])).map(
        lambda pair: pair[0].encode(pair[1], errors="replace")
    ),
    # a valid header, so that the row-level checks are reached too
    csv_like_text.map(lambda rows: (CONTRACT_HEADER + rows).encode("utf-8")),
)


@EXAMPLES
@given(raw=csv_like_bytes, suffix=st.sampled_from([".csv", ".tsv", ".parquet", ".sav", ".dta"]))
def test_any_bytes_give_a_table_or_a_one_line_data_error(raw, suffix, tmp_path):
    path = tmp_path / f"input{suffix}"
    path.write_bytes(raw)
    try:
        table = read_table(path)
    except DataError as exc:
        assert one_line(exc), exc
        return
    for validate, kwargs in [(validate_survey, {"outcomes": OUTCOMES}), (validate_register, {})]:
        try:
            validate(table, source=path.name, arms=ARMS, **kwargs)
        except DataError as exc:
            assert one_line(exc), exc
            assert str(exc).startswith(f"{path.name}: ")


# --------------------------------------------------------------------------------------------
# loaders: valid tables round-trip through CSV and Parquet
# --------------------------------------------------------------------------------------------

# Ids may hold any printable text: Unicode, spaces, commas, quotes, leading zeros.
ID_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(string.ascii_letters + string.digits + " -_,;\"'."),
                       st.characters(codec="utf-8", categories=["L", "N", "So"])),
    min_size=1, max_size=12,
).filter(lambda text: text.strip() != "")


def same_id(text: str) -> str:
    """Ids that the loaders treat as one: surrounding space is dropped, Unicode brought to NFC."""
    return unicodedata.normalize("NFC", text.strip())


MUNICIPALITIES = ["Oss", "Nijmegen", "Súdwest-Fryslân", "'s-Hertogenbosch", "Zoë, Noord"]
WELLBEING = st.one_of(st.none(), st.floats(min_value=0, max_value=10))


@st.composite
def survey_tables(draw) -> pd.DataFrame:
    ids = draw(st.lists(ID_TEXT, min_size=1, max_size=6, unique_by=same_id))
    wave_text = draw(st.booleans())  # waves written as 0, 1, 2 or as t0, t1, t2
    rows = []
    for i, pid in enumerate(ids):
        arm = "control" if i == 0 else draw(st.sampled_from(ARMS))
        town = draw(st.sampled_from(MUNICIPALITIES))
        consultant = draw(st.one_of(st.none(), ID_TEXT))
        for wave in draw(st.sets(st.integers(0, 2), min_size=1)):
            rows.append((pid, town, arm, consultant, f"t{wave}" if wave_text else wave, draw(WELLBEING)))
    return pd.DataFrame(rows, columns=["participant_id", "municipality", "arm", "consultant_id", "wave", "wellbeing"])


@EXAMPLES
@given(frame=survey_tables(), fmt=st.sampled_from(["csv", "csv;", "tsv", "parquet"]))
def test_valid_survey_round_trips_through_files(frame, fmt, tmp_path):
    expected = validate_survey(frame, outcomes=OUTCOMES, arms=ARMS)
    if fmt == "parquet":
        path = tmp_path / "survey.parquet"
        frame.to_parquet(path, index=False)
    else:
        path = tmp_path / ("survey.tsv" if fmt == "tsv" else "survey.csv")
        frame.to_csv(path, index=False, sep={"csv": ",", "csv;": ";", "tsv": "\t"}[fmt])
    loaded = load_survey(path, outcomes=OUTCOMES, arms=ARMS)
    pd.testing.assert_frame_equal(loaded, expected)


@st.composite
def register_tables(draw) -> pd.DataFrame:
    ids = draw(st.lists(ID_TEXT, min_size=1, max_size=8, unique_by=same_id))
    rows = []
    for i, pid in enumerate(ids):
        followed = draw(st.floats(min_value=0.5, max_value=60))
        outflow = draw(st.integers(0, 1))
        month = draw(st.floats(min_value=0, max_value=followed)) if outflow else None
        arm = "control" if i == 0 else draw(st.sampled_from(ARMS))
        rows.append((pid, draw(st.sampled_from(MUNICIPALITIES)), arm, draw(st.one_of(st.none(), ID_TEXT)),
                     outflow, month, followed))
    return pd.DataFrame(rows, columns=["participant_id", "municipality", "arm", "consultant_id", "outflow_work",
                                       "months_to_outflow", "months_followed"])


@EXAMPLES
@given(frame=register_tables(), fmt=st.sampled_from(["csv", "parquet"]))
def test_valid_register_round_trips_through_files(frame, fmt, tmp_path):
    expected = validate_register(frame, arms=ARMS)
    path = tmp_path / f"register.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    pd.testing.assert_frame_equal(load_register(path, arms=ARMS), expected)


# --------------------------------------------------------------------------------------------
# spec parser: priors
# --------------------------------------------------------------------------------------------

PRIOR_TOKENS = [
    *DISTRIBUTIONS, "Normall", "normal", "(", ")", ",", " ", "=", "*", "**", "[", "]", "{", "}", ":", "'", '"',
    "mu", "sigma", "nu", "lam", "alpha", "beta", "lower", "upper", "0", "1", "-1", "0.5", "1e400", "-0",
    "1" + "0" * 400, "inf", "nan", "True", "None", "1j", "x", "\n", "\x00",
]
prior_text = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(PRIOR_TOKENS), max_size=14).map("".join))


def assert_valid(prior: Prior) -> None:
    assert prior.dist in DISTRIBUTIONS
    assert set(prior.params) == set(DISTRIBUTIONS[prior.dist])
    for name, value in prior.params.items():
        assert type(value) is float and math.isfinite(value)
        if name in POSITIVE_PARAMS and (prior.dist, name) != ("Cauchy", "alpha"):
            assert value > 0


@settings(max_examples=300, deadline=None)
@given(text=prior_text)
def test_any_prior_text_gives_a_valid_prior_or_a_one_line_spec_error(text):
    try:
        prior = parse_prior(text)
    except SpecError as exc:
        assert one_line(exc), exc
        return
    assert_valid(prior)


finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0, exclude_min=True, allow_infinity=False)


@st.composite
def priors(draw) -> Prior:
    dist = draw(st.sampled_from(sorted(DISTRIBUTIONS)))
    params = {
        name: draw(positive if name in POSITIVE_PARAMS and (dist, name) != ("Cauchy", "alpha") else finite)
        for name in DISTRIBUTIONS[dist]
    }
    if dist == "Uniform":
        assume(params["lower"] != params["upper"])
        params["lower"], params["upper"] = sorted(params.values())
    return Prior(dist, params)


@settings(max_examples=200, deadline=None)
@given(prior=priors())
def test_prior_text_round_trips(prior):
    assert parse_prior(str(prior)) == prior
    assert parse_prior({"dist": prior.dist, **prior.params}) == prior


# --------------------------------------------------------------------------------------------
# spec parser: whole specs
# --------------------------------------------------------------------------------------------

BASE_SPEC = tomllib.loads((MODELS_DIR / "wellbeing.toml").read_text(encoding="utf-8"))
SPEC_KEYS = [*BASE_SPEC, "sampler", "aggregate", "unit", "formual", "priors"]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
bounds = st.lists(st.one_of(st.none(), st.integers(), st.floats()), min_size=2, max_size=2)
sampler_tables = st.dictionaries(
    st.sampled_from(["sampler", "draws", "tune", "chains", "target_accept", "seed", "thin"]), json_values, max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(SPEC_KEYS), st.one_of(json_values, sampler_tables, bounds), max_size=3),
       removed=st.sets(st.sampled_from(list(BASE_SPEC)), max_size=2))
def test_any_spec_gives_a_model_spec_or_a_one_line_spec_error(changes, removed):
    raw = {key: value for key, value in BASE_SPEC.items() if key not in removed} | changes
    try:
        spec = spec_from_dict(raw, where="spec.toml")
    except SpecError as exc:
        assert one_line(exc), exc
        return
    assert spec_from_json(spec.to_json()) == spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8"))))
def test_any_spec_file_gives_a_model_spec_or_a_one_line_spec_error(raw, tmp_path):
    path = tmp_path / "spec.toml"
    path.write_bytes(raw)
    try:
        load_spec(path)
    except SpecError as exc:
        assert one_line(exc), exc


@settings(max_examples=100, deadline=None)
@given(prior=priors(), term=st.sampled_from(["Intercept", "arm", "wave", "arm:wave"]))
def test_stored_spec_keeps_priors_exactly(prior, term):
    spec = load_spec("wellbeing").with_priors({term: prior})
    assert spec_from_json(spec.to_json()).priors[term] == prior


def test_cauchy_location_may_be_zero_or_negative():
    assert parse_prior("Cauchy(-1, 2)") == Prior("Cauchy", {"alpha": -1.0, "beta": 2.0})


@pytest.mark.parametrize(("text", "fragment"), [
    ("Normal(0, 1e400)", "must be a finite number"),
    ("Normal(0, 1" + "0" * 400 + ")", "must be a finite number"),
    ("Normal(0, 1, sigma=2)", "sigma is given twice"),
    ("Normal(**{'mu': 0, 'sigma': 1})", "write them as NAME=VALUE"),
    ("Normal(0, {[1]: 2})", "cannot read the parameters"),
])
def test_prior_texts_that_once_escaped_as_other_exceptions(text, fragment):
    with pytest.raises(SpecError, match=fragment.replace("(", r"\(")):
        parse_prior(text)
