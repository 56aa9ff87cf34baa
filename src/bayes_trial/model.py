"""From validated data and a spec to a built Bambi model.

`prepare` turns trial rows into model-ready data: factors in a fixed order (the control arm first, so
that Bambi's treatment coding compares every arm with control), binary outcomes aggregated into
binomial counts per cell when no person-level column is in the formula, and grouping terms that the
data cannot inform dropped with a note. `build` gives the Bambi model with the spec's priors.

Nested grouping factors (`(1|municipality:consultant_id)`) have one level per combination observed in
the model-ready data, not one per pair of levels: Bambi would cross every town with every consultant
id (595 levels for the 84 consultants of `nl7`), and the unobserved pairs only carry their prior into
the fit, its diagnostics and its file. `NestedModel` builds each such factor as one column of the
observed combinations while the term keeps its name (`1|municipality:consultant_id`), so priors,
stored posteriors and level names (`Oss:c03`) read as before. Persons without a consultant get one
`none:ARM` pseudo-consultant per arm; nested in the town, that is one level per town and arm, never
shared between towns.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import bambi as bmb
import numpy as np
import pandas as pd

from .data import SOURCE_ATTR, missing_outcome_counts
from .errors import DataError, SpecError
from .spec import ModelSpec, check_prior_for_term

TRIALS = "n_trials"
NO_CONSULTANT = "none"
ID_COLUMNS = ("participant_id", "municipality", "consultant_id")
FACTOR_COLUMNS = ("arm", "wave")
_GROUP_TERM = re.compile(r"\(\s*([^()|]+?)\s*\|\s*([^()|]+?)\s*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*[(=])")  # names, not functions or keywords


@dataclass(frozen=True)
class PreparedData:
    """Model-ready data and how they relate to the spec."""

    data: pd.DataFrame
    formula: str
    family: str
    response: str
    aggregated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    dropped_factors: tuple[str, ...] = field(default_factory=tuple)
    #: Rows left out for a missing outcome: (arm, wave or None, n_dropped, n_total) per arm and wave.
    missing: tuple[tuple, ...] = field(default_factory=tuple)

    @property
    def weights(self) -> np.ndarray:
        """Persons behind each row: the binomial trials for aggregated cells, else one."""
        if self.aggregated:
            return self.data[TRIALS].to_numpy(dtype=float)
        return np.ones(len(self.data))


def nested_factors(formula: str) -> list[str]:
    """Grouping factors of the form `a:b` (nested or crossed factors), in order of appearance."""
    return list(dict.fromkeys(factor for _, factor in group_terms(formula) if ":" in factor))


def with_nested_columns(formula: str, data: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The formula and a copy of the data as Bambi gets them: each `a:b` factor one column of observed pairs.

    The column is named `a:b` (backticks in the formula), so the term is still `1|a:b` and its levels
    are still spelled `A:B`; only combinations present in `data` become levels.
    """
    factors = [f for f in nested_factors(formula) if all(p.strip() in data for p in f.split(":"))]
    if not factors:
        return formula, data
    data = data.copy()
    for factor in factors:
        parts = [p.strip() for p in factor.split(":")]
        # Vectorised: a row-wise join took 8 s for 50,000 rows.
        pieces = [data[p].astype(str) for p in parts]
        data[factor] = pieces[0].str.cat(pieces[1:], sep=":").astype(object)
        formula = re.sub(r"\|\s*" + re.escape(factor) + r"\s*\)", f"|`{factor}`)", formula)
    return formula, data


class NestedModel(bmb.Model):
    """A Bambi model whose `a:b` grouping factors have only the observed combinations as levels.

    `predict` on new data rebuilds those columns from the parts, so a row of a town or consultant
    not in the fit is a new group, as in a plain Bambi model.
    """

    def __init__(self, formula: str, data: pd.DataFrame, **kwargs):
        self.nested_formula = formula
        formula, data = with_nested_columns(formula, data)
        super().__init__(formula, data, **kwargs)

    def predict(self, idata, kind="response_params", data=None, **kwargs):
        if data is not None:
            _, data = with_nested_columns(self.nested_formula, data)
        return super().predict(idata, kind=kind, data=data, **kwargs)


def formula_columns(formula: str) -> list[str]:
    """Names in a formula's right-hand side, in order of appearance (functions excluded)."""
    rhs = formula.split("~", 1)[1]
    names = [n for n in _IDENTIFIER.findall(rhs) if not n.isdigit()]
    return list(dict.fromkeys(names))


def group_terms(formula: str) -> list[tuple[str, str]]:
    """`(expr|factor)` terms as (expr, factor) pairs."""
    return [(expr.strip(), factor.strip()) for expr, factor in _GROUP_TERM.findall(formula)]


