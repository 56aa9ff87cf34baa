"""Tests for bayes_trial.data: reading files and the data contract (data/README.md)."""

from __future__ import annotations

import hashlib
import math
import re
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_trial.data.contract import (
    MAX_ABS_VALUE,
    REGISTER_COLUMNS,
    SOURCE_ATTR,
    SURVEY_COLUMNS,
    data_hash,
    load_register,
    load_survey,
    validate_register,
    validate_survey,
)
from bayes_trial.data.readers import read_table
from bayes_trial.core.errors import DataError, SpecError

DATA = Path(__file__).resolve().parent / "data"
GOOD = DATA / "good"
BAD = DATA / "bad"
ARMS = ("control", "ER", "IB", "SG")
OUTCOMES = {"wellbeing": (0, 10), "applications": (0, None)}


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message and message.strip() == message


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert one_line(message), message
    return message


def survey_df(**overrides) -> pd.DataFrame:
    base = {
        "participant_id": ["P1", "P1", "P2", "P2", "P3"],
        "municipality": ["Oss", "Oss", "Oss", "Oss", "Nijmegen"],
        "arm": ["control", "control", "IB", "IB", "ER"],
        "consultant_id": ["c1", "c1", "c2", "c2", None],
        "wave": [0, 1, 0, 1, 0],
        "wellbeing": [5.5, 6.0, 7.25, None, 4.0],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def register_df(**overrides) -> pd.DataFrame:
    base = {
        "participant_id": ["P1", "P2", "P3", "P4"],
        "municipality": ["Oss", "Oss", "Nijmegen", "Nijmegen"],
        "arm": ["control", "IB", "ER", "control"],
        "consultant_id": ["c1", "c2", None, "k1"],
        "outflow_work": [0, 1, 1, 0],
        "months_to_outflow": [None, 5.0, 12.5, None],
        "months_followed": [24, 24, 24, 18],
    }
    base.update(overrides)
    return pd.DataFrame(base)


# --------------------------------------------------------------------------------------------
# malformed files: one per case, listed in tests/data/bad/README.md
# --------------------------------------------------------------------------------------------


def bad_cases() -> list[tuple[str, str, str]]:
    cases = []
    for line in (BAD / "README.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, line
        name, what, fragment = cells
        cases.append((name.strip("`"), what, fragment[1:-1]))
    return cases


BAD_CASES = bad_cases()


def test_bad_folder_has_at_least_twenty_cases_and_all_are_listed():
    assert len(BAD_CASES) >= 20
    listed = {name for name, _, _ in BAD_CASES}
    on_disk = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert on_disk == listed


@pytest.mark.parametrize(("name", "what", "fragment"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_file(name, what, fragment):
    path = BAD / name
    if name.startswith("register"):
        message = error_of(load_register, path, arms=ARMS)
    else:
        message = error_of(load_survey, path, outcomes={"wellbeing": (0, 10)}, arms=ARMS)
    assert fragment in message, f"{what}: {message}"
    assert message.startswith(name + ":") or message.startswith(str(path) + ":"), message


# --------------------------------------------------------------------------------------------
# valid files
# --------------------------------------------------------------------------------------------

GOOD_SURVEYS = sorted(p.name for p in GOOD.iterdir() if p.name.startswith("survey"))
GOOD_REGISTERS = sorted(p.name for p in GOOD.iterdir() if p.name.startswith("register"))


def test_good_folder_covers_every_format():
    suffixes = {Path(n).suffix for n in GOOD_SURVEYS + GOOD_REGISTERS}
    assert suffixes == {".csv", ".tsv", ".parquet", ".sav", ".dta"}
    for name in GOOD_SURVEYS + GOOD_REGISTERS:
        assert (GOOD / name).stat().st_size < 16_000


@pytest.mark.parametrize("name", GOOD_SURVEYS)
def test_good_survey_files_give_the_same_data(name):
    df = load_survey(GOOD / name, outcomes=OUTCOMES, arms=ARMS)
    reference = load_survey(GOOD / "survey.csv", outcomes=OUTCOMES, arms=ARMS)
    assert data_hash(df) == data_hash(reference)
    assert list(df.columns[:5]) == list(SURVEY_COLUMNS)
    for col in ("participant_id", "municipality", "arm", "consultant_id"):
        assert df[col].dtype == object
        assert all(v is None or type(v) is str for v in df[col])
    assert df["wave"].dtype == np.int64
    assert sorted(df["wave"].unique()) == [0, 1, 2]
    assert df["wellbeing"].dtype == np.float64
    assert df["applications"].dtype == np.float64
    assert df["wellbeing"].isna().any()  # non-response kept as NaN
    assert df["consultant_id"].isna().any()
    assert all(v is None for v in df.loc[df["arm"] == "ER", "consultant_id"])
    assert "Nij-É06" in set(df["participant_id"])  # Unicode ids kept
    assert set(df["arm"]) == set(ARMS)
    assert isinstance(df.index, pd.RangeIndex)
    assert df.attrs == {SOURCE_ATTR: name}  # only the file name, for later errors


@pytest.mark.parametrize("name", GOOD_REGISTERS)
def test_good_register_files_give_the_same_data(name):
    df = load_register(GOOD / name, arms=ARMS)
    reference = load_register(GOOD / "register.csv", arms=ARMS)
    assert data_hash(df) == data_hash(reference)
    assert list(df.columns[:5]) == list(REGISTER_COLUMNS)
    assert df["outflow_work"].dtype == np.int64
    assert set(df["outflow_work"]) <= {0, 1}
    assert df["months_to_outflow"].dtype == np.float64
    assert df["months_followed"].dtype == np.float64
    assert (df["months_to_outflow"].isna() == (df["outflow_work"] == 0)).all()


def test_sav_value_labels_become_categories_and_codes_are_kept():
    raw = read_table(GOOD / "survey.sav")
    assert isinstance(raw["arm"].dtype, pd.CategoricalDtype)
    assert set(raw["arm"].astype(str)) == set(ARMS)
    assert set(raw["wave"].astype(str)) == {"t0", "t1", "t2"}
    labels = raw.attrs["bayes_trial_value_labels"]
    assert labels["wave"] == {0: "t0", 1: "t1", 2: "t2"}
    # without the recorded labels the validator still understands "t1" and arm names
    raw.attrs = {}
    df = validate_survey(raw, outcomes=OUTCOMES)
    assert df["wave"].dtype == np.int64


def test_dta_labelled_outflow_uses_codes():
    raw = read_table(GOOD / "register.dta")
    assert set(raw["outflow_work"].astype(str)) <= {"ja", "nee"}
    df = validate_register(raw)
    assert set(df["outflow_work"]) <= {0, 1}


def test_partly_labelled_scale_stays_numeric(tmp_path):
    df = survey_df(wellbeing=[0.0, 3.0, 10.0, 7.0, 5.0])
    df["consultant_id"] = df["consultant_id"].fillna("")
    path = tmp_path / "survey.sav"
    pyreadstat.write_sav(
        df, path, variable_value_labels={"wellbeing": {0: "very unhappy", 10: "very happy"}}
    )
    raw = read_table(path)
    assert raw["wellbeing"].dtype == np.float64
    out = validate_survey(raw, outcomes={"wellbeing": (0, 10)})
    assert list(out["wellbeing"]) == [0.0, 3.0, 10.0, 7.0, 5.0]


def test_fully_labelled_likert_outcome_uses_codes(tmp_path):
    df = survey_df(wellbeing=[1.0, 2.0, 5.0, 4.0, 3.0])
    df["consultant_id"] = df["consultant_id"].fillna("")
    path = tmp_path / "survey.dta"
    likert = {1: "helemaal oneens", 2: "oneens", 3: "neutraal", 4: "eens", 5: "helemaal eens"}
    pyreadstat.write_dta(df, path, variable_value_labels={"wellbeing": likert})
    out = load_survey(path, outcomes={"wellbeing": (1, 5)})
    assert list(out["wellbeing"]) == [1.0, 2.0, 5.0, 4.0, 3.0]


# --------------------------------------------------------------------------------------------
# read_table
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    message = error_of(read_table, tmp_path / "nope.csv")
    assert "nope.csv: file not found" in message


def test_directory(tmp_path):
    assert "is a directory" in error_of(read_table, tmp_path)


@pytest.mark.parametrize("suffix", [".xlsx", ".json", ".txt", ""])
def test_unknown_suffix(tmp_path, suffix):
    path = tmp_path / f"survey{suffix}"
    path.write_text("a,b\n1,2\n")
    message = error_of(read_table, path)
    assert "unsupported file type" in message and ".csv, .tsv, .parquet, .sav, .dta" in message


def test_suffix_is_case_insensitive(tmp_path):
    path = tmp_path / "SURVEY.CSV"
    path.write_text((GOOD / "survey.csv").read_text(encoding="utf-8"), encoding="utf-8")
    assert len(read_table(path)) == 30


def test_dutch_csv_semicolon_decimal_comma(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "participant_id;municipality;arm;consultant_id;wave;wellbeing;hours\n"
        "007;0828;control;c1;0;5,8;-0,5\n"
        "008;0828;IB;;t1;6;,25\n",
        encoding="utf-8",
    )
    raw = read_table(path)
    assert list(raw["participant_id"]) == ["007", "008"]  # leading zeros kept in ids
    assert list(raw["municipality"]) == ["0828", "0828"]
    assert list(raw["wellbeing"]) == [5.8, 6.0]
    assert list(raw["hours"]) == [-0.5, 0.25]
    df = validate_survey(raw, outcomes={"wellbeing": (0, 10)})
    assert list(df["wave"]) == [0, 1]
    assert df.loc[1, "consultant_id"] is None


def test_tab_detected_in_csv_and_excel_sep_line_and_cp1252(tmp_path):
    path = tmp_path / "s.csv"
    text = "participant_id\tmunicipality\tarm\tconsultant_id\twave\nPé1\tOss\tcontrol\tc1\t0\n"
    path.write_bytes(text.encode("cp1252"))
    assert list(read_table(path)["participant_id"]) == ["Pé1"]
    path.write_bytes(("sep=,\r\n" + text.replace("\t", ",").replace("\n", "\r\n")).encode("utf-8"))
    df = read_table(path)
    assert list(df.columns) == list(SURVEY_COLUMNS) and list(df["participant_id"]) == ["Pé1"]


def test_utf16_excel_unicode_text(tmp_path):
    path = tmp_path / "s.tsv"
    text = "participant_id\tmunicipality\tarm\tconsultant_id\twave\nŻ1\tOss\tcontrol\t\t2\n"
    path.write_bytes(text.encode("utf-16"))
    df = load_survey(path)
    assert list(df["participant_id"]) == ["Ż1"] and list(df["wave"]) == [2]


def test_numeric_inference_for_other_columns(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "participant_id,a,b,c,d,e\n"
        "1,1,1.5,x,NA,010\n"
        "2,2,,3,N/A,020\n"
    )
    df = read_table(path)
    assert df["participant_id"].dtype == object and list(df["participant_id"]) == ["1", "2"]
    assert df["a"].dtype == np.int64
    assert df["b"].dtype == np.float64 and math.isnan(df["b"][1])
    assert df["c"].dtype == object and list(df["c"]) == ["x", "3"]
    assert df["d"].dtype == object and list(df["d"]) == [None, None]
    assert df["e"].dtype == object and list(df["e"]) == ["010", "020"]  # leading zeros: text


def test_quoted_fields_and_trailing_delimiters(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        'participant_id,municipality,arm,consultant_id,wave,note,\n'
        '"P,1",Oss,control,c1,0,"said ""hi""\nand left",\n'
        "P2,Oss,IB,c2,0,,,\n"
    )
    df = load_survey(path)
    assert list(df["participant_id"]) == ["P,1", "P2"]
    assert df.loc[0, "note"] == 'said "hi"\nand left'
    assert list(df.columns) == [*SURVEY_COLUMNS, "note"]


def test_row_numbers_count_blank_lines_like_a_spreadsheet(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "participant_id,municipality,arm,consultant_id,wave,wellbeing\n"
        "P1,Oss,control,c1,0,5\n"
        "\n"
        ",,,,,\n"
        "P2,Oss,IB,c2,0,12\n"
    )
    message = error_of(load_survey, path, outcomes={"wellbeing": (0, 10)})
    assert "row 5, column 'wellbeing': 12" in message


def test_parquet_round_trip_and_string_dtype(tmp_path):
    df = survey_df().astype({"participant_id": "str", "municipality": "category", "arm": "str"})
    path = tmp_path / "s.parquet"
    df.to_parquet(path)
    out = load_survey(path, outcomes={"wellbeing": (0, 10)})
    assert out["participant_id"].dtype == object and out["municipality"].dtype == object
    assert data_hash(out) == data_hash(validate_survey(survey_df(), outcomes={"wellbeing": (0, 10)}))


# --------------------------------------------------------------------------------------------
# validate_survey / validate_register (in memory)
# --------------------------------------------------------------------------------------------


def test_valid_survey_is_normalised_and_input_untouched():
    df = survey_df(wave=[0.0, 1.0, 0.0, 1.0, 0.0], age=[30, 30, 40, 40, 50])
    before = df.copy()
    out = validate_survey(df, outcomes={"wellbeing": (0, 10)})
    pd.testing.assert_frame_equal(df, before)
    assert out["wave"].dtype == np.int64
    assert out["age"].dtype == before["age"].dtype  # covariates kept as they are
    assert out.loc[4, "consultant_id"] is None


def test_header_case_and_spaces_are_normalised():
    df = survey_df().rename(
        columns={"participant_id": " Participant ID ", "arm": "ARM", "wellbeing": "Wellbeing"}
    )
    out = validate_survey(df, outcomes={"wellbeing": (0, 10)})
    assert list(out.columns) == [*SURVEY_COLUMNS, "wellbeing"]


def test_misspelled_and_synonym_suggestions():
    message = error_of(validate_survey, survey_df().rename(columns={"municipality": "gemeente"}))
    assert "column 'municipality' is missing (found 'gemeente'?)" in message
    message = error_of(
        validate_survey, survey_df(), outcomes={"welbeing_score": (0, 10)}
    )
    assert "column 'welbeing_score' is missing (found 'wellbeing'?)" in message


def test_not_a_dataframe_and_no_columns():
    assert "expected a table" in error_of(validate_survey, [1, 2, 3])
    assert "no columns" in error_of(validate_survey, pd.DataFrame())


def test_empty_frame_with_columns():
    df = survey_df().iloc[0:0]
    assert "survey: no data rows" in error_of(validate_survey, df)


def test_control_arm_configurable():
    df = survey_df(arm=["C", "C", "IB", "IB", "ER"])
    message = error_of(validate_survey, df)
    assert "control arm 'control' not found in column arm; arms present: C, ER, IB; set control_arm" in message
    assert len(validate_survey(df, control_arm="C")) == 5
    message = error_of(validate_survey, df, control_arm="C", arms=["IB"])
    assert "unknown arm 'ER'" in message and "allowed arms: C, IB" in message


def test_control_case_hint_without_arms():
    message = error_of(validate_survey, survey_df(arm=["Control", "Control", "IB", "IB", "ER"]))
    assert "(found 'Control': arm names are case-sensitive)" in message


def test_outcome_ranges():
    df = survey_df(wellbeing=[-1.0, 2, 3, 4, 5])
    assert "row 2, column 'wellbeing': -1 is outside the declared range [0, inf]" in error_of(
        validate_survey, df, outcomes={"wellbeing": (0, None)}
    )
    assert len(validate_survey(df, outcomes={"wellbeing": (None, 5)})) == 5
    assert len(validate_survey(df, outcomes=["wellbeing"])) == 5
    with pytest.raises(SpecError):
        validate_survey(df, outcomes={"wellbeing": (10, 0)})


def test_outcome_strings_with_decimal_comma_and_missing_tokens():
    df = survey_df(wellbeing=["5,5", " 6 ", "NA", "", None])
    out = validate_survey(df, outcomes={"wellbeing": (0, 10)})
    assert out["wellbeing"].tolist()[:2] == [5.5, 6.0] and out["wellbeing"][2:].isna().all()


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e300, MAX_ABS_VALUE * 10])
def test_huge_outcomes(value):
    message = error_of(
        validate_survey, survey_df(wellbeing=[1.0, 2, value, 4, 5]), outcomes={"wellbeing": (None, None)}
    )
    assert "row 4, column 'wellbeing'" in message
    assert ("not a finite number" in message) or ("implausibly large" in message)


def test_wave_spellings():
    out = validate_survey(survey_df(wave=["t0", "T1", "0", 1.0, np.int64(2)]))
    assert out["wave"].tolist() == [0, 1, 0, 1, 2]
    assert "column 'wave' is empty" in error_of(validate_survey, survey_df(wave=[0, 1, None, 1, 0]))
    assert "True is not a wave number" in error_of(validate_survey, survey_df(wave=[0, 1, True, 1, 0]))


def test_consultant_may_be_empty_but_ids_may_not():
    out = validate_survey(survey_df(consultant_id=[None, np.nan, "", "  ", pd.NA]))
    assert all(v is None for v in out["consultant_id"])
    message = error_of(validate_survey, survey_df(participant_id=["P1", "P1", None, "P2", np.nan]))
    assert "row 4, column 'participant_id' is empty (2 rows in all)" in message


def test_numeric_ids_become_text():
    df = survey_df(participant_id=[1001.0, 1001.0, 1002.0, 1002.0, 1003.0], consultant_id=[7, 7, 8, 8, 9])
    out = validate_survey(df)
    assert out["participant_id"].tolist()[:3] == ["1001", "1001", "1002"]
    assert out["consultant_id"].tolist()[0] == "7"


def test_unicode_ids_are_kept():
    ids = ["Ærø-1", "Ærø-1", "Łódź 2", "Łódź 2", "名前"]
    out = validate_survey(survey_df(participant_id=ids))
    assert out["participant_id"].tolist() == ids


def test_values_with_newlines_are_shown_on_one_line():
    message = error_of(
        validate_survey, survey_df(arm=["control", "control", "I\nB", "I\nB", "ER"]), arms=["ER", "IB"]
    )
    assert "'I\\nB'" in message


def test_register_valid_and_normalised():
    df = register_df(outflow_work=["nee", "ja", True, 0.0])
    out = validate_register(df)
    assert out["outflow_work"].tolist() == [0, 1, 1, 0] and out["outflow_work"].dtype == np.int64
    assert out["months_followed"].dtype == np.float64
    assert out["months_to_outflow"].isna().tolist() == [True, False, False, True]


def test_register_optional_columns():
    out = validate_register(register_df().drop(columns=["months_to_outflow", "months_followed"]))
    assert "months_to_outflow" not in out.columns
    out = validate_register(register_df().drop(columns=["months_followed"]))
    assert out["months_to_outflow"].tolist()[1:3] == [5.0, 12.5]
    message = error_of(validate_register, register_df(months_followed=[24, None, 24, 24]))
    assert "row 3, column 'months_followed' is empty" in message
    message = error_of(validate_register, register_df(months_followed=[24, -1, 24, 24]))
    assert "row 3, column 'months_followed': -1 is not positive" in message


def test_register_two_arms_reported_before_duplicate():
    df = register_df(participant_id=["P1", "P2", "P3", "P1"])
    message = error_of(validate_register, df)
    assert "participant 'P1' is in two arms: 'control' (row 2) and 'control'" not in message
    assert "participant 'P1' is in two municipalities: 'Oss' (row 2) and 'Nijmegen' (row 5)" in message


# --------------------------------------------------------------------------------------------
# data_hash
# --------------------------------------------------------------------------------------------


def test_data_hash_is_order_and_dtype_independent():
    df = validate_survey(survey_df(), outcomes={"wellbeing": (0, 10)})
    h = data_hash(df)
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert data_hash(df[df.columns[::-1]]) == h
    assert data_hash(df.iloc[::-1]) == h
    assert data_hash(df.set_index(pd.Index(list("abcde")))) == h
    as_string = df.astype({"participant_id": "string", "municipality": "str", "arm": "category"})
    assert data_hash(as_string) == h
    assert data_hash(df.astype({"wave": "float64"})) == h
    assert data_hash(df.astype({"wave": "Int64"})) == h


def test_data_hash_sees_changes():
    df = validate_survey(survey_df(), outcomes={"wellbeing": (0, 10)})
    h = data_hash(df)
    changed = df.copy()
    changed.loc[0, "wellbeing"] = 5.5000001
    assert data_hash(changed) != h
    assert data_hash(df.rename(columns={"wellbeing": "wb"})) != h
    assert data_hash(df.iloc[:4]) != h
    assert data_hash(pd.concat([df, df.iloc[:1]])) != h


def test_data_hash_known_value_is_stable():
    df = pd.DataFrame({"b": [2, 1], "a": ["x", None]})
    assert data_hash(df) == data_hash(pd.DataFrame({"a": [None, "x"], "b": [1.0, 2.0]}))
    # the documented canonical form: tag, sorted column names, row count, sorted rows as JSON
    canonical = 'bayes-trial data v1\n["a", "b"]\n2\n["x", "2"]\n[null, "1"]\n'
    assert data_hash(df) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert data_hash(df) == "36df875d2d6759af6ec92c3ffec757ff48f9c4d4358d7233f890c650f03a99d0"


# --------------------------------------------------------------------------------------------
# property-based tests
# --------------------------------------------------------------------------------------------

ID_CHARS = st.characters(
    categories=("L", "N", "P", "S"), exclude_characters="\"'\\", max_codepoint=0x2FFF
)
ids = st.text(ID_CHARS, min_size=1, max_size=8).filter(lambda s: s.strip() == s and s)
scores = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False),
    st.integers(0, 10).map(float),
)


