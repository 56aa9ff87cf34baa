"""Centred or non-centred group effects, chosen per group term from the data (spec key `parametrisation`).

A group effect u_j ~ Normal(0, tau) can be sampled as itself (centred) or as tau x z_j with z_j ~
Normal(0, 1) (non-centred). Which one samples well depends on how much the data say about each level
next to what the prior says (Betancourt & Girolami, "Hamiltonian Monte Carlo for hierarchical models",
2015; Papaspiliopoulos, Roberts & Sköld 2007): when the likelihood pins u_j down far more tightly than
tau does, the non-centred form has a funnel between z_j and tau, and the centred form none; when the
data say little, it is the other way round.

The default is non-centred for every term (as Bambi's). `auto` measures this per term: the expected
Fisher information about one level's coefficient (persons in the level x the information one person
gives about the linear predictor, `Family.person_information`) times the squared scale of the term's
SD prior, i.e. the prior variance of u_j over its sampling variance. A term is centred when that
ratio is at least `CENTRED_AT` for its *least* informed coefficient: one level with no data (a town
without an arm, for an `(arm|town)` slope) keeps a funnel in the centred form, so such a term stays
non-centred. `centred` or `noncentred` set every term; a table sets terms by name (the others non-
centred).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.families import registry
from bayes_trial.families.base import PreparedData
from bayes_trial.modelling.frames import resolve_priors, with_nested_columns
from bayes_trial.modelling.spec import AUTO, CENTRED, NONCENTRED, ModelSpec, Prior

#: Least prior-to-sampling variance ratio (over a term's coefficients) at which `auto` centres a term.
CENTRED_AT = 10.0


@dataclass(frozen=True)
class Choice:
    """How one group term is parametrised, who chose it, and why."""

    term: str
    parametrisation: str
    set_by: str  # "auto" or "spec"
    reason: str

    @property
    def centred(self) -> bool:
        return self.parametrisation == CENTRED


def prior_scale(prior: Prior) -> float:
    """A typical value of a standard deviation under its prior (the scale parameter, or the mean)."""
    p = prior.params
    scales = {
        "HalfNormal": lambda: p["sigma"], "HalfStudentT": lambda: p["sigma"], "HalfCauchy": lambda: p["beta"],
        "Exponential": lambda: 1 / p["lam"], "Gamma": lambda: p["alpha"] / p["beta"],
        "InverseGamma": lambda: p["beta"] / max(p["alpha"] - 1, 1.0), "LogNormal": lambda: float(np.exp(p["mu"])),
        "Uniform": lambda: (p["lower"] + p["upper"]) / 2, "Beta": lambda: p["alpha"] / (p["alpha"] + p["beta"]),
    }
    return float(scales[prior.dist]())


def level_information(term: str, prepared: PreparedData, per_person: float) -> np.ndarray:
    """Expected Fisher information about each coefficient of group term `expr|factor` (one per level and column).

    Coefficients that no row informs (a town without an arm) count as zero. A numeric column weighs each
    row by its squared value.
    """
    expr, factor = (part.strip() for part in term.split("|", 1))
    _, data = with_nested_columns(f"y ~ (1|{factor})", prepared.data)
    information = pd.Series(prepared.weights * per_person, index=data.index)
    levels = pd.Index(pd.unique(data[factor]))
    if expr == "1":
        return information.groupby(data[factor]).sum().reindex(levels, fill_value=0).to_numpy()
    columns = [c.strip() for c in expr.split(":")]
    categorical = [c for c in columns if not pd.api.types.is_numeric_dtype(data[c]) or isinstance(
        data[c].dtype, pd.CategoricalDtype)]
    for column in [c for c in columns if c not in categorical]:
        information = information * data[column].to_numpy(dtype=float) ** 2
    if not categorical:
        return information.groupby(data[factor]).sum().reindex(levels, fill_value=0).to_numpy()
    # Treatment coding: a categorical column's first level is the reference, not a coefficient.
    keys = [data[factor], *[data[c].astype(str) for c in categorical]]
    per_cell = information.groupby(keys).sum()
    contrasts = [_levels(data[c])[1:] for c in categorical]
    cells = pd.MultiIndex.from_product([levels, *contrasts])
    return per_cell.reindex(cells, fill_value=0).to_numpy()


def _levels(values: pd.Series) -> list[str]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(v) for v in values.cat.categories]
    return sorted(str(v) for v in pd.unique(values))


def group_term_names(formula: str) -> list[str]:
    """Bambi's names of the group terms of `formula` (`(arm|town)` is `1|town` and `arm|town`)."""
    import formulae

    return [term.name for term in formulae.model_description(formula).terms if "|" in term.name]