def fixed_terms(formula: str) -> set[str]:
    """Variables in the common (population-level) part of the formula."""
    rhs = _GROUP_TERM.sub("", formula.split("~", 1)[1])
    return set(_IDENTIFIER.findall(rhs))


def arm_levels(arms: pd.Series, control_arm: str) -> list[str]:
    """The control arm first, then the others in sorted order."""
    present = sorted(set(arms.dropna().astype(str)))
    if control_arm not in present:
        raise DataError(f"control arm {control_arm!r} not found in column arm; arms present: {', '.join(present)}")
    return [control_arm] + [a for a in present if a != control_arm]


def _drop_uninformed_terms(formula: str, data: pd.DataFrame) -> tuple[str, list[str], list[str]]:
    """Remove group terms whose factor has one level, or only repeats a fixed effect.

    With one municipality a `(arm|municipality)` term has nothing to learn from, and
    `(1|municipality:wave)` duplicates the fixed wave effects: both would only slow sampling.
    """
    notes, dropped = [], []
    fixed = fixed_terms(formula)
    for expr, factor in group_terms(formula):
        parts = [p.strip() for p in factor.split(":")]
        varying = [p for p in parts if data[p].nunique() > 1]
        if not varying or set(varying) <= fixed:
            formula = re.sub(r"\+?\s*\(\s*" + re.escape(expr) + r"\s*\|\s*" + re.escape(factor) + r"\s*\)", "", formula)
            why = "has one level" if not varying else f"only repeats the fixed effect of {', '.join(varying)}"
            notes.append(f"dropped ({expr}|{factor}): {factor} {why} in these data")
            dropped.append(factor)
    formula = re.sub(r"~\s*\+", "~ ", formula)
    return " ".join(formula.split()), notes, dropped