@st.composite
def survey_frames(draw):
    n_people = draw(st.integers(1, 8))
    people = draw(st.lists(ids, min_size=n_people, max_size=n_people, unique=True))
    towns = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    arm_names = ["control", *draw(st.lists(st.sampled_from(["ER", "IB", "SG", "Vrij", "Ω"]), max_size=3))]
    rows = []
    for k, pid in enumerate(people):
        town = draw(st.sampled_from(towns))
        arm = "control" if k == 0 else draw(st.sampled_from(arm_names))
        cons = draw(st.one_of(st.none(), ids))
        waves = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True))
        for w in waves:
            rows.append((pid, town, arm, cons, w, draw(scores), draw(st.integers(-5, 99))))
    return pd.DataFrame(
        rows,
        columns=[*SURVEY_COLUMNS, "wellbeing", "age"],
    ).astype({c: object for c in ("participant_id", "municipality", "arm", "consultant_id")})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=survey_frames(), fmt=st.sampled_from(["comma", "semicolon", "tab", "parquet"]))
def test_valid_frames_survive_round_trip(tmp_path, df, fmt):
    v1 = validate_survey(df, outcomes={"wellbeing": (0, 10)})
    assert data_hash(validate_survey(v1, outcomes={"wellbeing": (0, 10)})) == data_hash(v1)
    if fmt == "parquet":
        path = tmp_path / "rt.parquet"
        v1.to_parquet(path)
    else:
        path = tmp_path / "rt.csv"
        sep = {"comma": ",", "semicolon": ";", "tab": "\t"}[fmt]
        v1.to_csv(path, index=False, sep=sep, decimal="," if sep == ";" else ".")
    v2 = load_survey(path, outcomes={"wellbeing": (0, 10)})
    assert data_hash(v2) == data_hash(v1)
    assert v2["wave"].dtype == np.int64 and v2["wellbeing"].dtype == np.float64


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.one_of(
        st.binary(max_size=600),
        st.text(alphabet=string.printable + "é;\"\x00", max_size=300).map(lambda s: s.encode("utf-8")),
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".parquet", ".sav", ".dta"]),
)
def test_arbitrary_bytes_raise_only_data_error(tmp_path, payload, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(payload)
    try:
        df = read_table(path)
    except DataError as exc:
        assert one_line(str(exc))
        return
    assert isinstance(df, pd.DataFrame)
    try:
        validate_survey(df)
    except DataError as exc:
        assert one_line(str(exc))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=survey_frames(), data=st.data())
