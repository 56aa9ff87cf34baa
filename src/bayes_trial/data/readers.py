"""Reading users' data files: CSV/TSV (Dutch conventions included), Parquet, SPSS ``.sav`` and
Stata ``.dta``, with the type inference that keeps ids as text.

:func:`read_table` returns the file's columns as they are (no renaming, no checks against the
data contract: those are :mod:`bayes_trial.data.columns` and :mod:`bayes_trial.data.contract`).
Every problem raises :class:`bayes_trial.errors.DataError` with a one-line message that names the
file and, where there is one, the row (as a spreadsheet shows it: the header is row 1).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_trial.core.errors import DataError

__all__ = ["SUPPORTED_SUFFIXES", "read_table"]

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".parquet", ".sav", ".dta")

#: Columns read as text verbatim (leading zeros kept, never parsed as numbers).
TEXT_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id")

#: Key in ``DataFrame.attrs`` where :func:`read_table` leaves SPSS/Stata value labels
#: (``{column: {code: label}}``) so that numeric columns can be turned back into their codes.
VALUE_LABELS_ATTR = "bayes_trial_value_labels"
#: Key in ``DataFrame.attrs`` with the spreadsheet row number of every data row, when it is not
#: simply position + 2 (a CSV file with blank lines).
ROW_NUMBERS_ATTR = "bayes_trial_row_numbers"

#: Cell texts read as missing values (compared in lower case).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", ".", "#n/a"})
_NUM_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_DEC_COMMA_RE = re.compile(r"^[+-]?(?:\d+,\d*|,\d+)(?:[eE][+-]?\d+)?$")
_INF_RE = re.compile(r"^[+-]?inf(?:inity)?$", re.IGNORECASE)
_LEADING_ZERO_RE = re.compile(r"^[+-]?0\d")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def fail(source: str, message: str) -> DataError:
    """A DataError whose message is guaranteed to be a single line."""
    text = f"{source}: {message}"
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
    return DataError(text)


def is_missing(value: Any) -> bool:
    """Whether one cell value is missing: None, ``pd.NA``, ``pd.NaT`` or a NaN."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(float(value))
    return False


def norm_name(name: Any) -> str:
    """A column name compared loosely: lower case, BOM and outer spaces dropped, spaces/-/. as '_'."""
    text = str(name).replace("\ufeff", "").strip().lower()
    return re.sub(r"[\s\-.]+", "_", text).strip("_")


