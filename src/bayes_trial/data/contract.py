"""Validating trial microdata: the data contract of bayes-trial.

Two tables (see ``data/README.md`` for the user-facing contract):

* **survey**: one row per participant and wave (repeated measures), columns
  :data:`SURVEY_COLUMNS` plus outcome and covariate columns;
* **register**: one row per participant, columns :data:`REGISTER_COLUMNS` plus the optional
  ``months_to_outflow`` and ``months_followed`` and covariates.

:func:`~bayes_trial.data.readers.read_table` reads the file; :func:`validate_survey` /
:func:`validate_register` check a frame against the contract and return it normalised
(:func:`load_survey`, :func:`load_register` and :func:`load_for_spec` do both):

* ``participant_id``, ``municipality``, ``arm``, ``consultant_id`` (and every other text value
  that was checked) are ``object`` columns holding Python ``str`` (Unicode NFC, so that ids
  typed with combining accents match); an empty ``consultant_id``
  is ``None`` (the only text column that may be empty);
* ``wave`` is ``int64`` (0 = baseline t0, 1 = t1, 2 = t2, ...);
* declared outcome columns are ``float64`` (``NaN`` = no answer);
* ``outflow_work`` is ``int64`` 0/1; ``months_to_outflow`` and ``months_followed`` are
  ``float64`` (``NaN`` when there was no outflow);
* every other column is kept unchanged; the index is a fresh ``RangeIndex``;
* ``attrs`` holds only :data:`SOURCE_ATTR`, the file name, so that a model that cannot be fitted
  to these rows (one arm only, ...) can name the file.

A column mapping (``columns=``, from ``--columns`` or a workflow's ``[data.columns]``, see
:mod:`bayes_trial.data.columns`) renames the user's columns first; :func:`missing_outcome_counts`
counts the rows a model leaves out.

Every problem raises :class:`bayes_trial.errors.DataError` with a one-line message that names the
file, the row (as a spreadsheet shows it: the header is row 1, the first data row is row 2),
the column, the offending value and what was expected.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.data.columns import (
    apply_mapping,
    check_column_mapping,
    match_columns,
    show,
)
from bayes_trial.data.readers import (
    MISSING_TOKENS,
    ROW_NUMBERS_ATTR,
    VALUE_LABELS_ATTR,
    fail,
    is_missing,
    parse_number,
    read_table,
)

__all__ = [
    "SURVEY_COLUMNS",
    "REGISTER_COLUMNS",
    "REGISTER_OPTIONAL_COLUMNS",
    "MAX_ABS_VALUE",
    "validate_survey",
    "validate_register",
    "load_survey",
    "load_register",
    "load_for_spec",
    "model_columns",
    "missing_outcome_counts",
    "data_hash",
    "wave_number",
]

SURVEY_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id", "wave")
REGISTER_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id", "outflow_work")
REGISTER_OPTIONAL_COLUMNS = ("months_to_outflow", "months_followed")

#: Outcome values beyond this magnitude are refused as implausible (overflowed exports, 1e300, ...).
MAX_ABS_VALUE = 1e9

_LIMIT_TEXT = f"{MAX_ABS_VALUE:.0e}".replace("e+0", "e").replace("e+", "e")

_WAVE_TEXT_RE = re.compile(r"^[tT](\d+)$")
_TRUE_TOKENS = frozenset({"1", "true", "yes", "ja", "j", "y"})
_FALSE_TOKENS = frozenset({"0", "false", "no", "nee", "n"})

#: Every column a mapping may name as its target, besides a model's outcome and covariates.
CONTRACT_COLUMNS = tuple(dict.fromkeys([*SURVEY_COLUMNS, *REGISTER_COLUMNS, *REGISTER_OPTIONAL_COLUMNS]))
#: Key in ``DataFrame.attrs`` of a validated frame: the file it came from, so that errors found
#: later (while preparing a model) can name it.
SOURCE_ATTR = "bayes_trial_source"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _fmt_range(lo: float | None, hi: float | None) -> str:
    left = "-inf" if lo is None else show(float(lo))
    right = "inf" if hi is None else show(float(hi))
    return f"[{left}, {right}]"


def _row_numbers(df: pd.DataFrame) -> np.ndarray:
    rows = df.attrs.get(ROW_NUMBERS_ATTR) if hasattr(df, "attrs") else None
    if rows is not None and len(rows) == len(df):
        return np.asarray(rows, dtype=np.int64)
    return np.arange(2, len(df) + 2, dtype=np.int64)


def _and_more(count: int, noun: str = "rows") -> str:
    return f" ({count} {noun} in all)" if count > 1 else ""


# --------------------------------------------------------------------------------------------
# value conversion
# --------------------------------------------------------------------------------------------


def _to_text(series: pd.Series) -> list[str | None]:
    """Stripped text in Unicode NFC form: 'Zoë' typed with a combining diaeresis is the same id."""
    out: list[str | None] = []
    for v in series.astype(object).tolist():
        if is_missing(v):
            out.append(None)
            continue
        if isinstance(v, str):
            s = v.strip()
        elif isinstance(v, (bool, np.bool_)):
            s = str(bool(v))
        elif isinstance(v, (int, np.integer)):
            s = str(int(v))
        elif isinstance(v, (float, np.floating)):
            x = float(v)
            s = str(int(x)) if math.isfinite(x) and x == int(x) else repr(x)
        elif isinstance(v, bytes):
            s = v.decode("utf-8", errors="replace").strip()
        else:
            s = str(v).strip()
        out.append(unicodedata.normalize("NFC", s) if s else None)
    return out


def _codes_view(df: pd.DataFrame, col: str) -> pd.Series:
    """A categorical column with recorded value labels turned back into its numeric codes."""
    series = df[col]
    if not isinstance(series.dtype, pd.CategoricalDtype):
        return series
    labels = (df.attrs.get(VALUE_LABELS_ATTR) or {}).get(col)
    if not labels:
        return series
    inverse: dict[str, Any] = {}
    for code, label in labels.items():
        if str(label) in inverse:  # two codes share a label: cannot go back
            return series
        inverse[str(label)] = code
    return pd.Series(
        [None if is_missing(v) else inverse.get(str(v), v) for v in series.astype(object).tolist()],
        index=series.index,
        dtype=object,
    )


def _to_float(
    series: pd.Series,
    *,
    source: str,
    column: str,
    rows: np.ndarray,
    expected: str,
) -> np.ndarray:
    """Values as float64 (NaN = missing); text that is not a number raises DataError."""
    dtype = series.dtype
    if (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    ):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = series.astype(object).tolist()
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if is_missing(v):
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_)):
            out[i] = float(bool(v))
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out[i] = float(v)
        else:
            s = str(v).strip()
            if s.lower() in MISSING_TOKENS:
                out[i] = np.nan
                continue
            x = parse_number(s)
            if x is None:
                raise fail(
                    source,
                    f"row {rows[i]}, column '{column}': {show(v)} is not a number; expected {expected}",
                )
            out[i] = x
    return out


def _refuse_rows(bad, source: str, describe) -> None:
    """Refuse the table at the first row flagged in `bad`: `describe(index, " (N rows in all)")` says why."""
    flagged = np.flatnonzero(np.asarray(bad))
    if flagged.size:
        raise fail(source, describe(int(flagged[0]), _and_more(int(flagged.size))))


def _check_finite(values: np.ndarray, *, source: str, column: str, rows: np.ndarray) -> None:
    present = ~np.isnan(values)
    bad = present & ~np.isfinite(values)
    _refuse_rows(bad, source, lambda i, more: (
        f"row {rows[i]}, column '{column}': {show(values[i])} is not a finite number{more}"))
    huge = present & (np.abs(values) > MAX_ABS_VALUE)
    _refuse_rows(huge, source, lambda i, more: (
        f"row {rows[i]}, column '{column}': {show(values[i])} is implausibly large "
        f"(|value| > {_LIMIT_TEXT}){more}"))


def _required_text(
    df: pd.DataFrame, col: str, *, source: str, rows: np.ndarray, may_be_empty: bool = False
) -> list[str | None]:
    values = _to_text(df[col])
    if not may_be_empty:
        empty = [i for i, v in enumerate(values) if v is None]
        if empty:
            article = "an" if col[0] in "aeiou" else "a"
            raise fail(
                source,
                f"row {rows[empty[0]]}, column '{col}' is empty{_and_more(len(empty))}; "
                f"every row needs {article} {col}",
            )
    return values


def _parse_wave(df: pd.DataFrame, *, source: str, rows: np.ndarray) -> np.ndarray:
    expected = (
        "expected a non-negative integer (0 = baseline t0, 1 = t1, 2 = t2; 't0', 't1', ... also accepted)"
    )
    values = _codes_view(df, "wave").astype(object).tolist()
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if is_missing(v):
            raise fail(source, f"row {rows[i]}, column 'wave' is empty; {expected}")
        try:
            out[i] = wave_number(v)
        except ValueError:
            raise fail(source, f"row {rows[i]}, column 'wave': {show(v)} is not a wave number; {expected}") from None
    return out


def wave_number(value: Any) -> int:
    """The wave number of one label as data files write it: 1, 1.0, '1', 't1' or 'T1' all give 1.

    Parameters
    ----------
    value
        A wave label: a whole non-negative number (up to 1000) or text such as ``'t0'``.

    Returns
    -------
    int
        The wave number (0 = baseline).

    Raises
    ------
    ValueError
        If `value` is not a wave label.
    """
    x: float | None
    if is_missing(value) or isinstance(value, (bool, np.bool_)):
        x = None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
    else:
        s = str(value).strip()
        m = _WAVE_TEXT_RE.match(s)
        x = float(m.group(1)) if m else parse_number(s)
    if x is None or not math.isfinite(x) or x < 0 or x != int(x) or x > 1000:
        raise ValueError(f"{show(value)} is not a wave number")
    return int(x)


def _parse_binary(df: pd.DataFrame, col: str, *, source: str, rows: np.ndarray) -> np.ndarray:
    """0/1 as float64; an empty cell (or a missing-value token) is NaN: not known."""
    expected = "expected 0 (no outflow to work), 1 (outflow to work) or an empty cell (not known)"
    values = _codes_view(df, col).astype(object).tolist()
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if is_missing(v) or (isinstance(v, str) and v.strip().lower() in MISSING_TOKENS):
            out[i] = np.nan
            continue
        b: int | None = None
        if isinstance(v, (bool, np.bool_)):
            b = int(bool(v))
        elif isinstance(v, (int, float, np.integer, np.floating)):
            b = int(v) if float(v) in (0.0, 1.0) else None
        else:
            s = str(v).strip().lower()
            if s in _TRUE_TOKENS:
                b = 1
            elif s in _FALSE_TOKENS:
                b = 0
            else:
                x = parse_number(s)
                b = int(x) if x in (0.0, 1.0) else None
        if b is None:
            raise fail(source, f"row {rows[i]}, column '{col}': {show(v)} is not 0 or 1; {expected}")
        out[i] = b
    return out


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _normalise_outcomes(
    outcomes: Mapping[str, Any] | Iterable[str] | None,
) -> dict[str, tuple[float | None, float | None]]:
    if outcomes is None:
        return {}
    if isinstance(outcomes, str):
        outcomes = [outcomes]
    if not isinstance(outcomes, Mapping):
        outcomes = {name: (None, None) for name in outcomes}
    result: dict[str, tuple[float | None, float | None]] = {}
    for name, bounds in outcomes.items():
        if bounds is None:
            lo = hi = None
        else:
            try:
                lo, hi = bounds
            except (TypeError, ValueError):
                raise SpecError(
                    f"outcome '{name}': declared range must be (lower, upper), got {bounds!r}"
                ) from None
        lo = None if lo is None or (isinstance(lo, float) and math.isinf(lo) and lo < 0) else float(lo)
        hi = None if hi is None or (isinstance(hi, float) and math.isinf(hi) and hi > 0) else float(hi)
        if lo is not None and hi is not None and lo > hi:
            raise SpecError(f"outcome '{name}': declared range has lower {lo:g} above upper {hi:g}")
        result[str(name)] = (lo, hi)
    return result


def _check_arms(
    arm: list[str], *, source: str, rows: np.ndarray, control_arm: str, arms: Sequence[str] | None
) -> None:
    present = sorted(set(arm))
    if arms is not None:
        if isinstance(arms, str):
            arms = [arms]
        allowed = list(dict.fromkeys([control_arm, *[str(a) for a in arms]]))
        allowed_set = set(allowed)
        bad = [i for i, a in enumerate(arm) if a not in allowed_set]
        if bad:
            i = bad[0]
            folded = [a for a in allowed if a.casefold() == arm[i].casefold()]
            hint = f" (arm names are case-sensitive: {show(folded[0])}?)" if folded else ""
            raise fail(
                source,
                f"row {rows[i]}, column 'arm': unknown arm {show(arm[i])}{_and_more(len(bad))}; "
                f"allowed arms: {', '.join(allowed)}{hint}",
            )
    if control_arm not in set(arm):
        hint = ""
        folded = [a for a in present if a.casefold() == str(control_arm).casefold()]
        if folded:
            hint = f" (found {show(folded[0])}: arm names are case-sensitive)"
        else:
            close = difflib.get_close_matches(str(control_arm), present, n=1, cutoff=0.6)
            hint = f" (--control {show(close[0])}?)" if close else ""
        raise fail(
            source,
            f"control arm {show(str(control_arm))} not found in column arm{hint}; "
            f"arms present: {', '.join(present)}; set control_arm (in the spec, --control on the command line, "
            "or control_arm in a workflow's [data])",
        )


def _check_one_value_per_participant(
    pid: list[str], values: list[str], *, plural: str, hint: str, source: str, rows: np.ndarray
) -> None:
    first: dict[str, tuple[str, int]] = {}
    for i, (p, v) in enumerate(zip(pid, values)):
        seen = first.get(p)
        if seen is None:
            first[p] = (v, i)
        elif seen[0] != v:
            raise fail(
                source,
                f"participant {show(p)} is in two {plural}: {show(seen[0])} (row {rows[seen[1]]}) "
                f"and {show(v)} (row {rows[i]}); {hint}",
            )


def _prepare(df: Any, source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise fail(source, f"expected a table (pandas DataFrame), got {type(df).__name__}")
    if df.shape[1] == 0:
        raise fail(source, "no columns and no data rows")
    if not df.columns.is_unique:
        dup = df.columns[df.columns.duplicated()][0]
        raise fail(source, f"column '{dup}' appears twice")
    return df


def _finish(df: pd.DataFrame, converted: dict[str, Any], source: str) -> pd.DataFrame:
    # A frame validated a second time (a hazard model re-checks its register) keeps its file's name.
    source = df.attrs.get(SOURCE_ATTR, source)
    out = df.copy()
    out.attrs = {}
    for col, values in converted.items():
        if isinstance(values, np.ndarray):
            out[col] = pd.Series(values, index=out.index)
        else:
            out[col] = pd.Series(values, index=out.index, dtype=object)
    out = out.reset_index(drop=True)
    out.attrs = {SOURCE_ATTR: source}
    return out


def _validate_common(
    df: pd.DataFrame, *, source: str, required: Sequence[str], optional: Sequence[str],
    control_arm: str, arms: Sequence[str] | None, outcomes: Sequence[str] = (),
    columns: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    df = _prepare(df, source)
    mapping = check_column_mapping(columns, where=f"{source}: column mapping") if columns else None
    # Outcomes are matched with the contract's columns, so that one message names every missing column.
    needed = list(dict.fromkeys([*required, *outcomes]))
    df = apply_mapping(df, mapping, source=source, needed=[*needed, *optional])
    df = match_columns(df, source, needed, optional, mapping=mapping)
    if len(df) == 0:
        raise fail(source, "no data rows (only a header?)")
    rows = _row_numbers(df)
    converted: dict[str, Any] = {}
    for col in ("participant_id", "municipality", "arm"):
        converted[col] = _required_text(df, col, source=source, rows=rows)
    converted["consultant_id"] = _required_text(
        df, "consultant_id", source=source, rows=rows, may_be_empty=True
    )
    _check_arms(converted["arm"], source=source, rows=rows, control_arm=control_arm, arms=arms)
    pid = converted["participant_id"]
    _check_one_value_per_participant(
        pid, converted["arm"], plural="arms",
        hint="a participant belongs to one arm", source=source, rows=rows,
    )
    _check_one_value_per_participant(
        pid, converted["municipality"], plural="municipalities",
        hint="participant ids must be unique across municipalities (prefix them, e.g. 'Oss-17')",
        source=source, rows=rows,
    )
    return df, rows, converted


def validate_survey(
    df: pd.DataFrame,
    *,
    source: str = "survey",
    outcomes: Mapping[str, tuple[float | None, float | None]] | None = None,
    control_arm: str = "control",
    arms: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Check a survey table (one row per participant and wave) and return it normalised.

    ``outcomes`` maps each outcome column to its declared ``(lower, upper)`` range (``None`` for
    an open side); outcome values may be empty (no answer) but must be finite numbers inside the
    range. ``arms``, when given, lists the allowed arm names (the control arm is always allowed).
    ``columns`` maps the file's column names to the contract's (``{"klantnummer":
    "participant_id", ...}``, see :func:`~bayes_trial.data.columns.parse_column_mapping`); a mapped column the file does not
    have is an error only if this table needs its target.
    Raises :class:`DataError` with a one-line message at the first problem.
    """
    declared = _normalise_outcomes(outcomes)
    df, rows, converted = _validate_common(
        df, source=source, required=SURVEY_COLUMNS, optional=(), control_arm=control_arm, arms=arms,
        outcomes=list(declared), columns=columns,
    )
    wave = _parse_wave(df, source=source, rows=rows)
    converted["wave"] = wave

    seen: dict[tuple[str, int], int] = {}
    for i, key in enumerate(zip(converted["participant_id"], wave.tolist())):
        if key in seen:
            raise fail(
                source,
                f"participant {show(key[0])} has two rows for wave {key[1]} "
                f"(rows {rows[seen[key]]} and {rows[i]}); expected one row per participant and wave",
            )
        seen[key] = i

    for name, (lo, hi) in declared.items():
        rng = _fmt_range(lo, hi)
        values = _to_float(
            _codes_view(df, name), source=source, column=name, rows=rows,
            expected=f"a number in {rng} or an empty cell (decimal comma allowed)",
        )
        _check_finite(values, source=source, column=name, rows=rows)
        present = ~np.isnan(values)
        outside = present & (
            (values < lo if lo is not None else False) | (values > hi if hi is not None else False)
        )
        _refuse_rows(outside, source, lambda i, more: (
            f"row {rows[i]}, column '{name}': {show(values[i])} is outside the declared range "
            f"{rng}{more}"))
        converted[name] = values
    return _finish(df, converted, source)