def test_prefix_of_valid_file_never_crashes(tmp_path, df, data):
    path = tmp_path / "cut.csv"
    raw = df.to_csv(index=False).encode("utf-8")
    cut = data.draw(st.integers(0, len(raw)))
    path.write_bytes(raw[:cut])
    try:
        validate_survey(read_table(path))
    except DataError as exc:
        assert one_line(str(exc))


# --------------------------------------------------------------------------------------------
# column mapping, Dutch names, control arm, missing outcomes (issue 14, items 9, 10, 12)
# --------------------------------------------------------------------------------------------

from bayes_trial.data.columns import check_column_mapping, parse_column_mapping  # noqa: E402
from bayes_trial.data.contract import missing_outcome_counts  # noqa: E402

DUTCH = {"participant_id": "klantnummer", "municipality": "gemeente", "arm": "groep",
         "consultant_id": "consulent", "wave": "meting", "wellbeing": "welzijn"}
DUTCH_MAPPING = "klantnummer=participant_id,gemeente=municipality,groep=arm,consulent=consultant_id,meting=wave,welzijn=wellbeing"


def dutch_sav(path: Path) -> Path:
    """An SPSS export as a municipality makes it: Dutch names, labelled arm codes, text waves,
    ids with leading zeros, non-response and persons without a consultant."""
    rows = []
    for i in range(1, 7):
        arm = 1 + (i - 1) % 3
        for wave in ("t0", "t1", "t2"):
            answered = wave == "t0" or i % 2 == 0
            rows.append((f"{i:05d}", "Oss" if i < 4 else "Ede", arm, "" if i == 5 else f"k{arm}", wave,
                         6.0 + arm / 2 if answered else np.nan, float(i % 2)))
    df = pd.DataFrame(rows, columns=["klantnummer", "gemeente", "groep", "consulent", "meting", "welzijn", "uitstroom_werk"])
    pyreadstat.write_sav(df, str(path), variable_value_labels={"groep": {1: "controle", 2: "eigen regie", 3: "intensief"}})
    return path


