"""The Bambi model of a spec and its prepared data, with the spec's priors checked in the PyMC graph.

`NestedModel` builds each nested grouping factor (`(1|municipality:consultant_id)`) as one column of
the combinations observed in the data (see `modelling.frames`), so unobserved town x consultant
pairs never become levels.

Each group term is centred or non-centred as `modelling.parametrisation` chooses. Bambi has one switch for
the whole model (`noncentered`); here the model is built centred and each non-centred term gets a prior
whose distribution is `noncentred_normal`, Bambi's own non-centred form through its public custom-`dist`
hook.
"""

from __future__ import annotations

import bambi as bmb
import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.families.base import PreparedData
from bayes_trial.modelling import parametrisation
from bayes_trial.modelling.frames import resolve_priors, with_nested_columns
from bayes_trial.modelling.spec import AUTO, ModelSpec, check_prior_for_term


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


def noncentred_normal(name: str, mu, sigma, dims=None):
    """Normal(mu, sigma) as mu + sigma x `name_offset`, offset standard normal: Bambi's non-centred group effect."""
    import pymc as pm

    offset = pm.Normal(f"{name}_offset", mu=0, sigma=1, dims=dims)
    return pm.Deterministic(name, mu + offset * sigma, dims=dims)


def _bambi_prior(term: str, prior, centred: bool) -> bmb.Prior:
    distribution = bmb.Prior(prior.dist, **prior.params)
    if "|" in term:
        # A group-specific term's prior is stated for its standard deviation.
        return bmb.Prior("Normal", mu=0, sigma=distribution, dist=None if centred else noncentred_normal)
    return distribution


def valid_prior_terms(model: bmb.Model) -> list[str]:
    """Terms and auxiliary parameters that accept a prior."""
    parent = model.family.likelihood.parent
    terms = list(model.components[parent].terms)
    auxiliary = [p for p in model.family.likelihood.params if p != parent]
    return terms + auxiliary


def build(spec: ModelSpec, prepared: PreparedData) -> bmb.Model:
    """A built Bambi model (PyMC model in `model.backend.model`) with the spec's priors, `auto` ones resolved."""
    choices = parametrisation.choose(spec, prepared)
    spec = resolve_priors(spec, prepared).spec
    used = {term: prior for term, prior in spec.priors.items() if prior.dist != AUTO}  # AUTO left: a dropped term
    for term, prior in used.items():
        check_prior_for_term(term, prior, where=f"model {spec.name!r}")
    try:
        # Priors go in with the formula: Bambi 0.17 cannot auto-scale a default prior for a
        # multi-column term (a spline) in a logit model, so such a term needs its prior up front.
        model = NestedModel(prepared.formula, prepared.data, family=prepared.family, center_predictors=False,
                            noncentered=False, priors={
                                term: _bambi_prior(term, prior, term not in choices or choices[term].centred)
                                for term, prior in used.items()})
    except Exception as exc:  # formulae raises many types for bad formulas
        raise SpecError(f"model {spec.name!r}: Bambi cannot use formula {prepared.formula!r}: {str(exc).splitlines()[0]}") from None
    valid = valid_prior_terms(model)
    for term in spec.priors:
        dropped = "|" in term and term.split("|", 1)[1].strip() in prepared.dropped_factors
        if term not in valid and not dropped:
            raise SpecError(f"model {spec.name!r}: prior for unknown term {term!r}; valid terms: {', '.join(valid)}")
    model.build()
    model.parametrisation = choices
    check_priors_reached(model, spec)  # the resolved spec: `auto` priors must arrive as resolved too
    return model


def pymc_priors(model, spec: ModelSpec | None = None) -> pd.DataFrame:
    """Every prior as it stands in the PyMC graph, one row per term (defaults included).

    Read from the built PyMC model (`model`: a built Bambi model, or PyMC models in a list) rather
    than from Bambi's own records, so that a prior that the modelling library dropped or changed
    shows up as what it really is.
    """
    rows = []
    pymc_models = model if isinstance(model, list) else [model.backend.model]
    free = [rv for pymc_model in pymc_models for rv in pymc_model.free_RVs]
    free_names = {rv.name for rv in free}
    # Group effects, non-centred or centred: the prior is their SD's.
    priors = [rv for rv in free if not rv.name.endswith("_offset") and f"{rv.name}_sigma" not in free_names]
    graphs = [rv.owner.op.dist_params(rv.owner) for rv in priors]
    computed = iter(parameter_values([p for rv_graphs in graphs for p in rv_graphs]))
    for rv, rv_graphs in zip(priors, graphs):
        op = rv.owner.op
        values = [next(computed).ravel() for _ in rv_graphs]
        names = [n for n in _PYMC_PARAM_NAMES.get(type(op).__name__, ())] or [f"p{i}" for i in range(len(values))]
        params = {n: float(v[0]) if np.all(v == v[0]) else v.round(4).tolist() for n, v in zip(names, values)}
        term = rv.name[: -len("_sigma")] if rv.name.endswith("_sigma") and "|" in rv.name else rv.name
        user = spec is not None and term in spec.priors and spec.priors[term].dist != AUTO
        set_by = "user" if user else "default" if term == "threshold" else "auto"
        rows.append({"term": term, "parameter": rv.name, "distribution": type(op).__name__.removesuffix("RV"),
                     "params": params, "set_by": set_by})
    return pd.DataFrame(rows)


def parameter_values(params: list) -> list[np.ndarray]:
    """The values of PyTensor expressions without random inputs (prior parameters), computed together.

    One function for all of them, run by PyTensor's Python linker without graph rewrites: a
    parameter is a constant or a broadcast of one, and compiling C code for each (`eval`) took
    0.4-0.5 s of a refit (the model is checked three or four times), against 0.01 s this way.
    """
    import pytensor
    from pytensor.compile.mode import Mode

    if not params:
        return []
    return [np.asarray(v) for v in pytensor.function([], params, mode=Mode(linker="py", optimizer=None))()]


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
        if rows.empty or prior.dist == AUTO:
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


def stored_variables(pymc_model) -> list[str]:
    """Parameters worth storing: free and deterministic variables without an observation dimension.

    Row-sized deterministics (Bambi's `mu`, a cumulative model's category probabilities `p`) are
    recomputed by `predict` when needed; storing them costs memory and, for cumulative models, makes
    nutpie reject the category dimension that `p` shares with the thresholds.
    """
    dims = pymc_model.named_vars_to_dims
    return [var.name for var in [*pymc_model.free_RVs, *pymc_model.deterministics]
            if "__obs__" not in dims.get(var.name, ())]