def parse_number(text: str) -> float | None:
    """A number written as text (decimal point or decimal comma), or None if it is not one."""
    s = text.strip()
    if _NUM_RE.match(s):
        return float(s)
    if _DEC_COMMA_RE.match(s):
        return float(s.replace(",", "."))
    if _INF_RE.match(s):
        return float(s.lower().replace("infinity", "inf"))
    return None


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a survey or register table from ``.csv``, ``.tsv``, ``.parquet``, ``.sav`` or ``.dta``.

    CSV: the delimiter (``,`` ``;`` or tab) is detected from the header row, an Excel ``sep=;``
    first line is honoured, UTF-8 (with or without BOM), UTF-16 (Excel "Unicode text") and
    Windows-1252 are decoded, decimal commas (``5,8``) are read as numbers. The contract's text
    columns (ids, municipality, arm) are kept verbatim as text; any other column whose values are
    all numbers becomes ``int64``/``float64``, otherwise text (``object``, missing = ``None``).
    Empty cells and ``NA``, ``N/A``, ``NaN``, ``NULL``, ``.``, ``#N/A`` are missing.

    SPSS/Stata: value labels are applied to columns whose every value carries a label (they become
    categories holding the label text); the codes are kept in ``df.attrs`` so that the validators
    can use the numeric codes for numeric columns (wave, outcomes, outflow_work).

    Raises :class:`DataError` for a missing or empty file, an unknown suffix, and any file that
    cannot be parsed.
    """
    path = Path(path)
    name = path.name or str(path)
    if not path.exists():
        raise fail(str(path), "file not found")
    if path.is_dir():
        raise fail(str(path), "is a directory, not a data file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = f"'{suffix}'" if suffix else "(none)"
        hint = "; save Excel sheets as CSV" if suffix in (".xlsx", ".xls", ".ods") else ""
        raise fail(
            name,
            f"unsupported file type {shown}; supported: {', '.join(SUPPORTED_SUFFIXES)}{hint}",
        )
    try:
        size = path.stat().st_size
    except OSError as exc:  # pragma: no cover - race with deletion
        raise fail(name, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise fail(name, "file is empty")
    try:
        if suffix in (".csv", ".tsv"):
            raw = path.read_bytes()
            return _read_delimited(raw, name, forced_delimiter="\t" if suffix == ".tsv" else None)
        if suffix == ".parquet":
            return _read_parquet(path, name)
        return _read_stat(path, name, suffix)
    except DataError:
        raise
    except OSError as exc:
        raise fail(name, f"cannot be read ({exc.strerror or exc})") from None


def _decode(raw: bytes, name: str) -> str:
    kind = "CSV"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise fail(name, f"cannot be read as {kind} (binary or corrupted file?)") from None
    if b"\x00" in raw:
        raise fail(name, f"cannot be read as {kind} (binary or corrupted file?)")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise fail(name, f"cannot be read as {kind} (binary or corrupted file?)")
    controls = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\r\n") or ch == "\x7f")
    if controls > max(2, len(text) // 200):
        raise fail(name, f"cannot be read as {kind} (binary or corrupted file?)")
    return text


def _count_outside_quotes(line: str, char: str) -> int:
    count, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == char and not quoted:
            count += 1
    return count


def _read_delimited(raw: bytes, name: str, forced_delimiter: str | None = None) -> pd.DataFrame:
    text = _decode(raw, name)
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise fail(name, "file is empty")

    delimiter = forced_delimiter
    first_line, _, rest = text.partition("\n")
    sep_hint = re.fullmatch(r"\s*sep=(.)\s*", first_line)
    if sep_hint:  # Excel's "sep=;" first line
        delimiter = sep_hint.group(1)
        text = rest
    if delimiter is None:
        header_line = next((ln for ln in text.splitlines() if ln.strip()), "")
        counts = {d: _count_outside_quotes(header_line, d) for d in (";", "\t", ",")}
        best = max(counts, key=lambda d: counts[d])  # ties: ';' before tab before ','
        delimiter = best if counts[best] > 0 else ","

    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
        records = list(reader)
    except csv.Error as exc:
        raise fail(name, f"cannot be read as CSV ({exc})") from None

    # header = first non-blank record
    header_index = next(
        (i for i, rec in enumerate(records) if any(f.strip() for f in rec)), None
    )
    if header_index is None:
        raise fail(name, "file is empty")
    header = [h.replace("\ufeff", "").strip() for h in records[header_index]]
    body = records[header_index + 1 :]
    first_row = header_index + 1 + 1  # spreadsheet row number of body[0] (header row counted)

    if text.count('"') % 2 == 1:
        for offset, rec in enumerate([records[header_index], *body]):
            if any("\n" in f or "\r" in f for f in rec):
                row = header_index + 1 + offset
                raise fail(name, f"row {row}: a quote (\") is opened but never closed")

    n_cols = len(header)
    rows: list[list[str]] = []
    row_numbers: list[int] = []
    for offset, rec in enumerate(body):
        row = first_row + offset
        if not any(f.strip() for f in rec):
            continue  # blank line or a row of delimiters only
        if len(rec) > n_cols:
            extra = rec[n_cols:]
            if any(f.strip() for f in extra):
                raise fail(
                    name,
                    f"row {row} has {len(rec)} values but the header (row {header_index + 1}) "
                    f"has {n_cols} columns; check the delimiter and quoting",
                )
            rec = rec[:n_cols]
        elif len(rec) < n_cols:
            rec = rec + [""] * (n_cols - len(rec))
        rows.append(rec)
        row_numbers.append(row)

    # columns without a name: drop if empty everywhere, else refuse
    keep: list[int] = []
    for j, col in enumerate(header):
        if col:
            keep.append(j)
            continue
        used = next((row_numbers[i] for i, r in enumerate(rows) if r[j].strip()), None)
        if used is not None:
            raise fail(
                name,
                f"column {j + 1} has no name in the header but has a value in row {used}; "
                "every column needs a name",
            )
    seen: dict[str, int] = {}
    for j in keep:
        col = header[j]
        if col in seen:
            raise fail(
                name,
                f"column '{col}' appears twice in the header (columns {seen[col] + 1} and {j + 1})",
            )
        seen[col] = j

    data: dict[str, pd.Series] = {}
    for j in keep:
        col = header[j]
        values = [r[j] for r in rows]
        data[col] = _infer_column(values, text_column=norm_name(col) in TEXT_COLUMNS)
    df = pd.DataFrame(data, index=pd.RangeIndex(len(rows)))
    if not data:
        df = pd.DataFrame(index=pd.RangeIndex(len(rows)))
    if row_numbers != list(range(2, len(rows) + 2)):
        df.attrs[ROW_NUMBERS_ATTR] = np.asarray(row_numbers, dtype=np.int64)
    return df


def _infer_column(values: list[str], *, text_column: bool) -> pd.Series:
    stripped = [v.strip() for v in values]
    if text_column:
        return pd.Series([v if v else None for v in stripped], dtype=object)
    missing = [v.lower() in MISSING_TOKENS for v in stripped]
    numbers: list[float] = []
    numeric = True
    for v, miss in zip(stripped, missing):
        if miss:
            numbers.append(math.nan)
            continue
        x = parse_number(v)
        if x is None or _LEADING_ZERO_RE.match(v):
            numeric = False
            break
        numbers.append(x)
    if numeric and not all(missing):
        arr = np.asarray(numbers, dtype=np.float64)
        finite = np.isfinite(arr)
        if (
            finite.all()
            and np.all(arr == np.round(arr))
            and np.all(np.abs(arr) < 2**53)
        ):
            return pd.Series(arr.astype(np.int64))
        return pd.Series(arr)
    return pd.Series([None if miss else v for v, miss in zip(stripped, missing)], dtype=object)


def _read_parquet(path: Path, name: str) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - pyarrow raises many kinds; the user needs one line
        raise fail(name, "cannot be read as Parquet (truncated or corrupted file?)") from None
    return df.reset_index(drop=True)


def _read_stat(path: Path, name: str, suffix: str) -> pd.DataFrame:
    import pyreadstat

    kind = "an SPSS .sav file" if suffix == ".sav" else "a Stata .dta file"
    reader = pyreadstat.read_sav if suffix == ".sav" else pyreadstat.read_dta
    try:
        df, meta = reader(str(path), apply_value_formats=False)
    except Exception:  # noqa: BLE001 - ReadstatError, PyreadstatError, UnicodeDecodeError, ...
        raise fail(name, f"cannot be read as {kind} (corrupted file or another format?)") from None
    df = pd.DataFrame(df).reset_index(drop=True)
    labels_meta = getattr(meta, "variable_value_labels", None) or {}
    used: dict[str, dict[Any, str]] = {}
    for col, mapping in labels_meta.items():
        if col not in df.columns or not mapping:
            continue
        series = df[col]
        present = series.dropna()
        if present.empty:
            continue
        if not present.isin(list(mapping.keys())).all():
            continue  # partly labelled (e.g. only the end points of a 0-10 scale): keep numbers
        labels = [str(mapping[k]) for k in sorted(mapping, key=_sort_key)]
        categories = list(dict.fromkeys(labels))
        df[col] = pd.Categorical(
            [None if is_missing(v) else str(mapping[v]) for v in series.tolist()],
            categories=categories,
        )
        used[col] = dict(mapping)
    if used:
        df.attrs[VALUE_LABELS_ATTR] = used
    return df


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value))
    return (1, str(value))