def choose(spec: ModelSpec, prepared: PreparedData) -> dict[str, Choice]:
    """The parametrisation of every group term of the prepared model, from `spec.parametrisation` and the data."""
    setting = spec.parametrisation
    priors = resolve_priors(spec, prepared).spec.priors
    family = registry.get(spec.family)
    per_person = family.person_information(prepared)
    choices = {}
    for term in group_term_names(prepared.formula):
        given = term in setting if isinstance(setting, dict) else setting != NONCENTRED
        stated = (setting.get(term, NONCENTRED) if isinstance(setting, dict) else setting)
        if stated != AUTO:
            choices[term] = (Choice(term, stated, "spec", "set in the spec") if given else
                             Choice(term, stated, "default", 'set parametrisation = "auto" to choose from the data'))
            continue
        prior = priors.get(term)
        if prior is None or prior.dist == AUTO:
            # A family without an `auto` rule leaves the term to Bambi's default prior, which is built centred.
            choices[term] = Choice(term, CENTRED, "auto", "Bambi's default prior (no `auto` rule): centred")
            continue
        information = level_information(term, prepared, per_person)
        ratio = float(information.min()) * prior_scale(prior) ** 2
        which = CENTRED if ratio >= CENTRED_AT else NONCENTRED
        choices[term] = Choice(term, which, "auto", (
            f"least informed of {len(information)} coefficients: information {information.min():.3g} x prior "
            f"SD scale {prior_scale(prior):.3g}^2 = {ratio:.3g} {'>=' if ratio >= CENTRED_AT else '<'} {CENTRED_AT:g}"))
    dropped = {term for term in setting if term.split("|", 1)[-1].strip() in prepared.dropped_factors} \
        if isinstance(setting, dict) else set()
    unknown = sorted(set(setting) - set(choices) - dropped) if isinstance(setting, dict) else []
    if unknown:
        raise SpecError(f"model {spec.name!r}: parametrisation for unknown group term(s) {', '.join(unknown)}; "
                        f"group terms: {', '.join(choices) or 'none'}")
    return choices


def summary(choices: dict[str, Choice]) -> str:
    """One line: `centred: 1|municipality; non-centred: arm|municipality, ...` (empty without group terms)."""
    parts = [f"{label}: {', '.join(c.term for c in choices.values() if c.parametrisation == value)}"
             for value, label in ((CENTRED, "centred"), (NONCENTRED, "non-centred"))
             if any(c.parametrisation == value for c in choices.values())]
    return "; ".join(parts)


def origin(choices: dict[str, Choice]) -> str:
    """Who chose: the default, the spec, the data (`auto`), or several, and how to change it."""
    by = {choice.set_by for choice in choices.values()}
    if by == {"default"}:
        return 'the default; the spec\'s `parametrisation` ("auto", "centred", or per term) changes it'
    if by <= {"spec", "default"}:
        return "as the spec's `parametrisation` sets" + (", others the default" if "default" in by else "")
    return ("chosen from the data per term" + (", others as the spec sets or by default" if len(by) > 1 else "")
            + "; the spec's `parametrisation` overrides")