def test_parse_column_mapping_and_its_errors():
    assert parse_column_mapping(" klantnummer = participant_id , gemeente=municipality,") == {
        "klantnummer": "participant_id", "gemeente": "municipality"}
    for text, fragment in [("klantnummer", "'klantnummer' is not SOURCE=TARGET"),
                           ("a=participant_id,b=participant_id", "'a' and 'b' are both mapped to participant_id"),
                           ("a=arm,a=wave", "column 'a' is mapped twice"),
                           ("=arm", "is not SOURCE=TARGET"), (",", "no SOURCE=TARGET pairs")]:
        with pytest.raises(DataError) as info:
            parse_column_mapping(text)
        assert str(info.value).startswith("--columns: ") and fragment in str(info.value), str(info.value)


def test_mapping_target_must_belong_to_the_contract_or_the_model():
    assert check_column_mapping({"groep": "amr"}) == {"groep": "amr"}  # without targets only the form is checked
    message = error_of(check_column_mapping, {"groep": "amr"}, targets=["arm", "wave"])
    assert "'groep' is mapped to 'amr', which is not a column of the data contract (arm?); targets: arm, wave" in message
    assert check_column_mapping({"leeftijd": "age"}, targets=["age"]) == {"leeftijd": "age"}
    # one mapping serves both tables: the survey's outcome passes when the register is read
    assert check_column_mapping({"welzijn": "wellbeing"}, targets=["arm", "wave", "outflow_work"]) == {
        "welzijn": "wellbeing"}
    assert "must be a column name" in error_of(check_column_mapping, {"groep": 3})


