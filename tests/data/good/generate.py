"""Regenerate the small test files in tests/data/good/ and tests/data/bad/.

    .venv/bin/python tests/data/good/generate.py

Synthetic data only (no real participants). The good survey files all hold the same 30 rows in
different formats, so that their validated frames share one data_hash; the register files hold
the same 10 participants. Each bad file has exactly one defect, listed in tests/data/bad/README.md.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pyreadstat

GOOD = Path(__file__).resolve().parent
BAD = GOOD.parent / "bad"

ARMS = ("control", "ER", "IB", "SG")
ARM_CODES = {0: "control", 1: "ER", 2: "IB", 3: "SG"}
WAVE_LABELS = {0: "t0", 1: "t1", 2: "t2"}

PEOPLE = [
    # participant_id, municipality, arm, consultant_id (None: no caseworker), age
    ("Oss-001", "Oss", "control", "c01", 34),
    ("Oss-002", "Oss", "ER", None, 51),
    ("Oss-003", "Oss", "IB", "c02", 45),
    ("Oss-004", "Oss", "SG", "c03", 29),
    ("Oss-005", "Oss", "IB", "c02", 60),
    ("Nij-É06", "Nijmegen", "control", "k1", 38),
    ("Nij-007", "Nijmegen", "ER", None, 42),
    ("Nij-008", "Nijmegen", "IB", "k2", 55),
    ("Nij-009", "Nijmegen", "SG", "k3", 31),
    ("Nij-010", "Nijmegen", "control", "k1", 47),
]


def survey_frame() -> pd.DataFrame:
    rng = random.Random(20200401)
    rows = []
    for pid, town, arm, cons, age in PEOPLE:
        for wave in (0, 1, 2):
            answered = wave == 0 or rng.random() > 0.25
            wellbeing = round(rng.uniform(3, 9), 1) if answered else None
            applications = float(rng.randint(0, 6)) if answered else None
            rows.append((pid, town, arm, cons, wave, wellbeing, applications, age))
    return pd.DataFrame(
        rows,
        columns=[
            "participant_id", "municipality", "arm", "consultant_id", "wave",
            "wellbeing", "applications", "age",
        ],
    ).astype({"participant_id": object, "municipality": object, "arm": object, "consultant_id": object})


def register_frame() -> pd.DataFrame:
    rng = random.Random(17)
    rows = []
    for pid, town, arm, cons, age in PEOPLE:
        followed = 24.0
        out = int(rng.random() < 0.4)
        month = float(rng.randint(1, 24)) if out else None
        rows.append((pid, town, arm, cons, out, month, followed, age))
    return pd.DataFrame(
        rows,
        columns=[
            "participant_id", "municipality", "arm", "consultant_id", "outflow_work",
            "months_to_outflow", "months_followed", "age",
        ],
    ).astype({"participant_id": object, "municipality": object, "arm": object, "consultant_id": object})


def _csv_text(df: pd.DataFrame, sep: str = ",", decimal: str = ".") -> str:
    return df.to_csv(index=False, sep=sep, decimal=decimal, lineterminator="\n")


def _labelled(df: pd.DataFrame, *, stata: bool) -> tuple[pd.DataFrame, dict]:
    codes = {v: k for k, v in ARM_CODES.items()}
    out = df.copy()
    out["arm"] = out["arm"].map(codes).astype("int64")
    out["consultant_id"] = out["consultant_id"].fillna("").astype(object)
    labels = {"arm": ARM_CODES}
    if "wave" in out.columns:
        labels["wave"] = WAVE_LABELS
    if "outflow_work" in out.columns:
        labels["outflow_work"] = {0: "nee", 1: "ja"}
    return out, labels


def write_good() -> None:
    survey = survey_frame()
    register = register_frame()
    (GOOD / "survey.csv").write_text(_csv_text(survey), encoding="utf-8")
    # Dutch Excel export: "sep=;" line, semicolons, decimal commas, Windows-1252, CRLF, waves as t0/t1/t2
    nl = survey.copy()
    nl["wave"] = nl["wave"].map(WAVE_LABELS)
    text = "sep=;\n" + _csv_text(nl, sep=";", decimal=",")
    (GOOD / "survey_excel_nl.csv").write_bytes(text.replace("\n", "\r\n").encode("cp1252"))
    (GOOD / "survey.tsv").write_text(_csv_text(survey, sep="\t"), encoding="utf-8")
    survey.to_parquet(GOOD / "survey.parquet", index=False)
    sav, labels = _labelled(survey, stata=False)
    pyreadstat.write_sav(sav, GOOD / "survey.sav", variable_value_labels=labels)
    dta, labels = _labelled(survey, stata=True)
    pyreadstat.write_dta(dta, GOOD / "survey.dta", variable_value_labels=labels)

    (GOOD / "register.csv").write_text(_csv_text(register), encoding="utf-8")
    (GOOD / "register_nl.csv").write_text(
        "\ufeff" + _csv_text(register, sep=";", decimal=","), encoding="utf-8"
    )
    dta, labels = _labelled(register, stata=True)
    pyreadstat.write_dta(dta, GOOD / "register.dta", variable_value_labels=labels)
    sav, labels = _labelled(register, stata=False)
    pyreadstat.write_sav(sav, GOOD / "register.sav", variable_value_labels=labels)


HEADER = "participant_id,municipality,arm,consultant_id,wave,wellbeing\n"
R_HEADER = "participant_id,municipality,arm,consultant_id,outflow_work,months_to_outflow,months_followed\n"

BAD_TEXT = {
    "survey_pipe_delimiter.csv": (
        "participant_id|municipality|arm|consultant_id|wave|wellbeing\n"
        "P1|Oss|control|c1|0|5.5\nP2|Oss|IB|c2|0|6\n"
    ),
    "survey_missing_column.csv": (
        "participant_id,municipality,arm,consultant_id,wellbeing\n"
        "P1,Oss,control,c1,5.5\nP2,Oss,IB,c2,6\n"
    ),
    "survey_misspelled_column.csv": (
        "participant_id,municipality,amr,consultant_id,wave,wellbeing\n"
        "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,0,6\n"
    ),
    "survey_mixed_types.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,0,6\nP3,Oss,IB,c2,0,goed\n",
    "survey_two_arms.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,0,6\nP2,Oss,SG,c3,1,7\n",
    "survey_two_municipalities.csv": (
        HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,0,6\nP1,Nijmegen,control,k1,1,7\n"
    ),
    "survey_duplicate_wave.csv": (
        HEADER + "P1,Oss,control,c1,0,5.5\nP1,Oss,control,c1,1,6\nP2,Oss,IB,c2,0,6\nP1,Oss,control,c1,1,7\n"
    ),
    "survey_out_of_range.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,0,11\n",
    "survey_empty.csv": "",
    "survey_blank_lines_only.csv": "\n\n   \n",
    "survey_header_only.csv": HEADER,
    "survey_huge_number.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,0,1e300\n",
    "survey_infinite.csv": HEADER + "P1,Oss,control,c1,0,inf\nP2,Oss,IB,c2,0,6\n",
    "survey_negative_wave.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,-1,6\n",
    "survey_fractional_wave.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,1.5,6\n",
    "survey_wave_text.csv": HEADER + "P1,Oss,control,c1,baseline,5.5\nP2,Oss,IB,c2,0,6\n",
    "survey_unknown_arm.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IBB,c2,0,6\n",
    "survey_no_control.csv": HEADER + "P1,Oss,ER,,0,5.5\nP2,Oss,IB,c2,0,6\n",
    "survey_control_case.csv": HEADER + "P1,Oss,Control,c1,0,5.5\nP2,Oss,IB,c2,0,6\n",
    "survey_empty_id.csv": HEADER + "P1,Oss,control,c1,0,5.5\n,Oss,IB,c2,0,6\n",
    "survey_empty_arm.csv": (
        "participant_id;municipality;arm;consultant_id;wave;wellbeing\n"
        "P1;Oss;control;c1;0;5,5\nP2;Oss;;c2;0;6\n"
    ),
    "survey_empty_municipality.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2, ,IB,c2,0,6\n",
    "survey_ragged_row.csv": HEADER + "P1,Oss,control,c1,0,5.5\nP2,Oss,IB,c2,0,6,7,8\n",
    "survey_duplicate_header.csv": (
        "participant_id,municipality,arm,consultant_id,wave,arm\nP1,Oss,control,c1,0,control\n"
    ),
    "survey_ambiguous_columns.csv": (
        "participant_id,municipality,Arm,consultant_id,wave,ARM \nP1,Oss,control,c1,0,control\n"
    ),
    "survey_unnamed_column.csv": HEADER.rstrip("\n") + ",\nP1,Oss,control,c1,0,5.5,x\n",
    "survey_unclosed_quote.csv": HEADER + 'P1,Oss,control,c1,0,5.5\n"P2,Oss,IB,c2,0,6\nP3,Oss,IB,c2,0,6\n',
    "survey.xlsx": "participant_id,municipality\nP1,Oss\n",
    "survey_not_really.sav": HEADER + "P1,Oss,control,c1,0,5.5\n",
    "register_missing_outflow.csv": (
        "participant_id,municipality,arm,consultant_id\nP1,Oss,control,c1\nP2,Oss,IB,c2\n"
    ),
    "register_negative_months.csv": R_HEADER + "P1,Oss,control,c1,0,,24\nP2,Oss,IB,c2,1,-3,24\n",
    "register_outflow_after_followup.csv": R_HEADER + "P1,Oss,control,c1,0,,24\nP2,Oss,IB,c2,1,30,24\n",
    "register_months_without_outflow.csv": R_HEADER + "P1,Oss,control,c1,0,7,24\nP2,Oss,IB,c2,1,3,24\n",
    "register_outflow_without_months.csv": R_HEADER + "P1,Oss,control,c1,0,,24\nP2,Oss,IB,c2,1,,24\n",
    "register_duplicate_participant.csv": (
        R_HEADER + "P1,Oss,control,c1,0,,24\nP2,Oss,IB,c2,1,3,24\nP1,Oss,control,c1,1,5,24\n"
    ),
    "register_outflow_not_binary.csv": R_HEADER + "P1,Oss,control,c1,0,,24\nP2,Oss,IB,c2,2,3,24\n",
    "register_nonpositive_followup.csv": R_HEADER + "P1,Oss,control,c1,0,,0\nP2,Oss,IB,c2,1,3,24\n",
}


def write_bad() -> None:
    for name, text in BAD_TEXT.items():
        (BAD / name).write_text(text, encoding="utf-8")
    garbage = bytes([0x50, 0x4B, 0x03, 0x04, 0x00]) + random.Random(0).randbytes(400)
    (BAD / "survey_binary.csv").write_bytes(garbage)

    survey = survey_frame().head(6).copy()
    # SPSS export with an undeclared missing-value code 99 in a 0-10 outcome
    survey.loc[4, "wellbeing"] = 99.0
    sav, labels = _labelled(survey, stata=False)
    pyreadstat.write_sav(sav, BAD / "survey_bad_values.sav", variable_value_labels=labels)

    register = register_frame().head(4).copy()
    register.loc[2, "outflow_work"] = 2
    register.loc[2, "months_to_outflow"] = 5.0
    dta, labels = _labelled(register, stata=True)
    labels["outflow_work"] = {0: "nee", 1: "ja", 2: "onbekend"}
    pyreadstat.write_dta(dta, BAD / "register_bad_values.dta", variable_value_labels=labels)

    full = BAD / "_tmp.parquet"
    survey_frame().to_parquet(full, index=False)
    data = full.read_bytes()
    full.unlink()
    (BAD / "survey_truncated.parquet").write_bytes(data[: len(data) // 2])


if __name__ == "__main__":
    write_good()
    write_bad()
