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
rebuild and SBC all resolve `auto` to the same numbers for the same rows. (When the families move
into Family objects, `RULES` moves with them.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .spec import AUTO, ModelSpec, Prior

# Per family: the scale everything is stated in, and the multipliers of that scale.
#   scale: "sd" (the outcome's SD) or a fixed number (logit and log links: a unit on the link scale)
#   intercept: (location, multiplier): location "mean" (outcome mean), "log_mean" (log of it) or 0
#   coefficient: multiplier for a dummy-coded (arm, wave, interactions) term; divided by SD(x) for a numeric one
#   group_sd: HalfStudentT(3, multiplier x scale) for every group term's SD
#   aux: the family's auxiliary parameter, or None
RULES: dict[str, dict] = {
    # Intercept: the control mean in the reference town within about one outcome SD of the observed mean.
    # The outcome's SD already holds every variance component, so each group SD gets a quarter of it
    # (a Student-t(3) tail still allows one component to take most of it); with 0.5 the prior
    # predictive of nl7's wellbeing put 13% outside 0-10, with 0.25 8% (sigma still Exponential).
    "gaussian": {"scale": "sd", "intercept": ("mean", 0.5), "coefficient": 0.5, "group_sd": 0.25,
                 "aux": ("sigma", "Exponential")},
    # Logit scale (rstanarm's normal(0, 2.5) intercept, narrowed): a baseline between ~5% and ~95%;
    # arm log-odds ratios mostly within +-1 (odds ratios 1/2.7 to 2.7, about +-20 pp at 30%).
    "bernoulli": {"scale": 1.0, "intercept": (0, 1.5), "coefficient": 0.5, "group_sd": 0.5, "aux": None},
    # Monthly hazard: the baseline log-odds is far below 0 (a few % leave per month), so it is centred
    # on the observed monthly rate.
    "hazard": {"scale": 1.0, "intercept": ("logit_mean", 1.5), "coefficient": 0.5, "group_sd": 0.5, "aux": None},
    # Log scale: the intercept near the log of the mean count; rate ratios mostly within 0.6 to 1.65.
    # Counts multiply every log-scale spread (exp of a sum), so 0.5 here gave the simulated job
    # applications a prior P(|effect| > 10 in four weeks) of 15%, 0.25 gives 3.5% (prior-check).
    "negativebinomial": {"scale": 1.0, "intercept": ("log_mean", 1.0), "coefficient": 0.25, "group_sd": 0.25,
                         "aux": ("alpha", "HalfNormal")},
    # Latent logistic scale (SD pi/sqrt(3) = 1.8); thresholds keep Bambi's ordered default.
    "cumulative": {"scale": 1.0, "intercept": None, "coefficient": 0.5, "group_sd": 0.5, "aux": None},
}
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
        The spec's family (a key of `RULES`).
    prepared
        Model-ready data (`model.PreparedData`): the outcome and the predictors' columns.
    term_vars
        Columns of a coefficient's term (for the SD of a numeric predictor).
    """
    rule = RULES[family]
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

    description = formulae.model_description(formula)
    terms = []
    for term in description.terms:
        if term.name == "Intercept":
            if RULES[family]["intercept"] is not None:
                terms.append((term.name, "intercept", set()))
        elif "|" in term.name:
            terms.append((term.name, "group_sd", set()))
        else:
            terms.append((term.name, "coefficient", set(term.var_names)))
    if RULES[family]["aux"] is not None:
        terms.append((RULES[family]["aux"][0], "aux", set()))
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