def test_dutch_columns_get_a_ready_to_paste_mapping(tmp_path):
    df = survey_df().rename(columns=DUTCH)
    message = error_of(validate_survey, df, outcomes={"wellbeing": (0, 10)})
    for source, target in [("klantnummer", "participant_id"), ("meting", "wave"), ("welzijn", "wellbeing")]:
        assert f"column '{target}' is missing (found '{source}'?)" in message
    assert f"--columns '{DUTCH_MAPPING}'" in message
    pasted = re.search(r"--columns '([^']+)'", message).group(1)
    out = validate_survey(df, outcomes={"wellbeing": (0, 10)}, columns=parse_column_mapping(pasted))
    assert data_hash(out) == data_hash(validate_survey(survey_df(), outcomes={"wellbeing": (0, 10)}))
    for synonym in ("clientnummer", "respondent"):
        message = error_of(validate_survey, survey_df().rename(columns={"participant_id": synonym}))
        assert f"(found '{synonym}'?)" in message and f"--columns '{synonym}=participant_id'" in message


def test_a_partial_mapping_is_completed_in_the_suggestion():
    df = survey_df().rename(columns=DUTCH)
    message = error_of(validate_survey, df, columns={"klantnummer": "participant_id", "gemeente": "municipality"})
    assert "column 'participant_id' is missing" not in message
    assert "--columns 'klantnummer=participant_id,gemeente=municipality,groep=arm," in message


