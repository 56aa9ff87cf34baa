"""`auto` priors: weakly informative defaults scaled to the outcome, one rule per family in one table.

A spec that leaves a term's prior unset, or writes `auto`, gets the prior that `auto_prior` gives
for the outcome data and family. The form follows rstanarm's autoscaling (priors on the outcome's
scale: the outcome's SD for a Gaussian outcome, fixed numbers on the logit/log scale; residual SD
Exponential(1 / SD(y)); coefficients of a numeric predictor divided by that predictor's SD; Gabry
& Goodrich, "Prior distributions for rstanarm models", 2020) and brms's Student-t(3) with scale
for standard deviations (`student_t(3, 0, 2.5 * scale)`, Bürkner 2017). The multipliers are smaller
than those packages' 2.5 because these are randomised trials of social-policy interventions: an arm
effect of one outcome SD is already large (standardised effects of such trials are mostly below
0.3), and the outcome's SD is the sum of all variance components, not the scale of each one
(`bayes-trial prior-check`, see README "Priors").

The rule needs the model-ready data only, so a fit, `priors --data`, `prior-check`, a stored fit's
rebuild and SBC all resolve `auto` to the same numbers for the same rows. Each family states its
rule (`Family.auto_rule`, with the reasons for its numbers); a family without one leaves unset
priors to Bambi's defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trial.families import registry
from bayes_trial.modelling.spec import AUTO, ModelSpec, Prior

HALF_T_NU = 3


@dataclass(frozen=True)
class Resolved:
    """A spec with every `auto` or unset prior replaced by numbers, and why each became what it is."""

    spec: ModelSpec
    reasons: dict[str, str]


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def outcome_values(prepared) -> np.ndarray:
    """The outcome column of the model rows (category positions for ordinal outcomes)."""
    data = prepared.data
    y = data[prepared.response]
    if isinstance(y.dtype, pd.CategoricalDtype):
        return y.cat.codes.to_numpy(dtype=float)
    return y.to_numpy(dtype=float)


def _outcome_summary(prepared) -> tuple[float, float]:
    """(mean, SD) of the outcome per person; for binomial cells the pooled rate and its binomial SD."""
    y = outcome_values(prepared)
    if prepared.aggregated:
        rate = float(np.sum(y) / np.sum(prepared.weights))
        return rate, float(np.sqrt(rate * (1 - rate)))
    return float(np.mean(y)), float(np.std(y, ddof=1)) if len(y) > 1 else 1.0


def _numeric_sd(term_vars: set[str], data: pd.DataFrame) -> float | None:
    """SD of the product of a term's numeric (non 0/1) columns; None when the term is dummy-coded only."""
    numeric = [v for v in sorted(term_vars) if v in data and pd.api.types.is_numeric_dtype(data[v])
               and not isinstance(data[v].dtype, pd.CategoricalDtype) and not set(pd.unique(data[v])) <= {0, 1}]
    if not numeric:
        return None
    product = np.prod([data[v].to_numpy(dtype=float) for v in numeric], axis=0)
    sd = float(np.std(product, ddof=1))
    return sd if sd > 0 else None


def auto_prior(term: str, kind: str, family: str, prepared, term_vars: set[str] = frozenset()) -> tuple[Prior, str]:
    """The `auto` prior of one term and the reason, e.g. "auto: 0.5 x SD(wellbeing)=1.83 -> Normal(0, 0.915)".

    Parameters
    ----------
    term
        Term name as Bambi gives it (`Intercept`, `arm`, `1|municipality`, `sigma`).
    kind
        "intercept", "coefficient", "group_sd" or "aux".
    family
        The spec's family (its `Family.auto_rule` gives the numbers).
    prepared
        Model-ready data (`model.PreparedData`): the outcome and the predictors' columns.
    term_vars
        Columns of a coefficient's term (for the SD of a numeric predictor).
    """
    rule = registry.get(family).auto_rule
    mean, sd = _outcome_summary(prepared)
    outcome = prepared.response
    if rule["scale"] == "sd":
        scale, scale_text = sd, f"SD({outcome})={sd:.3g}"
    else:
        scale, scale_text = float(rule["scale"]), "1 on the link scale"
    if kind == "intercept":
        location, multiplier = rule["intercept"]
        centre = {"mean": mean, "log_mean": np.log(max(mean, 1e-3)),
                  "logit_mean": np.log(max(mean, 1e-4) / max(1 - mean, 1e-4))}.get(location, 0.0)
        centre_text = {"mean": f"mean({outcome})", "log_mean": f"log mean({outcome})",
                       "logit_mean": f"logit of the mean rate of {outcome}"}.get(location, "0")
        prior = Prior("Normal", {"mu": _round(centre), "sigma": _round(multiplier * scale)})
        return prior, f"auto: {centre_text}={centre:.3g}, {multiplier:g} x {scale_text} -> {prior}"
    if kind == "coefficient":
        x_sd = _numeric_sd(term_vars, prepared.data)
        value = rule["coefficient"] * scale / (x_sd or 1.0)
        per = f" / SD({'*'.join(sorted(term_vars))})={x_sd:.3g}" if x_sd else ""
        prior = Prior("Normal", {"mu": 0.0, "sigma": _round(value)})
        return prior, f"auto: {rule['coefficient']:g} x {scale_text}{per} -> {prior}"
    if kind == "group_sd":
        prior = Prior("HalfStudentT", {"nu": float(HALF_T_NU), "sigma": _round(rule["group_sd"] * scale)})
        return prior, f"auto: Student-t(3) with scale {rule['group_sd']:g} x {scale_text} -> {prior}"
    name, dist = rule["aux"]
    if dist == "Exponential":  # rstanarm's exponential(1 / SD(y)) for the residual SD
        prior = Prior("Exponential", {"lam": _round(1 / scale)})
        return prior, f"auto: rate 1 / {scale_text} -> {prior}"
    # Negative binomial dispersion: Bambi's alpha is the size (large = Poisson); HalfNormal(5) leaves both.
    prior = Prior("HalfNormal", {"sigma": 5.0})
    return prior, f"auto: fixed for {name} (from Poisson-like to strongly overdispersed) -> {prior}"


def model_terms(formula: str, family: str) -> list[tuple[str, str, set[str]]]:
    """(term, kind, columns) for every term of `formula` that takes a prior, auxiliary parameters last."""
    import formulae

    rule = registry.get(family).auto_rule
    if rule is None:
        return []
    description = formulae.model_description(formula)
    terms = []
    for term in description.terms:
        if term.name == "Intercept":
            if rule["intercept"] is not None:
                terms.append((term.name, "intercept", set()))
        elif "|" in term.name:
            terms.append((term.name, "group_sd", set()))
        else:
            terms.append((term.name, "coefficient", set(term.var_names)))
    if rule["aux"] is not None:
        terms.append((rule["aux"][0], "aux", set()))
    return terms


def resolve(spec: ModelSpec, prepared) -> Resolved:
    """`spec` with every `auto` or unset prior of the model's terms replaced by `auto_prior`'s numbers.

    Priors written as numbers stay; an `auto` prior for a term these data dropped stays `auto` (it
    is not used). Ordinal thresholds keep Bambi's default (ordered normals) and are not listed.
    """
    priors, reasons = dict(spec.priors), {}
    for term, kind, columns in model_terms(prepared.formula, spec.family):
        if term in priors and priors[term].dist != AUTO:
            continue
        priors[term], reasons[term] = auto_prior(term, kind, spec.family, prepared, columns)
    return Resolved(dataclasses.replace(spec, priors=priors), reasons)