def model_rows(spec: ModelSpec, frame: pd.DataFrame, columns: list[str],
               carry: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[str]]:
    """The outcome and `columns` of the complete rows, factors coded; `carry` columns ride along unchecked."""
    missing = [c for c in [spec.outcome, *columns, *carry] if c not in frame.columns]
    if missing:
        raise DataError(
            f"model {spec.name!r}: formula names column(s) {', '.join(missing)} not in the {spec.table} data "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    used = list(dict.fromkeys([spec.outcome, *columns]))
    data = frame[used + [c for c in carry if c not in used]].copy()
    notes = []
    if "consultant_id" in data:
        no_consultant = data["consultant_id"].isna() | (data["consultant_id"].astype(str).str.strip() == "")
        if no_consultant.any():
            arm_of = frame.loc[no_consultant, "arm"].astype(str)
            data.loc[no_consultant, "consultant_id"] = NO_CONSULTANT + ":" + arm_of
            notes.append(f"{int(no_consultant.sum())} rows without a consultant: one '{NO_CONSULTANT}:ARM' "
                         "pseudo-consultant per arm (per town and arm in a municipality:consultant_id term)")
    incomplete = data[used].isna().any(axis=1)
    if incomplete.any():
        no_outcome = data[spec.outcome].isna()
        if no_outcome.any():
            notes.append(f"{int(no_outcome.sum())} rows without {spec.outcome} left out (counted per arm and wave)")
        if (incomplete & ~no_outcome).any():
            notes.append(f"{int((incomplete & ~no_outcome).sum())} rows with a missing value in "
                         f"{', '.join(used[1:])} left out")
        data = data.loc[~incomplete]
    where = f"{frame.attrs[SOURCE_ATTR]}: model {spec.name!r}" if frame.attrs.get(SOURCE_ATTR) else f"model {spec.name!r}"
    if data.empty:
        raise DataError(f"{where}: no complete rows for {', '.join(used)}")
    if "arm" in data:
        _check_contrast(spec, data, where)
    if "wave" in data and "wave" in fixed_terms(spec.formula) and data["wave"].nunique() < 2:
        raise DataError(f"{where}: every row with {spec.outcome} known is from wave {data['wave'].iloc[0]}; "
                        "the formula's wave effects need outcomes from at least two waves")
    for col in ID_COLUMNS:
        if col in data:
            data[col] = data[col].astype(str).astype(object)
    if "participant_id" in data:
        # Stored fits carry the model-ready rows; pseudonyms keep real participant ids out of every file.
        codes, _ = pd.factorize(data["participant_id"])
        data["participant_id"] = pd.Series([f"p{code + 1:05d}" for code in codes], index=data.index, dtype=object)
    if "arm" in data:
        data["arm"] = pd.Categorical(data["arm"].astype(str), categories=arm_levels(frame["arm"], spec.control_arm), ordered=True)
    if "wave" in data:
        data["wave"] = pd.Categorical(data["wave"].astype(int), categories=sorted(data["wave"].astype(int).unique()), ordered=True)
    return data, notes


def _check_contrast(spec: ModelSpec, data: pd.DataFrame, where: str) -> None:
    """Refuse data that cannot compare an arm with control (one row, one arm, no control rows).

    Bambi would otherwise fail deep inside model building or sampling with a traceback.
    """
    counts = data["arm"].astype(str).value_counts()
    rows = f"{len(data)} row{'s' if len(data) != 1 else ''} with {spec.outcome} known"
    arms = ", ".join(f"{arm} ({n})" for arm, n in counts.sort_index().items())
    if spec.control_arm not in counts.index:
        raise DataError(f"{where}: no rows of the control arm {spec.control_arm!r} have {spec.outcome} ({rows}: {arms}); "
                        "an effect needs outcomes in the control arm and at least one other arm")
    if len(counts) < 2:
        raise DataError(f"{where}: only the control arm {spec.control_arm!r} has {spec.outcome} ({rows}); "
                        "an effect needs outcomes in the control arm and at least one other arm")


def missing_outcomes(prepared) -> pd.DataFrame:
    """Rows left out for a missing outcome, per arm and wave: arm, wave, n_dropped, n_total.

    `prepared` is a :class:`PreparedData` or a fit (anything with a ``prepared`` attribute); the
    counts are stored with the fit. ``wave`` is ``None`` for register outcomes. Empty for fits
    stored before these counts were kept.
    """
    prepared = getattr(prepared, "prepared", prepared)
    return pd.DataFrame(list(prepared.missing), columns=["arm", "wave", "n_dropped", "n_total"])


def prepare(spec: ModelSpec, frame: pd.DataFrame) -> PreparedData:
    """Model-ready data for `spec` from a validated survey or register table."""
    counts = missing_outcome_counts(frame, spec.outcome, spec.control_arm) if spec.outcome in frame else None
    missing = () if counts is None else tuple(
        (str(r.arm), None if r.wave is None or pd.isna(r.wave) else int(r.wave), int(r.n_dropped), int(r.n_total))
        for r in counts.itertuples(index=False))
    return dataclasses.replace(_prepare(spec, frame), missing=missing)


def _prepare(spec: ModelSpec, frame: pd.DataFrame) -> PreparedData:
    if spec.family == "hazard":
        from .hazard import prepare as prepare_hazard

        return prepare_hazard(spec, frame)
    columns = formula_columns(spec.formula)
    data, notes = model_rows(spec, frame, columns)
    data[spec.outcome] = _outcome_values(spec, data[spec.outcome])

    formula, dropped_notes, dropped = _drop_uninformed_terms(spec.formula, data)
    notes.extend(dropped_notes)
    person_level = [c for c in columns if c not in ("arm", "wave", "municipality", "consultant_id")]
    if spec.family == "bernoulli" and spec.aggregate and not person_level:
        cells = (
            data.groupby([c for c in columns], observed=True, sort=True)[spec.outcome]
            .agg(["sum", "size"])
            .reset_index()
            .rename(columns={"sum": spec.outcome, "size": TRIALS})
        )
        notes.append(f"{len(data)} persons aggregated into {len(cells)} binomial cells")
        rhs = formula.split("~", 1)[1]
        return PreparedData(cells, f"p({spec.outcome}, {TRIALS}) ~{rhs}", "binomial", spec.outcome, True, tuple(notes), tuple(dropped))
    return PreparedData(data.reset_index(drop=True), formula, spec.family, spec.outcome, False, tuple(notes), tuple(dropped))


def _outcome_values(spec: ModelSpec, values: pd.Series) -> pd.Series:
    if spec.family == "cumulative":
        levels = sorted(pd.unique(values.astype(int)))
        return pd.Categorical(values.astype(int), categories=levels, ordered=True)
    if spec.family == "bernoulli":
        bad = ~values.isin([0, 1])
        if bad.any():
            raise DataError(f"model {spec.name!r}: outcome {spec.outcome} must be 0/1 for family bernoulli, found {values[bad].iloc[0]!r}")
        return values.astype(int)
    if spec.family == "negativebinomial":
        bad = (values < 0) | (values != np.round(values))
        if bad.any():
            raise DataError(f"model {spec.name!r}: outcome {spec.outcome} must be a non-negative count, found {values[bad].iloc[0]!r}")
        return values.astype(int)
    return values.astype(float)


def _bambi_prior(term: str, prior) -> bmb.Prior:
    distribution = bmb.Prior(prior.dist, **prior.params)
    if "|" in term:
        # A group-specific term's prior is stated for its standard deviation.
        return bmb.Prior("Normal", mu=0, sigma=distribution)
    return distribution


def valid_prior_terms(model: bmb.Model) -> list[str]:
    """Terms and auxiliary parameters that accept a prior."""
    parent = model.family.likelihood.parent
    terms = list(model.components[parent].terms)
    auxiliary = [p for p in model.family.likelihood.params if p != parent]
    return terms + auxiliary


def build(spec: ModelSpec, prepared: PreparedData) -> bmb.Model:
    """A built Bambi model (PyMC model in `model.backend.model`) with the spec's priors."""
    for term, prior in spec.priors.items():
        check_prior_for_term(term, prior, where=f"model {spec.name!r}")
    try:
        # Priors go in with the formula: Bambi 0.17 cannot auto-scale a default prior for a
        # multi-column term (a spline) in a logit model, so such a term needs its prior up front.
        model = NestedModel(prepared.formula, prepared.data, family=prepared.family, center_predictors=False,
                            priors={term: _bambi_prior(term, prior) for term, prior in spec.priors.items()})
    except Exception as exc:  # formulae raises many types for bad formulas
        raise SpecError(f"model {spec.name!r}: Bambi cannot use formula {prepared.formula!r}: {str(exc).splitlines()[0]}") from None
    valid = valid_prior_terms(model)
    for term in spec.priors:
        dropped = "|" in term and term.split("|", 1)[1].strip() in prepared.dropped_factors
        if term not in valid and not dropped:
            raise SpecError(f"model {spec.name!r}: prior for unknown term {term!r}; valid terms: {', '.join(valid)}")
    model.build()
    check_priors_reached(model, spec)
    return model


def pymc_priors(model, spec: ModelSpec | None = None) -> pd.DataFrame:
    """Every prior as it stands in the PyMC graph, one row per term (defaults included).

    Read from the built PyMC model (`model`: a built Bambi model, or PyMC models in a list) rather
    than from Bambi's own records, so that a prior that the modelling library dropped or changed
    shows up as what it really is.
    """
    rows = []
    pymc_models = model if isinstance(model, list) else [model.backend.model]
    for rv in [rv for pymc_model in pymc_models for rv in pymc_model.free_RVs]:
        if rv.name.endswith("_offset"):
            continue
        op = rv.owner.op
        values = [np.asarray(p.eval()).ravel() for p in op.dist_params(rv.owner)]
        names = [n for n in _PYMC_PARAM_NAMES.get(type(op).__name__, ())] or [f"p{i}" for i in range(len(values))]
        params = {n: float(v[0]) if np.all(v == v[0]) else v.round(4).tolist() for n, v in zip(names, values)}
        term = rv.name[: -len("_sigma")] if rv.name.endswith("_sigma") and "|" in rv.name else rv.name
        user = spec is not None and term in spec.priors
        rows.append({"term": term, "parameter": rv.name, "distribution": type(op).__name__.removesuffix("RV"),
                     "params": params, "set_by": "user" if user else "default"})
    return pd.DataFrame(rows)


_PYMC_PARAM_NAMES = {
    "NormalRV": ("mu", "sigma"), "HalfNormalRV": ("loc", "sigma"), "StudentTRV": ("nu", "mu", "sigma"),
    "HalfStudentTRV": ("nu", "sigma"), "HalfCauchyRV": ("beta",), "CauchyRV": ("alpha", "beta"),
    "ExponentialRV": ("scale",), "GammaRV": ("alpha", "scale"), "InvGammaRV": ("alpha", "beta"),
    "LogNormalRV": ("mu", "sigma"), "UniformRV": ("lower", "upper"), "BetaRV": ("alpha", "beta"),
    "LogisticRV": ("mu", "s"),
}


def _graph_form(prior) -> tuple[str, dict[str, float]]:
    """How a spec prior appears in PyMC's graph (some distributions are stored by scale, not rate)."""
    p = prior.params
    if prior.dist == "Exponential":
        return "ExponentialRV", {"scale": 1 / p["lam"]}
    if prior.dist == "Gamma":
        return "GammaRV", {"alpha": p["alpha"], "scale": 1 / p["beta"]}
    name = {"InverseGamma": "InvGammaRV"}.get(prior.dist, f"{prior.dist}RV")
    return name, dict(p)


def check_priors_reached(model: bmb.Model, spec: ModelSpec) -> None:
    """Fail loudly if a user prior did not arrive in the PyMC model unchanged."""
    graph = pymc_priors(model, spec)
    for term, prior in spec.priors.items():
        rows = graph[graph["term"] == term]
        if rows.empty:
            continue  # a term dropped because the data cannot inform it (noted in prepare)
        op_name, expected = _graph_form(prior)
        row = rows.iloc[0]
        found = row["params"]
        same = row["distribution"] + "RV" == op_name and all(
            key in found and np.allclose(found[key], value) for key, value in expected.items()
        )
        if not same:
            raise SpecError(
                f"model {spec.name!r}: prior for {term!r} did not reach the PyMC model: asked {prior}, "
                f"model has {row['distribution']}{found}"
            )