def test_mapping_errors_name_the_file_and_the_column():
    df = survey_df().rename(columns=DUTCH)
    message = error_of(validate_survey, df, source="export.sav", columns={"klantnumer": "participant_id"})
    assert message.startswith("export.sav: the column mapping takes participant_id from column 'klantnumer', "
                              "but there is no such column ('klantnummer'?)"), message
    # A mapped column this table does not need may be absent: one mapping serves both tables.
    mapped = {**{v: k for k, v in DUTCH.items()}, "uitstroom_werk": "outflow_work"}
    assert len(validate_survey(df, outcomes={"wellbeing": (0, 10)}, columns=mapped)) == 5
    message = error_of(validate_survey, survey_df(groep=["a"] * 5), columns={"groep": "arm"})
    assert "renames 'groep' to arm, but the file already has a column 'arm'" in message


def test_spss_export_with_mapping_and_control_arm(tmp_path):
    path = dutch_sav(tmp_path / "export.sav")
    columns = parse_column_mapping(DUTCH_MAPPING)
    message = error_of(load_survey, path, outcomes={"wellbeing": (0, 10)}, columns=columns)
    assert "control arm 'control' not found in column arm (--control 'controle'?); " \
           "arms present: controle, eigen regie, intensief" in message
    df = load_survey(path, outcomes={"wellbeing": (0, 10)}, columns=columns, control_arm="controle")
    assert set(df["arm"]) == {"controle", "eigen regie", "intensief"}
    assert df["participant_id"].iloc[0] == "00001" and df["wave"].tolist()[:3] == [0, 1, 2]
    assert df["consultant_id"].isna().sum() == 3 and df["wellbeing"].isna().sum() == 6
    counts = missing_outcome_counts(df, "wellbeing", "controle")
    assert counts.columns.tolist() == ["arm", "wave", "n_dropped", "n_total"]
    assert counts["arm"].iloc[0] == "controle" and len(counts) == 9
    # persons 1, 3, 5 (arms 1, 3, 2) did not answer at t1 and t2
    assert counts.set_index(["arm", "wave"])["n_dropped"].to_dict() == {
        (a, w): (0 if w == 0 else 1) for a in ("controle", "eigen regie", "intensief") for w in (0, 1, 2)}
    assert counts["n_total"].eq(2).all()


def test_missing_outflow_is_kept_as_not_known_and_counted():
    out = validate_register(register_df(outflow_work=[0, None, "", 1], months_to_outflow=[None, None, None, 3.0]))
    assert out["outflow_work"].dtype == np.float64 and out["outflow_work"].isna().tolist() == [False, True, True, False]
    counts = missing_outcome_counts(out, "outflow_work", "control")
    assert counts["wave"].isna().all() and counts["arm"].tolist() == ["control", "ER", "IB"]
    assert counts[["n_dropped", "n_total"]].values.tolist() == [[0, 2], [1, 1], [1, 1]]
    assert validate_register(register_df())["outflow_work"].dtype == np.int64
    message = error_of(validate_register, register_df(outflow_work=[0, None, 1, 0]))
    assert "row 3: months_to_outflow is 5 but outflow_work is empty" in message
