"""Reading and validating trial microdata: the data contract of bayes-trial.

Two tables (see ``data/README.md`` for the user-facing contract):

* **survey**: one row per participant and wave (repeated measures), columns
  :data:`SURVEY_COLUMNS` plus outcome and covariate columns;
* **register**: one row per participant, columns :data:`REGISTER_COLUMNS` plus the optional
  ``months_to_outflow`` and ``months_followed`` and covariates.

:func:`read_table` reads CSV/TSV (Dutch conventions included), Parquet, SPSS ``.sav`` and Stata
``.dta``; :func:`validate_survey` / :func:`validate_register` check a frame against the contract
and return it normalised:

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

A column mapping (``columns=``, from ``--columns`` or a workflow's ``[data.columns]``) renames the
user's columns first; :func:`missing_outcome_counts` counts the rows a model leaves out.

Every problem raises :class:`bayes_trial.errors.DataError` with a one-line message that names the
file, the row (as a spreadsheet shows it: the header is row 1, the first data row is row 2),
the column, the offending value and what was expected.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
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

from bayes_trial.core.errors import DataError, SpecError

__all__ = [
    "SURVEY_COLUMNS",
    "REGISTER_COLUMNS",
    "REGISTER_OPTIONAL_COLUMNS",
    "SUPPORTED_SUFFIXES",
    "MAX_ABS_VALUE",
    "read_table",
    "validate_survey",
    "validate_register",
    "load_survey",
    "load_register",
    "load_for_spec",
    "model_columns",
    "missing_outcome_counts",
    "parse_column_mapping",
    "check_column_mapping",
    "format_column_mapping",
    "data_hash",
    "wave_number",
]

SURVEY_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id", "wave")
REGISTER_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id", "outflow_work")
REGISTER_OPTIONAL_COLUMNS = ("months_to_outflow", "months_followed")
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".parquet", ".sav", ".dta")

#: Outcome values beyond this magnitude are refused as implausible (overflowed exports, 1e300, ...).
MAX_ABS_VALUE = 1e9

_LIMIT_TEXT = f"{MAX_ABS_VALUE:.0e}".replace("e+0", "e").replace("e+", "e")

#: Columns read as text verbatim (leading zeros kept, never parsed as numbers).
TEXT_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id")

#: Key in ``DataFrame.attrs`` where :func:`read_table` leaves SPSS/Stata value labels
#: (``{column: {code: label}}``) so that numeric columns can be turned back into their codes.
VALUE_LABELS_ATTR = "bayes_trial_value_labels"
#: Key in ``DataFrame.attrs`` with the spreadsheet row number of every data row, when it is not
#: simply position + 2 (a CSV file with blank lines).
ROW_NUMBERS_ATTR = "bayes_trial_row_numbers"

_MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", ".", "#n/a"})
_NUM_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_DEC_COMMA_RE = re.compile(r"^[+-]?(?:\d+,\d*|,\d+)(?:[eE][+-]?\d+)?$")
_INF_RE = re.compile(r"^[+-]?inf(?:inity)?$", re.IGNORECASE)
_LEADING_ZERO_RE = re.compile(r"^[+-]?0\d")
_WAVE_TEXT_RE = re.compile(r"^[tT](\d+)$")
_TRUE_TOKENS = frozenset({"1", "true", "yes", "ja", "j", "y"})
_FALSE_TOKENS = frozenset({"0", "false", "no", "nee", "n"})

# Names people use instead of the contract's (English and the Dutch of municipal exports); used
# only to suggest a column mapping in error messages, never to rename on their own.
_SYNONYMS = {
    "participant_id": ("klantnummer", "clientnummer", "cliëntnummer", "klant_id", "client_id", "klantnr",
                       "respondent", "respondentnummer", "respnr", "deelnemer", "deelnemer_id",
                       "deelnemersnummer", "id", "pid", "person_id", "persoon_id"),
    "municipality": ("gemeente", "gemeentenaam", "site", "town", "city", "location", "plaats"),
    "arm": ("groep", "conditie", "experimentgroep", "interventie", "variant", "group", "condition",
            "treatment", "behandeling"),
    "consultant_id": ("consulent", "klantmanager", "casemanager", "werkcoach", "coach", "begeleider",
                      "consultant", "caseworker"),
    "wave": ("meting", "golf", "meetmoment", "ronde", "peiling", "time", "t", "round", "period"),
    "outflow_work": ("uitstroom_werk", "uitstroom_naar_werk", "uitstroom", "werk", "outflow", "work"),
    "months_to_outflow": ("maanden_tot_uitstroom", "maand_uitstroom", "uitstroommaand"),
    "months_followed": ("maanden_gevolgd", "followup", "follow_up", "looptijd"),
    "wellbeing": ("welzijn", "welbevinden", "well_being"),
    "health": ("gezondheid", "ervaren_gezondheid"),
    "trust": ("vertrouwen",),
    "job_applications": ("sollicitaties", "aantal_sollicitaties"),
}
#: Every column a mapping may name as its target, besides a model's outcome and covariates.
CONTRACT_COLUMNS = tuple(dict.fromkeys([*SURVEY_COLUMNS, *REGISTER_COLUMNS, *REGISTER_OPTIONAL_COLUMNS]))
#: Key in ``DataFrame.attrs`` of a validated frame: the file it came from, so that errors found
#: later (while preparing a model) can name it.
SOURCE_ATTR = "bayes_trial_source"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _fail(source: str, message: str) -> DataError:
    """A DataError whose message is guaranteed to be a single line."""
    text = f"{source}: {message}"
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
    return DataError(text)


def _show(value: Any, limit: int = 40) -> str:
    """A value as it appears in a message: strings quoted (control characters escaped)."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[: limit - 3] + "..."
        return repr(text)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
            return str(int(x))
        return repr(x)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return _show(str(value), limit)


