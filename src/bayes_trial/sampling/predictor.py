"""The linear predictor of a stored fit for any rows, from its posterior draws alone (no Bambi, no PyMC).

Bambi's `predict` rebuilds the model (1.5 s) and imports PyMC (7 s with ArviZ) to answer what is a
sum of products: common terms times their coefficients, group-specific terms times their level's
effect. This module evaluates that sum with numpy from the posterior's own variables, encoded as
Bambi encodes them (formulae's treatment coding):

- a term is named as in the posterior (`arm`, `arm:wave`, `arm|municipality`, `1|municipality:consultant_id`);
- a categorical term's columns are its posterior coordinates (`intensive`, `intensive, 2`): a row
  has a one in the column whose label is its level(s), joined by ", ", and zeros everywhere else,
  so the reference level (control, the first wave) is the row with no column; numeric parts multiply;
- a group factor's levels are the posterior's, a nested factor `a:b` spelled `A:B` as
  `modelling.frames.with_nested_columns` spells it; a row of a level not in the posterior is an error,
  as in Bambi without `sample_new_groups` (new towns come from `estimands.query.new_town_posterior`).

What the linear predictor means (an inverse link, thresholds) is the family's:
`Family.response_parameter`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import xarray as xr

from bayes_trial.modelling.frames import group_terms, without_group_terms

INTERCEPT = "Intercept"
# The participant intercepts' names, shared with `sampling.fastpaths` (which imports PyMC, so they live here).
PARTICIPANT = "participant_id"
PARTICIPANT_TERM = f"1|{PARTICIPANT}"
PARTICIPANT_DIM = f"{PARTICIPANT}__factor_dim"
_NO_INTERCEPT = ("0", "-1", "- 1")


@dataclass(frozen=True)
class Term:
    """One additive part of the linear predictor: a posterior variable and how rows select from it.

    Attributes
    ----------
    variable : str
        Posterior variable (`arm:wave`, `arm|municipality`).
    parts : tuple of str
        Data columns multiplied in the term's column (empty for an intercept).
    factor : str or None
        Grouping factor of a group-specific term (`municipality:consultant_id`), else None.
    """

    variable: str
    parts: tuple[str, ...]
    factor: str | None = None


def _expanded(piece: str) -> list[str]:
    """`a*b` as its terms a, b, a:b (and so on for more factors); any other term as itself."""
    factors = [f.strip() for f in piece.split("*")]
    return [":".join(combo) for size in range(1, len(factors) + 1) for combo in combinations(factors, size)]


def formula_terms(formula: str, posterior: xr.Dataset) -> list[Term]:
    """The terms of `formula` (as its model names them) that the posterior holds draws of.

    Raises
    ------
    ValueError
        If the posterior lacks a term of the formula, or a term is more than columns joined by `:`
        (functions such as `scale(x)`), which this evaluator does not rebuild.
    """
    rhs = formula.split("~", 1)[1]
    common = [p.strip() for p in without_group_terms(rhs).split("+")]
    terms = [Term(INTERCEPT, ())] if INTERCEPT in posterior else []
    names = [t for piece in common if piece and piece not in ("1", *_NO_INTERCEPT) for t in _expanded(piece)]
    for expr, factor in group_terms(formula):
        pieces = [p.strip() for p in expr.split("+")]
        if not any(p in _NO_INTERCEPT for p in pieces):
            names.append(f"1|{factor}")
        names += [f"{t}|{factor}" for piece in pieces if piece not in ("1", *_NO_INTERCEPT) for t in _expanded(piece)]
    for name in dict.fromkeys(names):
        expr, _, factor = name.partition("|")
        parts = tuple(p.strip() for p in expr.split(":")) if expr != "1" else ()
        if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
            raise ValueError(f"term {name!r}: only columns joined by ':' can be evaluated from stored draws")
        if name not in posterior:
            raise ValueError(f"term {name!r} of {formula!r} has no draws in the posterior")
        terms.append(Term(name, parts, factor or None))
    return terms


def _is_categorical(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object or pd.api.types.is_string_dtype(
        values) or pd.api.types.is_bool_dtype(values)


def _row_columns(parts: tuple[str, ...], data: pd.DataFrame, labels: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's column of a term (-1: none, the reference level) and its value there."""
    value = np.ones(len(data))
    categorical = []
    for part in parts:
        values = data[part]
        if _is_categorical(values):
            categorical.append(values.astype(str).to_numpy(dtype=object))
        else:
            value = value * values.to_numpy(dtype=float)
    if labels is None:
        return np.zeros(len(data), dtype=int), value
    row_labels = categorical[0] if len(categorical) == 1 else np.array(
        [", ".join(combo) for combo in zip(*categorical)], dtype=object)
    return pd.Index(labels).get_indexer(row_labels), value


def _factor_levels(factor: str, data: pd.DataFrame) -> np.ndarray:
    pieces = [data[p.strip()].astype(str) for p in factor.split(":")]
    return pieces[0].str.cat(pieces[1:], sep=":").to_numpy(dtype=object) if len(pieces) > 1 else pieces[0].to_numpy(
        dtype=object)


def _draws(values: xr.DataArray, dims: list[str]) -> np.ndarray:
    return values.transpose("chain", "draw", *dims).to_numpy()


def linear_predictor(posterior: xr.Dataset, terms: list[Term], data: pd.DataFrame) -> np.ndarray:
    """Draws of the linear predictor of each row of `data`: an array (chain, draw, rows).

    Parameters
    ----------
    posterior
        The fit's posterior (or a changed copy, such as a new town's).
    terms
        The terms to sum (`formula_terms`, perhaps without some).
    data
        Rows in the columns of the fit's data; categorical columns keep the fit's levels.

    Raises
    ------
    ValueError
        If a row has a group level that the posterior has no draws of.
    """
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], len(data))
    eta = np.zeros(shape)
    for term in terms:
        values = posterior[term.variable]
        if term.factor is None:
            extra = [d for d in values.dims if d not in ("chain", "draw")]
            labels = [str(v) for v in values[extra[0]].to_numpy()] if extra else None
            column, value = _row_columns(term.parts, data, labels)
            draws = _draws(values, extra)
            beta = draws[..., np.maximum(column, 0)] if extra else draws[..., None]
            eta += beta * np.where(column >= 0, value, 0.0)
            continue
        factor_dim = next(d for d in values.dims if d.endswith("__factor_dim"))
        expr = [d for d in values.dims if d.endswith("__expr_dim")]
        levels = _factor_levels(term.factor, data)
        level = pd.Index(values[factor_dim].to_numpy().astype(str)).get_indexer(levels)
        if (level < 0).any():
            unseen = sorted(set(levels[level < 0]))
            raise ValueError(f"term {term.variable!r}: no draws for level(s) {', '.join(unseen[:5])} "
                             "(new groups are drawn by `new_town_posterior`)")
        labels = [str(v) for v in values[expr[0]].to_numpy()] if expr else None
        column, value = _row_columns(term.parts, data, labels)
        draws = _draws(values, [*expr, factor_dim])
        effects = draws[..., np.maximum(column, 0), level] if expr else draws[..., level]
        eta += effects * np.where(column >= 0, value, 0.0)
    return eta
