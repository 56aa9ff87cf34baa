"""Column mapping: the user's column names renamed to the data contract's (``data/README.md``).

A mapping (``columns=``, from ``--columns`` or a workflow's ``[data.columns]``) is
``{file column: contract column}``: :func:`parse_column_mapping` reads its ``--columns`` text,
:func:`check_column_mapping` checks it, :func:`apply_mapping` renames a frame's columns with it and
:func:`match_columns` matches the rest up to case, spaces, '-' and '.'. When a required column is
missing, the error suggests a mapping (Dutch names of municipal exports included) ready to paste.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayes_trial.core.errors import DataError
from bayes_trial.data.readers import VALUE_LABELS_ATTR, fail, norm_name

__all__ = ["parse_column_mapping", "check_column_mapping", "format_column_mapping"]

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


def show(value: Any, limit: int = 40) -> str:
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
    return show(str(value), limit)


# --------------------------------------------------------------------------------------------
# column matching
# --------------------------------------------------------------------------------------------


def _suggest(wanted: str, candidates: Sequence[Any]) -> Any | None:
    by_norm: dict[str, Any] = {}
    for c in candidates:
        by_norm.setdefault(norm_name(c), c)
    for syn in _SYNONYMS.get(wanted, ()):
        if syn in by_norm:
            return by_norm[syn]
    close = difflib.get_close_matches(norm_name(wanted), list(by_norm), n=1, cutoff=0.6)
    return by_norm[close[0]] if close else None


def match_columns(
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
        key = norm_name(name)
        hits = [c for c in df.columns if norm_name(c) == key]
        if len(hits) > 1:
            shown = " and ".join(show(str(h)) for h in hits[:3])
            verb = "both match" if len(hits) == 2 else "all match"
            raise fail(source, f"columns {shown} {verb} the column '{name}'; keep only one")
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
            raise fail(
                source,
                f"only one column found ({show(only, 60)}); the delimiter was not recognised: "
                "separate columns with ',', ';' or a tab",
            )
        taken = set(wanted)
        others = [c for c in df.columns if c not in taken]
        parts = []
        pairs = dict(mapping or {})
        for col in missing:
            guess = _suggest(col, [c for c in others if str(c) not in pairs])
            parts.append(
                f"column '{col}' is missing" + (f" (found {show(str(guess))}?)" if guess is not None else "")
            )
            if guess is not None:
                pairs[str(guess)] = col
        found = ", ".join(str(c) for c in list(df.columns)[:12])
        if df.shape[1] > 12:
            found += f", ... ({df.shape[1]} columns)"
        paste = ""
        if len(pairs) > len(mapping or {}) and all(_PLAIN_NAME.match(k) for k in pairs):
            paste = f"; map them with --columns '{format_column_mapping(pairs)}' (in a workflow: [data.columns])"
        raise fail(
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
                f"{where}: {show(entry.strip())} is not SOURCE=TARGET; expected e.g. "
                "'klantnummer=participant_id,gemeente=municipality'"
            )
        mapping = _add_mapping_entry(mapping, source.strip(), target.strip(), where)
    if not mapping:
        raise DataError(f"{where}: no SOURCE=TARGET pairs given; expected e.g. 'klantnummer=participant_id'")
    return mapping


def _add_mapping_entry(mapping: dict[str, str], source: str, target: str, where: str) -> dict[str, str]:
    if source in mapping:
        raise DataError(f"{where}: column {show(source)} is mapped twice ({mapping[source]} and {target})")
    for other, taken in mapping.items():
        if taken == target:
            raise DataError(
                f"{where}: {show(other)} and {show(source)} are both mapped to {target}; "
                "each target column can come from one source column only"
            )
    return {**mapping, source: target}


def check_column_mapping(
    mapping: Mapping[str, Any], *, where: str = "--columns", targets: Iterable[str] | None = None
) -> dict[str, str]:
    """A column mapping as ``{source: target}`` text, no source or target twice.

    With `targets` (see :func:`~bayes_trial.data.contract.model_columns`), a target spelled almost
    like one of them but not exactly (``municiplity``) is refused; other targets pass, since one
    mapping serves both the survey and the register. A mapping read from a TOML table (``[data.columns]``) is checked the
    same way.
    """
    if not isinstance(mapping, Mapping):
        raise DataError(f"{where}: expected a table of SOURCE = \"TARGET\" column names, got {mapping!r}")
    checked: dict[str, str] = {}
    for source, target in mapping.items():
        if not isinstance(target, str) or not target.strip():
            raise DataError(f"{where}: the target of {show(str(source))} must be a column name, got {target!r}")
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
                f"{where}: {show(source)} is mapped to {show(target)}, which is not a column of the "
                f"data contract ({close[0]}?); targets: {', '.join(allowed)}"
            )
    return checked


def format_column_mapping(mapping: Mapping[str, str]) -> str:
    """The ``--columns`` text of a mapping: ``'a=b,c=d'``."""
    return ",".join(f"{source}={target}" for source, target in mapping.items())


def apply_mapping(
    df: pd.DataFrame, mapping: Mapping[str, str] | None, *, source: str, needed: Sequence[str]
) -> pd.DataFrame:
    """Rename the mapped columns. A source column that is not in the file is an error only when
    its target is one this table needs: one mapping serves both the survey and the register."""
    if not mapping:
        return df
    rename: dict[Any, str] = {}
    for src, target in mapping.items():
        hits = [c for c in df.columns if str(c) == src] or [
            c for c in df.columns if norm_name(c) == norm_name(src)
        ]
        if not hits:
            if target in needed and target not in df.columns:
                found = ", ".join(str(c) for c in list(df.columns)[:12])
                guess = difflib.get_close_matches(src, [str(c) for c in df.columns], n=1, cutoff=0.6)
                hint = f" ({show(guess[0])}?)" if guess else ""
                raise fail(
                    source,
                    f"the column mapping takes {target} from column {show(src)}, but there is no such "
                    f"column{hint}; found: {found}",
                )
            continue
        if len(hits) > 1:
            shown = " and ".join(show(str(h)) for h in hits[:2])
            raise fail(source, f"columns {shown} both match {show(src)} of the column mapping; keep only one")
        col = hits[0]
        if target in df.columns and col != target and target not in mapping:
            raise fail(
                source,
                f"the column mapping renames {show(str(col))} to {target}, but the file already has a "
                f"column {show(target)}; drop one of them or leave it out of the mapping",
            )
        rename[col] = target
    return _rename(df, rename) if rename else df