def validate_register(
    df: pd.DataFrame,
    *,
    source: str = "register",
    control_arm: str = "control",
    arms: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Check a register table (one row per participant) and return it normalised.

    ``outflow_work`` must be 0/1 (``yes``/``no``, ``ja``/``nee``, ``true``/``false`` and labelled
    SPSS/Stata codes are accepted) or empty (not known: the model leaves the person out and counts
    them, see :func:`missing_outcome_counts`); it is ``int64`` when no value is missing, else
    ``float64`` with ``NaN``. The optional ``months_to_outflow`` (months from the start of
    the trial to outflow; empty when there was none) and ``months_followed`` (length of follow-up,
    > 0) are checked against each other when present. ``columns``: as in :func:`validate_survey`.
    """
    df, rows, converted = _validate_common(
        df, source=source, required=REGISTER_COLUMNS, optional=REGISTER_OPTIONAL_COLUMNS,
        control_arm=control_arm, arms=arms, columns=columns,
    )
    first: dict[str, int] = {}
    for i, p in enumerate(converted["participant_id"]):
        if p in first:
            raise fail(
                source,
                f"participant {show(p)} appears twice (rows {rows[first[p]]} and {rows[i]}); "
                "the register has one row per participant",
            )
        first[p] = i

    outflow = _parse_binary(df, "outflow_work", source=source, rows=rows)
    converted["outflow_work"] = outflow.astype(np.int64) if not np.isnan(outflow).any() else outflow

    followed = None
    if "months_followed" in df.columns:
        followed = _to_float(
            _codes_view(df, "months_followed"), source=source, column="months_followed", rows=rows,
            expected="the length of follow-up in months (> 0)",
        )
        _check_finite(followed, source=source, column="months_followed", rows=rows)
        empty = np.isnan(followed)
        _refuse_rows(empty, source, lambda i, more: (
            f"row {rows[i]}, column 'months_followed' is empty{more}; expected the length "
            "of follow-up in months (> 0) for every participant"))
        bad = followed <= 0
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}, column 'months_followed': {show(followed[i])} is not positive"
            f"{more}; expected the length of follow-up in months (> 0)"))
        converted["months_followed"] = followed

    if "months_to_outflow" in df.columns:
        months = _to_float(
            _codes_view(df, "months_to_outflow"), source=source, column="months_to_outflow", rows=rows,
            expected="months from the start of the trial to outflow (>= 0), empty if no outflow",
        )
        _check_finite(months, source=source, column="months_to_outflow", rows=rows)
        present = ~np.isnan(months)
        bad = present & (months < 0)
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}, column 'months_to_outflow': {show(months[i])} is negative{more}; "
            "expected months from the start of the trial to outflow (>= 0)"))
        bad = present & (outflow == 0)
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}: months_to_outflow is {show(months[i])} but outflow_work is 0"
            f"{more}; leave months_to_outflow empty when there was no outflow"))
        bad = present & np.isnan(outflow)
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}: months_to_outflow is {show(months[i])} but outflow_work is empty"
            f"{more}; give outflow_work 1 when the month of outflow is known"))
        bad = ~present & (outflow == 1)
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}: outflow_work is 1 but months_to_outflow is empty{more}; "
            "give the month of outflow"))
        if followed is not None:
            bad = present & (months > followed)
            _refuse_rows(bad, source, lambda i, more: (
                f"row {rows[i]}: months_to_outflow {show(months[i])} is after months_followed "
                f"{show(followed[i])}{more}; outflow must fall within follow-up"))
        converted["months_to_outflow"] = months
    return _finish(df, converted, source)


def model_columns(spec: Any) -> list[str]:
    """Columns a mapping may target for `spec` (a :class:`~bayes_trial.spec.ModelSpec`): the
    contract's, the outcome, its baseline score, and the names in the formula (covariates such as ``age``)."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", spec.formula.split("~", 1)[-1])
    baseline = [spec.baseline] if getattr(spec, "baseline", "") else []
    return list(dict.fromkeys([*CONTRACT_COLUMNS, spec.outcome, *baseline, *words]))


def load_for_spec(
    spec: Any, path: str | os.PathLike, *, columns: Mapping[str, str] | None = None,
    where: str = "--columns", targets: Iterable[str] | None = None, register: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Read and validate the table that `spec` models, with its outcome's range and control arm.

    `columns` maps the file's names to the contract's; its targets must be among `targets`
    (default: :func:`model_columns` of `spec`); `where` names the option or table it came from.
    With `register` (a file listing everyone randomised) a survey gets a row for every randomised
    person at every wave (:func:`with_nonresponse`), so that missing outcomes count non-response
    over everyone randomised; register specs ignore it.
    """
    if columns:
        columns = check_column_mapping(columns, where=where, targets=model_columns(spec) if targets is None else targets)
    kwargs = {"control_arm": spec.control_arm, "columns": columns}
    if spec.table == "survey":
        # The response model's outcome is made by `with_nonresponse`, not read from the file; its
        # baseline score (if any) is read as a number, in the range that score's own model declares.
        outcomes = {} if spec.outcome == RESPONDED else {spec.outcome: tuple(spec.bounds)}
        if getattr(spec, "baseline", ""):
            outcomes[spec.baseline] = (None, None)
        survey = load_survey(path, outcomes=outcomes, **kwargs)
        if register is None:
            return survey
        return with_nonresponse(survey, load_register(register, **kwargs), source=survey.attrs[SOURCE_ATTR])
    return load_register(path, **kwargs)


def missing_outcome_counts(frame: pd.DataFrame, outcome: str, control_arm: str | None = None) -> pd.DataFrame:
    """Rows without a value of `outcome`, per arm and wave: columns arm, wave, n_dropped, n_total.

    One row per arm (control arm first) and wave found in `frame`; ``wave`` is ``None`` for a
    table without waves (the register). These are the rows a model leaves out.
    """
    by = ["arm", "wave"] if "wave" in frame.columns else ["arm"]
    missing = frame[outcome].isna().rename("n_dropped").astype(np.int64)
    keys = [frame[c].astype(object) for c in by]
    table = missing.groupby(keys, sort=True).agg(["sum", "size"]).reset_index()
    table.columns = [*by, "n_dropped", "n_total"]
    if "wave" not in table:
        table.insert(1, "wave", None)
    table["wave"] = table["wave"].astype(object)
    if control_arm is not None:
        table = table.sort_values("arm", key=lambda arms: arms != control_arm, kind="stable")
    return table.astype({"n_dropped": np.int64, "n_total": np.int64}).reset_index(drop=True)


RESPONDED = "responded"
#: Columns that `modelling.frames.with_baseline` adds to the padded survey for a response model's
#: baseline score (`ModelSpec.baseline`): the person's standardised wave-0 score on later waves, and
#: 1 on later waves of persons without one.
BASELINE_SCORE = "baseline_score"
NO_BASELINE = "no_baseline"


def with_nonresponse(survey: pd.DataFrame, register: pd.DataFrame, *, source: str = "survey") -> pd.DataFrame:
    """The survey with a row for every randomised person at every survey wave, outcomes empty where they did not respond.

    `register` (validated) lists everyone randomised; a person with no `survey` row at a wave did
    not respond. Added rows take participant_id, municipality, arm, consultant_id and any column
    both tables have (covariates such as age) from the register; their outcomes are empty, so
    `missing_outcome_counts` and every fit see unit non-response as missing outcomes. Column
    ``responded`` is 1 on the survey's rows and 0 on the added ones. A survey person absent from the
    register, or in another arm there, is a :class:`DataError` naming `source`.
    """
    roster = register.drop_duplicates("participant_id").set_index("participant_id")
    persons = survey["participant_id"].drop_duplicates()
    unknown = persons[~persons.isin(roster.index)]
    if len(unknown):
        raise fail(source, f"participant {show(unknown.iloc[0])} is not in the register"
                           f"{_and_more(len(unknown), 'participants')}; the register must list everyone randomised")
    first = survey.drop_duplicates("participant_id").set_index("participant_id")
    moved = first.index[first["arm"].astype(str).to_numpy() != roster.loc[first.index, "arm"].astype(str).to_numpy()]
    if len(moved):
        raise fail(source, f"participant {show(moved[0])} is in arm {show(first.loc[moved[0], 'arm'])} here but "
                           f"{show(roster.loc[moved[0], 'arm'])} in the register{_and_more(len(moved), 'participants')}")
    waves = np.sort(survey["wave"].unique())
    grid = pd.MultiIndex.from_product([roster.index, waves], names=["participant_id", "wave"])
    seen = pd.MultiIndex.from_frame(survey[["participant_id", "wave"]])
    absent = grid.difference(seen).to_frame(index=False)
    shared = [c for c in survey.columns if c in roster.columns]
    added = absent.join(roster[shared], on="participant_id").reindex(columns=survey.columns)
    # The survey's rows first, in their own order: a model drops the added rows (no outcome) and
    # then sees exactly the rows it sees without padding, so the same seed gives the same draws.
    added = added.sort_values(["participant_id", "wave"], kind="stable")
    out = pd.concat([survey.assign(**{RESPONDED: 1}), added.assign(**{RESPONDED: 0})], ignore_index=True)
    out.attrs.update(survey.attrs)
    return out


def load_survey(path: str | os.PathLike, **kwargs: Any) -> pd.DataFrame:
    """:func:`read_table` then :func:`validate_survey` with ``source`` = the file name."""
    kwargs.setdefault("source", Path(path).name or str(path))
    return validate_survey(read_table(path), **kwargs)


def load_register(path: str | os.PathLike, **kwargs: Any) -> pd.DataFrame:
    """:func:`read_table` then :func:`validate_register` with ``source`` = the file name."""
    kwargs.setdefault("source", Path(path).name or str(path))
    return validate_register(read_table(path), **kwargs)


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------


def _canon(value: Any) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x == int(x) and abs(x) < 2**63:
            return str(int(x))
        return repr(x)
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace") or None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    return str(value)


def data_hash(df: pd.DataFrame) -> str:
    """SHA-256 (hex) of a canonical text form of the table's content.

    Independent of column order, row order, the index, ``attrs`` and dtypes: numbers are written
    canonically (``1``, ``1.0`` and ``np.int64(1)`` are the same; other floats use their shortest
    round-trip form), every missing value (``None``, ``NaN``, ``pd.NA``, empty string) is the same,
    categories count as their labels. A validated frame written to CSV and loaded again hashes the
    same.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"data_hash expects a pandas DataFrame, got {type(df).__name__}")
    names = [str(c) for c in df.columns]
    order = sorted(range(len(names)), key=lambda j: names[j])
    columns = [[_canon(v) for v in df.iloc[:, j].astype(object).tolist()] for j in order]
    rows = sorted(json.dumps(list(r), ensure_ascii=False) for r in zip(*columns)) if columns else []
    header = json.dumps([names[j] for j in order], ensure_ascii=False)
    h = hashlib.sha256()
    h.update(b"bayes-trial data v1\n")
    h.update(header.encode("utf-8", errors="surrogatepass"))
    h.update(f"\n{len(df)}\n".encode())
    for r in rows:
        h.update(r.encode("utf-8", errors="surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()