def _fmt_range(lo: float | None, hi: float | None) -> str:
    left = "-inf" if lo is None else _show(float(lo))
    right = "inf" if hi is None else _show(float(hi))
    return f"[{left}, {right}]"


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(float(value))
    return False


def _norm_name(name: Any) -> str:
    text = str(name).replace("\ufeff", "").strip().lower()
    return re.sub(r"[\s\-.]+", "_", text).strip("_")


def _row_numbers(df: pd.DataFrame) -> np.ndarray:
    rows = df.attrs.get(ROW_NUMBERS_ATTR) if hasattr(df, "attrs") else None
    if rows is not None and len(rows) == len(df):
        return np.asarray(rows, dtype=np.int64)
    return np.arange(2, len(df) + 2, dtype=np.int64)


def _and_more(count: int, noun: str = "rows") -> str:
    return f" ({count} {noun} in all)" if count > 1 else ""


def _parse_number(text: str) -> float | None:
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
        raise _fail(str(path), "file not found")
    if path.is_dir():
        raise _fail(str(path), "is a directory, not a data file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = f"'{suffix}'" if suffix else "(none)"
        hint = "; save Excel sheets as CSV" if suffix in (".xlsx", ".xls", ".ods") else ""
        raise _fail(
            name,
            f"unsupported file type {shown}; supported: {', '.join(SUPPORTED_SUFFIXES)}{hint}",
        )
    try:
        size = path.stat().st_size
    except OSError as exc:  # pragma: no cover - race with deletion
        raise _fail(name, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise _fail(name, "file is empty")
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
        raise _fail(name, f"cannot be read ({exc.strerror or exc})") from None


def _decode(raw: bytes, name: str) -> str:
    kind = "CSV"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise _fail(name, f"cannot be read as {kind} (binary or corrupted file?)") from None
    if b"\x00" in raw:
        raise _fail(name, f"cannot be read as {kind} (binary or corrupted file?)")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise _fail(name, f"cannot be read as {kind} (binary or corrupted file?)")
    controls = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\r\n") or ch == "\x7f")
    if controls > max(2, len(text) // 200):
        raise _fail(name, f"cannot be read as {kind} (binary or corrupted file?)")
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
        raise _fail(name, "file is empty")

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
        raise _fail(name, f"cannot be read as CSV ({exc})") from None

    # header = first non-blank record
    header_index = next(
        (i for i, rec in enumerate(records) if any(f.strip() for f in rec)), None
    )
    if header_index is None:
        raise _fail(name, "file is empty")
    header = [h.replace("\ufeff", "").strip() for h in records[header_index]]
    body = records[header_index + 1 :]
    first_row = header_index + 1 + 1  # spreadsheet row number of body[0] (header row counted)

    if text.count('"') % 2 == 1:
        for offset, rec in enumerate([records[header_index], *body]):
            if any("\n" in f or "\r" in f for f in rec):
                row = header_index + 1 + offset
                raise _fail(name, f"row {row}: a quote (\") is opened but never closed")

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
                raise _fail(
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
            raise _fail(
                name,
                f"column {j + 1} has no name in the header but has a value in row {used}; "
                "every column needs a name",
            )
    seen: dict[str, int] = {}
    for j in keep:
        col = header[j]
        if col in seen:
            raise _fail(
                name,
                f"column '{col}' appears twice in the header (columns {seen[col] + 1} and {j + 1})",
            )
        seen[col] = j

    data: dict[str, pd.Series] = {}
    for j in keep:
        col = header[j]
        values = [r[j] for r in rows]
        data[col] = _infer_column(values, text_column=_norm_name(col) in TEXT_COLUMNS)
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
    missing = [v.lower() in _MISSING_TOKENS for v in stripped]
    numbers: list[float] = []
    numeric = True
    for v, miss in zip(stripped, missing):
        if miss:
            numbers.append(math.nan)
            continue
        x = _parse_number(v)
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
        raise _fail(name, "cannot be read as Parquet (truncated or corrupted file?)") from None
    return df.reset_index(drop=True)


def _read_stat(path: Path, name: str, suffix: str) -> pd.DataFrame:
    import pyreadstat

    kind = "an SPSS .sav file" if suffix == ".sav" else "a Stata .dta file"
    reader = pyreadstat.read_sav if suffix == ".sav" else pyreadstat.read_dta
    try:
        df, meta = reader(str(path), apply_value_formats=False)
    except Exception:  # noqa: BLE001 - ReadstatError, PyreadstatError, UnicodeDecodeError, ...
        raise _fail(name, f"cannot be read as {kind} (corrupted file or another format?)") from None
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
            [None if _is_missing(v) else str(mapping[v]) for v in series.tolist()],
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


# --------------------------------------------------------------------------------------------
# column matching
# --------------------------------------------------------------------------------------------


def _suggest(wanted: str, candidates: Sequence[Any]) -> Any | None:
    by_norm: dict[str, Any] = {}
    for c in candidates:
        by_norm.setdefault(_norm_name(c), c)
    for syn in _SYNONYMS.get(wanted, ()):
        if syn in by_norm:
            return by_norm[syn]
    close = difflib.get_close_matches(_norm_name(wanted), list(by_norm), n=1, cutoff=0.6)
    return by_norm[close[0]] if close else None


def _match_columns(
    df: pd.DataFrame,
    source: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
    what: str = "required",
    mapping: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Rename columns that match a contract name up to case, spaces, '-' and '.'; report missing.

    The error for missing columns ends in a ready-to-paste ``--columns '...'`` holding `mapping`
    (what the user already gave) and a guess for every missing column that has one.
    """
    wanted = list(dict.fromkeys([*required, *optional]))
    rename: dict[Any, str] = {}
    for name in wanted:
        key = _norm_name(name)
        hits = [c for c in df.columns if _norm_name(c) == key]
        if len(hits) > 1:
            shown = " and ".join(_show(str(h)) for h in hits[:3])
            verb = "both match" if len(hits) == 2 else "all match"
            raise _fail(source, f"columns {shown} {verb} the column '{name}'; keep only one")
        if hits and hits[0] != name:
            if name in df.columns:  # pragma: no cover - caught above (two hits)
                continue
            rename[hits[0]] = name
    if rename:
        df = _rename(df, rename)

    missing = [c for c in required if c not in df.columns]
    if missing:
        if df.shape[1] == 1:
            only = str(df.columns[0])
            raise _fail(
                source,
                f"only one column found ({_show(only, 60)}); the delimiter was not recognised: "
                "separate columns with ',', ';' or a tab",
            )
        taken = set(wanted)
        others = [c for c in df.columns if c not in taken]
        parts = []
        pairs = dict(mapping or {})
        for col in missing:
            guess = _suggest(col, [c for c in others if str(c) not in pairs])
            parts.append(
                f"column '{col}' is missing" + (f" (found {_show(str(guess))}?)" if guess is not None else "")
            )
            if guess is not None:
                pairs[str(guess)] = col
        found = ", ".join(str(c) for c in list(df.columns)[:12])
        if df.shape[1] > 12:
            found += f", ... ({df.shape[1]} columns)"
        paste = ""
        if len(pairs) > len(mapping or {}) and all(_PLAIN_NAME.match(k) for k in pairs):
            paste = f"; map them with --columns '{format_column_mapping(pairs)}' (in a workflow: [data.columns])"
        raise _fail(
            source,
            f"{', '.join(parts)}; {what} columns: {', '.join(required)}; found: {found or '(none)'}{paste}",
        )
    return df


_PLAIN_NAME = re.compile(r"^[^,=']+$")


def _rename(df: pd.DataFrame, rename: Mapping[Any, str]) -> pd.DataFrame:
    """`df.rename(columns=...)` that carries the recorded value labels over to the new names."""
    attrs = dict(df.attrs)
    out = df.rename(columns=rename)
    labels = attrs.get(VALUE_LABELS_ATTR)
    if labels:
        attrs[VALUE_LABELS_ATTR] = {rename.get(col, col): value for col, value in labels.items()}
    out.attrs = attrs
    return out


def parse_column_mapping(text: str, where: str = "--columns") -> dict[str, str]:
    """``'klantnummer=participant_id,gemeente=municipality'`` as ``{source: target}``.

    Raises :class:`DataError` (one line, naming `where`) for an entry without ``=``, an empty
    name, a source given twice or two sources mapped to one target. Whether the targets belong to
    the data contract is checked by :func:`check_column_mapping`.
    """
    mapping: dict[str, str] = {}
    for entry in str(text).split(","):
        if not entry.strip():
            continue
        source, eq, target = entry.partition("=")
        if not eq or not source.strip() or not target.strip():
            raise DataError(
                f"{where}: {_show(entry.strip())} is not SOURCE=TARGET; expected e.g. "
                "'klantnummer=participant_id,gemeente=municipality'"
            )
        mapping = _add_mapping_entry(mapping, source.strip(), target.strip(), where)
    if not mapping:
        raise DataError(f"{where}: no SOURCE=TARGET pairs given; expected e.g. 'klantnummer=participant_id'")
    return mapping


def _add_mapping_entry(mapping: dict[str, str], source: str, target: str, where: str) -> dict[str, str]:
    if source in mapping:
        raise DataError(f"{where}: column {_show(source)} is mapped twice ({mapping[source]} and {target})")
    for other, taken in mapping.items():
        if taken == target:
            raise DataError(
                f"{where}: {_show(other)} and {_show(source)} are both mapped to {target}; "
                "each target column can come from one source column only"
            )
    return {**mapping, source: target}


def check_column_mapping(
    mapping: Mapping[str, Any], *, where: str = "--columns", targets: Iterable[str] | None = None
) -> dict[str, str]:
    """A column mapping as ``{source: target}`` text, no source or target twice.

    With `targets` (see :func:`model_columns`), a target spelled almost like one of them but not
    exactly (``municiplity``) is refused; other targets pass, since one mapping serves both the
    survey and the register. A mapping read from a TOML table (``[data.columns]``) is checked the
    same way.
    """
    if not isinstance(mapping, Mapping):
        raise DataError(f"{where}: expected a table of SOURCE = \"TARGET\" column names, got {mapping!r}")
    checked: dict[str, str] = {}
    for source, target in mapping.items():
        if not isinstance(target, str) or not target.strip():
            raise DataError(f"{where}: the target of {_show(str(source))} must be a column name, got {target!r}")
        checked = _add_mapping_entry(checked, str(source).strip(), target.strip(), where)
    if targets is None:
        return checked
    allowed = list(dict.fromkeys(targets))
    for source, target in checked.items():
        # One mapping serves both tables, so a target this model does not use (another table's
        # outcome) is fine; one spelled almost like a column it does use is a typo.
        close = difflib.get_close_matches(target, allowed, n=1, cutoff=0.6)
        if target not in allowed and close:
            raise DataError(
                f"{where}: {_show(source)} is mapped to {_show(target)}, which is not a column of the "
                f"data contract ({close[0]}?); targets: {', '.join(allowed)}"
            )
    return checked


def format_column_mapping(mapping: Mapping[str, str]) -> str:
    """The ``--columns`` text of a mapping: ``'a=b,c=d'``."""
    return ",".join(f"{source}={target}" for source, target in mapping.items())


def _apply_mapping(
    df: pd.DataFrame, mapping: Mapping[str, str] | None, *, source: str, needed: Sequence[str]
) -> pd.DataFrame:
    """Rename the mapped columns. A source column that is not in the file is an error only when
    its target is one this table needs: one mapping serves both the survey and the register."""
    if not mapping:
        return df
    rename: dict[Any, str] = {}
    for src, target in mapping.items():
        hits = [c for c in df.columns if str(c) == src] or [
            c for c in df.columns if _norm_name(c) == _norm_name(src)
        ]
        if not hits:
            if target in needed and target not in df.columns:
                found = ", ".join(str(c) for c in list(df.columns)[:12])
                guess = difflib.get_close_matches(src, [str(c) for c in df.columns], n=1, cutoff=0.6)
                hint = f" ({_show(guess[0])}?)" if guess else ""
                raise _fail(
                    source,
                    f"the column mapping takes {target} from column {_show(src)}, but there is no such "
                    f"column{hint}; found: {found}",
                )
            continue
        if len(hits) > 1:
            shown = " and ".join(_show(str(h)) for h in hits[:2])
            raise _fail(source, f"columns {shown} both match {_show(src)} of the column mapping; keep only one")
        col = hits[0]
        if target in df.columns and col != target and target not in mapping:
            raise _fail(
                source,
                f"the column mapping renames {_show(str(col))} to {target}, but the file already has a "
                f"column {_show(target)}; drop one of them or leave it out of the mapping",
            )
        rename[col] = target
    return _rename(df, rename) if rename else df


# --------------------------------------------------------------------------------------------
# value conversion
# --------------------------------------------------------------------------------------------


def _to_text(series: pd.Series) -> list[str | None]:
    """Stripped text in Unicode NFC form: 'Zoë' typed with a combining diaeresis is the same id."""
    out: list[str | None] = []
    for v in series.astype(object).tolist():
        if _is_missing(v):
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
        [None if _is_missing(v) else inverse.get(str(v), v) for v in series.astype(object).tolist()],
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
        if _is_missing(v):
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_)):
            out[i] = float(bool(v))
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out[i] = float(v)
        else:
            s = str(v).strip()
            if s.lower() in _MISSING_TOKENS:
                out[i] = np.nan
                continue
            x = _parse_number(s)
            if x is None:
                raise _fail(
                    source,
                    f"row {rows[i]}, column '{column}': {_show(v)} is not a number; expected {expected}",
                )
            out[i] = x
    return out


def _refuse_rows(bad, source: str, describe) -> None:
    """Refuse the table at the first row flagged in `bad`: `describe(index, " (N rows in all)")` says why."""
    flagged = np.flatnonzero(np.asarray(bad))
    if flagged.size:
        raise _fail(source, describe(int(flagged[0]), _and_more(int(flagged.size))))


def _check_finite(values: np.ndarray, *, source: str, column: str, rows: np.ndarray) -> None:
    present = ~np.isnan(values)
    bad = present & ~np.isfinite(values)
    _refuse_rows(bad, source, lambda i, more: (
        f"row {rows[i]}, column '{column}': {_show(values[i])} is not a finite number{more}"))
    huge = present & (np.abs(values) > MAX_ABS_VALUE)
    _refuse_rows(huge, source, lambda i, more: (
        f"row {rows[i]}, column '{column}': {_show(values[i])} is implausibly large "
        f"(|value| > {_LIMIT_TEXT}){more}"))


def _required_text(
    df: pd.DataFrame, col: str, *, source: str, rows: np.ndarray, may_be_empty: bool = False
) -> list[str | None]:
    values = _to_text(df[col])
    if not may_be_empty:
        empty = [i for i, v in enumerate(values) if v is None]
        if empty:
            article = "an" if col[0] in "aeiou" else "a"
            raise _fail(
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
        if _is_missing(v):
            raise _fail(source, f"row {rows[i]}, column 'wave' is empty; {expected}")
        try:
            out[i] = wave_number(v)
        except ValueError:
            raise _fail(source, f"row {rows[i]}, column 'wave': {_show(v)} is not a wave number; {expected}") from None
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
    if _is_missing(value) or isinstance(value, (bool, np.bool_)):
        x = None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
    else:
        s = str(value).strip()
        m = _WAVE_TEXT_RE.match(s)
        x = float(m.group(1)) if m else _parse_number(s)
    if x is None or not math.isfinite(x) or x < 0 or x != int(x) or x > 1000:
        raise ValueError(f"{_show(value)} is not a wave number")
    return int(x)


def _parse_binary(df: pd.DataFrame, col: str, *, source: str, rows: np.ndarray) -> np.ndarray:
    """0/1 as float64; an empty cell (or a missing-value token) is NaN: not known."""
    expected = "expected 0 (no outflow to work), 1 (outflow to work) or an empty cell (not known)"
    values = _codes_view(df, col).astype(object).tolist()
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if _is_missing(v) or (isinstance(v, str) and v.strip().lower() in _MISSING_TOKENS):
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
                x = _parse_number(s)
                b = int(x) if x in (0.0, 1.0) else None
        if b is None:
            raise _fail(source, f"row {rows[i]}, column '{col}': {_show(v)} is not 0 or 1; {expected}")
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
            hint = f" (arm names are case-sensitive: {_show(folded[0])}?)" if folded else ""
            raise _fail(
                source,
                f"row {rows[i]}, column 'arm': unknown arm {_show(arm[i])}{_and_more(len(bad))}; "
                f"allowed arms: {', '.join(allowed)}{hint}",
            )
    if control_arm not in set(arm):
        hint = ""
        folded = [a for a in present if a.casefold() == str(control_arm).casefold()]
        if folded:
            hint = f" (found {_show(folded[0])}: arm names are case-sensitive)"
        else:
            close = difflib.get_close_matches(str(control_arm), present, n=1, cutoff=0.6)
            hint = f" (--control {_show(close[0])}?)" if close else ""
        raise _fail(
            source,
            f"control arm {_show(str(control_arm))} not found in column arm{hint}; "
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
            raise _fail(
                source,
                f"participant {_show(p)} is in two {plural}: {_show(seen[0])} (row {rows[seen[1]]}) "
                f"and {_show(v)} (row {rows[i]}); {hint}",
            )


def _prepare(df: Any, source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise _fail(source, f"expected a table (pandas DataFrame), got {type(df).__name__}")
    if df.shape[1] == 0:
        raise _fail(source, "no columns and no data rows")
    if not df.columns.is_unique:
        dup = df.columns[df.columns.duplicated()][0]
        raise _fail(source, f"column '{dup}' appears twice")
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
    df = _apply_mapping(df, mapping, source=source, needed=[*needed, *optional])
    df = _match_columns(df, source, needed, optional, mapping=mapping)
    if len(df) == 0:
        raise _fail(source, "no data rows (only a header?)")
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
    "participant_id", ...}``, see :func:`parse_column_mapping`); a mapped column the file does not
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
            raise _fail(
                source,
                f"participant {_show(key[0])} has two rows for wave {key[1]} "
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
            f"row {rows[i]}, column '{name}': {_show(values[i])} is outside the declared range "
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
            raise _fail(
                source,
                f"participant {_show(p)} appears twice (rows {rows[first[p]]} and {rows[i]}); "
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
            f"row {rows[i]}, column 'months_followed': {_show(followed[i])} is not positive"
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
            f"row {rows[i]}, column 'months_to_outflow': {_show(months[i])} is negative{more}; "
            "expected months from the start of the trial to outflow (>= 0)"))
        bad = present & (outflow == 0)
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}: months_to_outflow is {_show(months[i])} but outflow_work is 0"
            f"{more}; leave months_to_outflow empty when there was no outflow"))
        bad = present & np.isnan(outflow)
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}: months_to_outflow is {_show(months[i])} but outflow_work is empty"
            f"{more}; give outflow_work 1 when the month of outflow is known"))
        bad = ~present & (outflow == 1)
        _refuse_rows(bad, source, lambda i, more: (
            f"row {rows[i]}: outflow_work is 1 but months_to_outflow is empty{more}; "
            "give the month of outflow"))
        if followed is not None:
            bad = present & (months > followed)
            _refuse_rows(bad, source, lambda i, more: (
                f"row {rows[i]}: months_to_outflow {_show(months[i])} is after months_followed "
                f"{_show(followed[i])}{more}; outflow must fall within follow-up"))
        converted["months_to_outflow"] = months
    return _finish(df, converted, source)


def model_columns(spec: Any) -> list[str]:
    """Columns a mapping may target for `spec` (a :class:`~bayes_trial.spec.ModelSpec`): the
    contract's, the outcome, and the names in the formula (covariates such as ``age``)."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", spec.formula.split("~", 1)[-1])
    return list(dict.fromkeys([*CONTRACT_COLUMNS, spec.outcome, *words]))


def load_for_spec(
    spec: Any, path: str | os.PathLike, *, columns: Mapping[str, str] | None = None,
    where: str = "--columns", targets: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read and validate the table that `spec` models, with its outcome's range and control arm.

    `columns` maps the file's names to the contract's; its targets must be among `targets`
    (default: :func:`model_columns` of `spec`); `where` names the option or table it came from.
    """
    if columns:
        columns = check_column_mapping(columns, where=where, targets=model_columns(spec) if targets is None else targets)
    kwargs = {"control_arm": spec.control_arm, "columns": columns}
    if spec.table == "survey":
        return load_survey(path, outcomes={spec.outcome: tuple(spec.bounds)}, **kwargs)
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
    if _is_missing(value):
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
