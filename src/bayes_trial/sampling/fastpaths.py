"""Faster sampling that keeps the posterior: what the nutpie path of `fit` does under the hood.

Gaussian repeated measures with participant intercepts, `(1|participant_id)`:

* each person's waves are one multivariate normal with compound-symmetry covariance sigma^2 I + tau^2 J,
  so the participant intercepts are integrated out, for any number of waves per person (attrition). The
  mean is linear in the other coefficients theta, so the likelihood only needs a few q x q matrices of the
  data (`ParticipantStatistics`) and a gradient costs the same for 3,000 or 300,000 rows;
* `fit` never builds Bambi's full model on this path: Bambi (formulae) builds `(1|participant_id)` from
  dense rows x persons and persons x persons matrices (47 GiB for 80,000 persons). It builds the model
  without that term (`build_other_terms`), keeps participants as an index and the design sparse, and
  computes the log-likelihood itself; memory grows with rows x stored draws;
* when every coefficient has a normal prior (population effects, and group effects given their SD), theta
  is integrated out as well ("collapsed"): NUTS then samples only the standard deviations, a handful of
  parameters without funnels. Otherwise only the participant intercepts are integrated out ("marginal");
* after sampling, the integrated-out coefficients are drawn from their exact normal conditional posterior
  given each draw of the sampled ones. The stored posterior therefore has the same variables, and the
  same joint distribution, as the plain Bambi model: predictions, log-likelihood and queries are unchanged.

Compiled models are cached within a process, keyed on a hash of the compiled log-density graph, and on
disk across processes (`disk_compile`). Prior parameters and data arrays are read from shared variables
(`PRIOR_PREFIX...`, `DATA_PREFIX...`), so a refit with new priors, a new seed, new draws or a new outcome of
the same layout reuses the compiled model and only swaps the values in. The collapsed model's graph holds
no size of the data at all, so a trial of another layout (other towns, consultants, waves, persons) with the
same formula terms and the same number of arms reuses it too, in the process and from the disk cache.

Binary outcomes aggregated to binomial cells (`model.prepare`) are the other fast path; nutpie's
low-rank mass-matrix adaptation is available as an option (`low_rank`), off by default because it did
not help these models (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import arviz as az
import bambi as bmb
import numpy as np
import pandas as pd
import xarray as xr

from bayes_trial.core.cache import LruCache
from bayes_trial.core.progress import say
from bayes_trial.families import registry
from bayes_trial.families.base import PreparedData
from bayes_trial.modelling.frames import group_terms, resolve_priors
from bayes_trial.modelling.parametrisation import choose as choose_parametrisation
from bayes_trial.sampling import build as bambi_build
from bayes_trial.sampling.build import NestedModel, noncentred_normal, stored_variables
from bayes_trial.sampling.predictor import PARTICIPANT, PARTICIPANT_DIM, PARTICIPANT_TERM

PARTICIPANT_SIGMA = f"{PARTICIPANT_TERM}_sigma"
PARTICIPANT_SD = "participant_sd"  # the marginal Bambi model's name for `1|participant_id_sigma`
PRIOR_PREFIX = "bayes_trial_prior"
DATA_PREFIX = "bayes_trial_data"
_PARTICIPANT_TERM_RE = re.compile(r"\(\s*1\s*\|\s*participant_id\s*\)")
CACHE_SIZE = 8
# Pointwise log-likelihoods (rows x draws) above this many values are recomputed when needed, not stored.
LOG_LIK_STORE_CELLS = 50_000_000


# ---------------------------------------------------------------------------------------------
# Gaussian repeated measures: the data as quadratic forms in the coefficients
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParticipantStatistics:
    """What the likelihood needs from the data when the mean is linear: mu = mu0 + D theta + u[person].

    With r = y - mu0 - D theta, each person's waves contribute their within-person sum of squares (over
    sigma^2) and n times their squared mean residual (over sigma^2 + n tau^2). Both are quadratic forms
    in theta, here as (matrix, vector, constant) triples; `between_*` are stacked over the distinct
    numbers of waves per person (`sizes`, with `persons` persons each), so persons with 1, 2 or 3 waves
    (attrition) are all exact. Only the `informed` coefficients (columns of D that are not all zero)
    enter: Bambi also creates levels that no row has, and those have their prior as posterior.

    Nothing here is persons x persons or rows x persons: D (`design`) and the per-person means of its
    columns (`mean_design`) are sparse, participants are an index (`codes` into `levels`).
    """

    blocks: tuple[str, ...]
    block_shapes: tuple[tuple[int, ...], ...]
    informed: np.ndarray
    levels: np.ndarray
    codes: np.ndarray
    offset: np.ndarray
    design: Any
    counts: np.ndarray
    mean_design: Any
    mean_outcome: np.ndarray
    within_matrix: np.ndarray
    within_vector: np.ndarray
    within_constant: np.ndarray  # one element: an array, so that a compiled graph reads it as data
    sizes: np.ndarray
    persons: np.ndarray
    between_matrix: np.ndarray
    between_vector: np.ndarray
    between_constant: np.ndarray

    def residual_sums(self, theta: np.ndarray) -> np.ndarray:
        """Each person's residual sum for coefficient draws `theta` (..., q): shape (..., persons)."""
        informed = theta[..., self.informed]
        fitted = np.asarray(self.mean_design @ informed.reshape(-1, len(self.informed)).T).T
        return self.counts * (self.mean_outcome - fitted.reshape(*theta.shape[:-1], -1))

    def weighted(self, residual_var, person_var):
        """Sum of the quadratic forms weighted by 1/sigma^2 and 1/(sigma^2 + n tau^2): (matrix, vector, constant).

        Works on PyTensor and NumPy values alike; `person_var` has one entry per size, last axis.
        """
        weights = 1 / person_var
        matrix = self.within_matrix / residual_var[..., None, None] + (
            weights[..., :, None, None] * self.between_matrix).sum(axis=-3)
        vector = self.within_vector / residual_var[..., None] + (weights[..., :, None] * self.between_vector).sum(axis=-2)
        constant = (self.within_constant / residual_var[..., None]).sum(axis=-1) + (
            weights * self.between_constant).sum(axis=-1)
        return matrix, vector, constant

    def log_normaliser(self, residual_var, person_var, log):
        """-1/2 (n log 2 pi + (n - persons) log sigma^2 + sum over persons of log(sigma^2 + n tau^2))."""
        # One-element arrays rather than scalars: `lift_data` lifts arrays out of the compiled graph, so
        # a data set of the same layout with other rows reuses the compiled model. Rows are counted from
        # `sizes` and `persons` (exact: whole numbers), so that the collapsed model computes them in its graph.
        rows = (self.sizes * self.persons).sum(axis=-1, keepdims=True)
        persons = self.persons.sum(axis=-1, keepdims=True)
        return -0.5 * ((rows * np.log(2 * np.pi) + (rows - persons) * log(residual_var)[..., None]).sum(axis=-1)
                       + (self.persons * log(person_var)).sum(axis=-1))


@dataclass(frozen=True)
class OtherTerms:
    """A built Bambi model for everything but the participant intercepts, and the prior of their SD.

    `model` is either the full model (its participant term is then ignored) or, on the path that `fit`
    takes, the model built without `(1|participant_id)`: Bambi (formulae) builds that term as dense
    rows x persons and persons x persons matrices, 47 GiB for 80,000 persons.
    """

    model: bmb.Model
    sd_prior: bmb.Prior
    participant_noncentred: bool  # the full model's participant intercepts have `_offset` variables

    @classmethod
    def of_full(cls, full: bmb.Model) -> OtherTerms:
        term = full.components[full.family.likelihood.parent].terms[PARTICIPANT_TERM]
        return cls(full, term.prior.args["sigma"], not full.parametrisation[PARTICIPANT_TERM].centred)


def can_marginalise(prepared: PreparedData) -> bool:
    """True for a model whose family integrates participants out (Gaussian) and whose only participant-level term is a random intercept."""
    integrable = {family.bambi_name for family in registry.families() if family.integrates_participants}
    return prepared.family in integrable and not prepared.aggregated and participant_intercept_only(prepared.formula)


def participant_intercept_only(formula: str) -> bool:
    """True when the only participant-level term of `formula` is a random intercept, `(1|participant_id)`."""
    participant_terms = [(expr, factor) for expr, factor in group_terms(formula)
                         if PARTICIPANT in [p.strip() for p in factor.split(":")]]
    return participant_terms == [("1", PARTICIPANT)]


def formula_without_participants(formula: str) -> str:
    """`formula` less its `(1|participant_id)` term."""
    formula = _PARTICIPANT_TERM_RE.sub("", formula)
    return " ".join(re.sub(r"~\s*\+", "~ ", re.sub(r"\+\s*\+", "+", formula)).rstrip(" +").split())


def participant_levels(data: pd.DataFrame) -> np.ndarray:
    """Participant ids in the order Bambi gives its `participant_id__factor_dim` levels (sorted)."""
    return np.unique(data[PARTICIPANT].astype(str).to_numpy())


def build_other_terms(spec, prepared: PreparedData) -> OtherTerms:
    """The Bambi model of `spec` without `(1|participant_id)`, and the participant SD prior the full model has.

    Priors are resolved on the full model's rows first (`modelling.frames.resolve_priors`), so the other terms
    and the participant SD get exactly the full model's priors, `auto` ones included.
    """
    from bayes_trial.modelling.spec import check_prior_for_term

    spec = resolve_priors(spec, prepared).spec
    priors = {term: prior for term, prior in spec.priors.items() if term != PARTICIPANT_TERM}
    reduced = bambi_build.build(dataclasses.replace(spec, priors=priors),
                              dataclasses.replace(prepared, formula=formula_without_participants(prepared.formula)))
    stated = spec.priors[PARTICIPANT_TERM]
    check_prior_for_term(PARTICIPANT_TERM, stated, where=f"model {spec.name!r}")
    sd_prior = bmb.Prior(stated.dist, **stated.params)
    return OtherTerms(reduced, sd_prior, not choose_parametrisation(spec, prepared)[PARTICIPANT_TERM].centred)


def participant_sd_model(other: OtherTerms):
    """A PyMC model holding only the participant SD prior, its variable named as in the full model."""
    import pymc as pm

    with pm.Model() as model:
        getattr(pm, other.sd_prior.name)(PARTICIPANT_SIGMA, **other.sd_prior.args)
    return model


def model_for_priors(spec, prepared: PreparedData) -> bmb.Model | OtherTerms:
    """What holds every prior of `spec` on `prepared` without building a persons-sized term.

    Where the participant intercepts can be integrated out (`can_marginalise`), the other terms and
    the participant SD prior (`build_other_terms`); else the full Bambi model.
    """
    return build_other_terms(spec, prepared) if can_marginalise(prepared) else bambi_build.build(spec, prepared)


def prior_models(model: bmb.Model | OtherTerms) -> list:
    """The PyMC models whose free variables together carry every prior of `model_for_priors`' result."""
    if isinstance(model, OtherTerms):
        return [model.model.backend.model, participant_sd_model(model)]
    return [model.backend.model]


def _other_terms(model) -> OtherTerms:
    return model if isinstance(model, OtherTerms) else OtherTerms.of_full(model)


def participant_statistics(prepared: PreparedData, model: bmb.Model | OtherTerms) -> ParticipantStatistics:
    """The data of a Gaussian participant-intercept model as quadratic forms in its other coefficients.

    mu0 and D are read off the built model's graph of mu (participant intercepts, if the model has them,
    set to zero), by evaluating it at zero and at each unit vector: exact for any linear mean Bambi builds.
    Memory: the rows' nonzero design entries and q x q matrices, nothing that grows with persons^2.
    """
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace
    from scipy import sparse

    bambi_model = _other_terms(model).model
    pymc_model = bambi_model.backend.model
    terms = bambi_model.components[bambi_model.family.likelihood.parent].terms
    blocks = tuple(name for name in terms if name != PARTICIPANT_TERM)
    shapes = tuple(tuple(int(n) for n in pymc_model[name].shape.eval()) for name in blocks)
    sizes = [int(np.prod(shape)) for shape in shapes]
    theta = pt.vector("theta", dtype="float64")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    q = int(starts[-1])
    replace = {pymc_model[name]: theta[start:start + size].reshape(shape)
               for name, shape, start, size in zip(blocks, shapes, starts, sizes)}
    if PARTICIPANT_TERM in terms:
        participants = pymc_model[PARTICIPANT_TERM]
        replace[participants] = pt.zeros_like(participants)
        levels = np.asarray(pymc_model.coords[PARTICIPANT_DIM], dtype=str)
    else:
        levels = participant_levels(prepared.data)
    # Python mode compiles nothing but loops over rows in Python (a second for 10,000 rows and 100
    # coefficients); C compilation costs about that once, and pays off above that size.
    mode = "FAST_COMPILE" if len(prepared.data) < 10_000 else None
    mean = pytensor.function([theta], graph_replace(pymc_model["mu"], replace, strict=True), mode=mode)
    mu0 = np.asarray(mean(np.zeros(q)), dtype=float)
    rows, columns, values = [], [], []
    unit = np.zeros(q)
    for j in range(q):  # one column at a time: D is never dense
        unit[j] = 1.0
        column = mean(unit) - mu0
        unit[j] = 0.0
        nonzero = np.flatnonzero(column)
        rows.append(nonzero)
        columns.append(np.full(len(nonzero), j))
        values.append(column[nonzero])
    design = sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                               shape=(len(mu0), q))
    probe = np.linspace(-1, 1, q)
    if not np.allclose(mean(probe), mu0 + design @ probe):
        raise RuntimeError("the mean of the Gaussian model is not linear in its coefficients")
    informed = np.flatnonzero(np.asarray(abs(design).sum(axis=0)).ravel() > 0)
    design = design[:, informed].tocsr()

    codes = pd.Index(levels).get_indexer(prepared.data[PARTICIPANT].astype(str))
    outcome = prepared.data[prepared.response].to_numpy(dtype=float) - mu0
    counts = np.bincount(codes, minlength=len(levels)).astype(float)
    member = sparse.csr_matrix((1 / counts[codes], (codes, np.arange(len(codes)))), shape=(len(levels), len(codes)))
    mean_design = (member @ design).tocsr()
    mean_outcome = member @ outcome
    weighted_means = sparse.diags(np.sqrt(counts)) @ mean_design
    # Within-person parts as totals less the persons' means: sum_i (x_ij - xbar_i)(...) = sum x x' - sum_i n_i xbar xbar'.
    within_matrix = (design.T @ design).toarray() - (weighted_means.T @ weighted_means).toarray()
    within_vector = design.T @ outcome - mean_design.T @ (counts * mean_outcome)
    within_constant = np.array([outcome @ outcome - counts @ mean_outcome**2])
    wave_counts = np.unique(counts)
    groups = [counts == m for m in wave_counts]
    return ParticipantStatistics(
        blocks=blocks, block_shapes=shapes, informed=informed, levels=levels, codes=codes, offset=mu0,
        design=design, counts=counts, mean_design=mean_design, mean_outcome=mean_outcome,
        within_matrix=within_matrix, within_vector=np.asarray(within_vector), within_constant=within_constant,
        sizes=wave_counts, persons=np.array([g.sum() for g in groups], dtype=float),
        between_matrix=np.stack([m * (mean_design[g].T @ mean_design[g]).toarray() for m, g in zip(wave_counts, groups)]),
        between_vector=np.stack([m * (mean_design[g].T @ mean_outcome[g]) for m, g in zip(wave_counts, groups)]),
        between_constant=np.array([m * mean_outcome[g] @ mean_outcome[g] for m, g in zip(wave_counts, groups)]),
    )


# ---------------------------------------------------------------------------------------------
# Marginal model: participant intercepts integrated out (any priors on the other coefficients)
# ---------------------------------------------------------------------------------------------


def marginal_logp(value, mu, theta, sigma, participant_sd, stats: ParticipantStatistics):
    """Log-likelihood of all rows with each person's intercept integrated out (one term per person)."""
    import pytensor.tensor as pt

    residual_var = sigma**2
    person_var = residual_var + stats.sizes * participant_sd**2
    matrix, vector, constant = stats.weighted(residual_var, person_var)
    theta = theta[stats.informed]
    quadratic = constant - 2 * pt.dot(vector, theta) + pt.dot(theta, pt.dot(matrix, theta))
    return stats.log_normaliser(residual_var, person_var, pt.log) - 0.5 * quadratic


def _marginal_likelihood(name, *, mu, sigma, participant_sd, observed, dims, stats: ParticipantStatistics):
    """Response of the marginal model: a function of the coefficients, sigma and tau (the rows are in `stats`)."""
    import pymc as pm
    import pytensor.tensor as pt

    model = pm.modelcontext(None)
    theta = pt.concatenate([pt.flatten(model[block]) for block in stats.blocks])
    # mu only gives the response its length; the log density reads the rows through `stats`.
    return pm.CustomDist(name, mu, theta, sigma, participant_sd, logp=partial(marginal_logp, stats=stats),
                         signature="(n),(q),(),()->(n)", observed=observed, dims=dims)


def marginal_model(prepared: PreparedData, full: bmb.Model | OtherTerms, stats: ParticipantStatistics) -> bmb.Model:
    """The Bambi model without `(1|participant_id)`, its likelihood integrating the intercepts out.

    Every prior is copied from the built model (user priors and Bambi's data-based defaults alike),
    so both models define the same posterior for the shared parameters.
    """
    other = _other_terms(full)
    mean_terms = other.model.components[other.model.family.likelihood.parent].terms
    priors = {name: mean_terms[name].prior for name in stats.blocks}
    priors["sigma"] = other.model.components["sigma"].prior
    priors[PARTICIPANT_SD] = other.sd_prior
    family = bmb.Family(
        "gaussian_participant_marginal",
        likelihood=bmb.Likelihood("MarginalNormal", params=["mu", "sigma", PARTICIPANT_SD], parent="mu",
                                  dist=partial(_marginal_likelihood, stats=stats)),
        link={"mu": "identity", "sigma": "log", PARTICIPANT_SD: "log"},
    )
    model = NestedModel(formula_without_participants(prepared.formula), prepared.data, family=family, priors=priors,
                        center_predictors=False, noncentered=False)  # the priors say which terms are not
    model.build()
    return model


# ---------------------------------------------------------------------------------------------
# Collapsed model: all mean coefficients integrated out, only standard deviations sampled
# ---------------------------------------------------------------------------------------------


def _normal_prior(prior) -> bool:
    return isinstance(prior, bmb.Prior) and prior.name == "Normal" and prior.dist in (None, noncentred_normal)


def _coefficient_priors(full: bmb.Model, stats: ParticipantStatistics):
    """Per block: (prior mean, prior SD or None, name of its SD parameter or None); None if not all normal."""
    terms = full.components[full.family.likelihood.parent].terms
    out = []
    for name, shape in zip(stats.blocks, stats.block_shapes):
        prior = terms[name].prior
        if not _normal_prior(prior):
            return None
        mean = np.broadcast_to(np.asarray(prior.args["mu"], dtype=float), shape).ravel()
        sd = prior.args["sigma"]
        if isinstance(sd, bmb.Prior):
            out.append((mean, None, f"{name}_sigma"))
        else:
            out.append((mean, np.broadcast_to(np.asarray(sd, dtype=float), shape).ravel(), None))
    return out


def _collapsed_logp(stats: ParticipantStatistics, sigma, participant_sd, prior_sd, prior_mean):
    """log p(y | SDs) with the coefficients (normal prior) and participant intercepts integrated out.

    `prior_sd` and `prior_mean` are those of the informed coefficients: the others integrate to one.
    """
    import pytensor.tensor as pt

    residual_var = sigma**2
    person_var = residual_var + stats.sizes * participant_sd**2
    matrix, vector, constant = stats.weighted(residual_var, person_var)
    prior_precision = 1 / prior_sd**2
    cholesky = pt.linalg.cholesky(matrix + pt.diag(prior_precision))
    whitened = pt.linalg.solve_triangular(cholesky, vector + prior_precision * prior_mean, lower=True)
    return (stats.log_normaliser(residual_var, person_var, pt.log)
            - 0.5 * (constant + pt.sum(prior_precision * prior_mean**2) - pt.dot(whitened, whitened))
            - pt.sum(pt.log(prior_sd)) - pt.sum(pt.log(pt.diag(cholesky))))


def _sd_parameters(other: OtherTerms, priors) -> dict[str, bmb.Prior]:
    terms = other.model.components[other.model.family.likelihood.parent].terms
    sds = {"sigma": other.model.components["sigma"].prior, PARTICIPANT_SIGMA: other.sd_prior}
    sds.update({sd_name: terms[sd_name.removesuffix("_sigma")].prior.args["sigma"] for _, _, sd_name in priors if sd_name})
    return sds


# What the collapsed log density reads from `ParticipantStatistics`: data of the compiled model, of any size.
_COLLAPSED_DATA = ("within_matrix", "within_vector", "within_constant", "sizes", "persons", "between_matrix",
                   "between_vector", "between_constant")


def _as_graph_data(stats: ParticipantStatistics):
    """`stats` with the arrays of `_COLLAPSED_DATA` as shared variables without a fixed shape, and q (symbolic).

    The collapsed model's graph then holds no size of the data: the same compiled model serves
    every layout (towns, consultants, waves, persons) of the same formula terms. Their shapes are
    stated in terms of two symbolic sizes, q informed coefficients and k distinct numbers of waves
    (`DATA_PREFIX_layout`), so that PyTensor can prove the shapes of element-wise operands equal and
    leaves no run-time broadcast checks, whose rewriting differed between processes (and with it
    the disk cache's key).
    """
    import pytensor
    import pytensor.tensor as pt

    layout = pytensor.shared(np.array([len(stats.informed), len(stats.sizes)], dtype="int64"), name=f"{DATA_PREFIX}_layout")
    q, k = layout[0], layout[1]
    shapes = {"within_matrix": (q, q), "within_vector": (q,), "within_constant": (1,), "sizes": (k,), "persons": (k,),
              "between_matrix": (k, q, q), "between_vector": (k, q), "between_constant": (k,)}
    data = {name: pt.specify_shape(pytensor.shared(np.asarray(getattr(stats, name), dtype=float), name=f"{DATA_PREFIX}_{name}"),
                                   shapes[name]) for name in _COLLAPSED_DATA}
    return dataclasses.replace(stats, **data), q


def _prior_sd_index(priors, stats: ParticipantStatistics, sd_shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """Where each informed coefficient's prior SD sits in [fixed prior SDs, then each group SD flattened].

    A group SD broadcasts over its block as `pt.broadcast_to` would (trailing axes aligned).
    """
    n_fixed = sum(len(mean) for mean, sd, _ in priors if sd is not None)
    starts = dict(zip(sd_shapes, n_fixed + np.cumsum([0, *[int(np.prod(s)) for s in sd_shapes.values()]])))
    fixed_at, pieces = 0, []
    for (mean, sd, sd_name), shape in zip(priors, stats.block_shapes):
        if sd is not None:
            pieces.append(fixed_at + np.arange(len(mean)))
            fixed_at += len(mean)
        else:
            positions = np.arange(int(np.prod(sd_shapes[sd_name]))).reshape(1, 1, *sd_shapes[sd_name])
            pieces.append(starts[sd_name] + _broadcast_draws(positions, shape)[0, 0])
    return np.concatenate(pieces)[stats.informed]


def collapsed_model(full: bmb.Model | OtherTerms, stats: ParticipantStatistics):
    """PyMC model of the standard deviations only, or None when a coefficient's prior is not normal.

    Its variables have the full model's names, dims and priors. The data summaries, the position of
    each coefficient's prior SD and the prior means and fixed prior SDs of the coefficients are shared
    variables of no fixed shape, so new priors or data of another layout (other towns, consultants,
    waves) with the same formula terms and the same number of SD parameters do not change the compiled graph.
    """
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt
    from bambi.backend.utils import get_distribution_from_prior

    other = _other_terms(full)
    full = other.model
    priors = _coefficient_priors(full, stats)
    if priors is None:
        return None
    full_dims = full.backend.model.named_vars_to_dims
    sd_priors = _sd_parameters(other, priors)
    coords = {dim: full.backend.model.coords[dim] for name in sd_priors for dim in full_dims.get(name) or ()}
    group_sds = {sd_name: tuple(len(coords[dim]) for dim in full_dims.get(sd_name) or ()) for _, _, sd_name in priors if sd_name}
    prior_mean = pytensor.shared(np.concatenate([mean for mean, _, _ in priors])[stats.informed],
                                 name=f"{PRIOR_PREFIX}_coefficient_mean")
    fixed_sd = pytensor.shared(np.concatenate([np.zeros(0), *[sd for _, sd, _ in priors if sd is not None]]),
                               name=f"{PRIOR_PREFIX}_coefficient_sd")
    sd_index = pytensor.shared(_prior_sd_index(priors, stats, group_sds), name=f"{DATA_PREFIX}_prior_sd_index")
    data, q = _as_graph_data(stats)
    with pm.Model(coords=coords) as model:
        sds = {name: get_distribution_from_prior(prior)(name, **prior.args, dims=full_dims.get(name) or None)
               for name, prior in sd_priors.items()}
        every_sd = pt.concatenate([fixed_sd, *[pt.flatten(sds[name]) for name in group_sds]])
        pm.Potential("marginal_likelihood", _collapsed_logp(data, sds["sigma"], sds[PARTICIPANT_SIGMA],
                                                            every_sd[pt.specify_shape(sd_index, (q,))],
                                                            pt.specify_shape(prior_mean, (q,))))
    return model


def _broadcast_draws(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Draws (chain, draw, *s) of an SD broadcast over a coefficient block of `shape`, flattened."""
    chains, draws, *sd_shape = values.shape
    aligned = values.reshape(chains, draws, *([1] * (len(shape) - len(sd_shape))), *sd_shape)
    return np.broadcast_to(aligned, (chains, draws, *shape)).reshape(chains, draws, -1)


def _coefficient_draws(posterior: xr.Dataset, full: bmb.Model, stats: ParticipantStatistics, rng) -> np.ndarray:
    """theta drawn from its normal conditional posterior given each draw of the SDs: (chain, draw, q).

    Chain by chain, to keep the q x q precision matrices of one chain in memory at a time.
    """
    priors = _coefficient_priors(full, stats)
    draws = (posterior.sizes["chain"], posterior.sizes["draw"])
    prior_sd = np.concatenate([
        _broadcast_draws(posterior[sd_name].to_numpy(), shape) if sd_name else np.broadcast_to(sd, (*draws, len(sd)))
        for (_, sd, sd_name), shape in zip(priors, stats.block_shapes)], axis=-1)
    prior_mean = np.concatenate([mean for mean, _, _ in priors])
    theta = prior_mean + prior_sd * rng.standard_normal(prior_sd.shape)  # uninformed coefficients keep these
    residual_var = posterior["sigma"].to_numpy() ** 2
    person_var = residual_var[..., None] + stats.sizes * posterior[PARTICIPANT_SIGMA].to_numpy()[..., None] ** 2
    informed_precision = 1 / prior_sd[..., stats.informed] ** 2
    for chain in range(draws[0]):
        matrix, vector, _ = stats.weighted(residual_var[chain], person_var[chain])
        precision = matrix + informed_precision[chain][:, :, None] * np.eye(len(stats.informed))
        cholesky = np.linalg.cholesky(precision)
        mean = np.linalg.solve(precision, (vector + prior_mean[stats.informed] * informed_precision[chain])[..., None])[..., 0]
        noise = rng.standard_normal(mean.shape)
        theta[chain][:, stats.informed] = mean + np.linalg.solve(np.swapaxes(cholesky, -1, -2), noise[..., None])[..., 0]
    return theta


# ---------------------------------------------------------------------------------------------
# Back to the full model's posterior
# ---------------------------------------------------------------------------------------------


def _full_variable(full: bmb.Model, name: str, values: np.ndarray, posterior: xr.Dataset,
                   stats: ParticipantStatistics) -> xr.DataArray:
    if name == PARTICIPANT_TERM:  # not in the model `fit` builds: its dims are the participant levels
        dims, coords = (PARTICIPANT_DIM,), {PARTICIPANT_DIM: stats.levels}
    else:
        pymc_model = full.backend.model
        dims = tuple(pymc_model.named_vars_to_dims.get(name) or ())
        coords = {dim: list(pymc_model.coords[dim]) for dim in dims}
    coords.update(chain=posterior["chain"], draw=posterior["draw"])
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], *[len(coords[d]) for d in dims])
    return xr.DataArray(values.reshape(shape), dims=("chain", "draw", *dims), coords=coords)


def _stacked_coefficients(posterior: xr.Dataset, stats: ParticipantStatistics) -> np.ndarray:
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    return np.concatenate([posterior[name].to_numpy().reshape(chains, draws, -1) for name in stats.blocks], axis=-1)


def complete_posterior(raw: az.InferenceData, full: bmb.Model | OtherTerms, stats: ParticipantStatistics, seed: int,
                       collapsed: bool, *, offsets: bool = True, chunk: int = 25, dtype=np.float64) -> az.InferenceData:
    """The full model's posterior from a marginal or collapsed run, by exact conditional draws.

    Given the sampled parameters, the coefficients (collapsed runs) and then each participant's intercept
    are normal; the intercept has precision 1/tau^2 + n/sigma^2 and mean (residual sum / sigma^2) / precision.
    Group effects get their `_offset` (effect / SD) when the full model is non-centred and `offsets` is
    true (`fit` drops them, so it does not ask: for many persons they would double the memory).
    The participant intercepts are stored as `dtype`: `fit` asks for float32 (persons x draws is the
    largest array of the posterior; 7 digits are far beyond their Monte Carlo error).
    """
    other = _other_terms(full)
    rng = np.random.default_rng([seed, 0x1EAF])
    posterior = raw.posterior.rename({PARTICIPANT_SD: PARTICIPANT_SIGMA}) if PARTICIPANT_SD in raw.posterior else raw.posterior
    posterior = posterior.drop_vars([v for v in posterior.data_vars if v.endswith("__")])
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    theta = _coefficient_draws(posterior, other.model, stats, rng) if collapsed else _stacked_coefficients(posterior, stats)
    residual_var = posterior["sigma"].to_numpy()[..., None] ** 2
    person_sd = posterior[PARTICIPANT_SIGMA].to_numpy()[..., None]
    intercepts = np.empty((n_chains, n_draws, len(stats.levels)), dtype=dtype)
    # A few draws at a time keeps the temporaries small beside the result; the random stream is the
    # same as one draw of the whole array.
    for chain in range(n_chains):
        for start in range(0, n_draws, chunk):
            part = slice(start, start + chunk)
            precision = 1 / person_sd[chain, part] ** 2 + stats.counts / residual_var[chain, part]
            mean = stats.residual_sums(theta[chain, part]) / residual_var[chain, part] / precision
            intercepts[chain, part] = mean + rng.standard_normal(mean.shape) / np.sqrt(precision)
    added = {PARTICIPANT_TERM: intercepts}
    if collapsed:
        starts = np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in stats.block_shapes])])
        added.update({name: theta[..., start:stop] for name, start, stop in zip(stats.blocks, starts, starts[1:])})
    variables = {name: _full_variable(other.model, name, values, posterior, stats) for name, values in added.items()}
    if offsets:
        free = {rv.name for rv in other.model.backend.model.free_RVs}
        if other.participant_noncentred:
            free.add(f"{PARTICIPANT_TERM}_offset")
        for name in [n for n in variables if f"{n}_offset" in free]:
            variables[f"{name}_offset"] = variables[name] / posterior[f"{name}_sigma"]
    completed = posterior.assign(variables)
    integrated = [PARTICIPANT_TERM, *stats.blocks] if collapsed else [PARTICIPANT_TERM]
    sample_stats = raw.sample_stats.assign_attrs(bayes_trial_integrated_out=", ".join(integrated))
    groups = {"posterior": completed, "sample_stats": sample_stats}
    if "warmup_sample_stats" in raw.groups():
        groups["warmup_sample_stats"] = raw.warmup_sample_stats
    return az.InferenceData(**groups)


def stores_log_likelihood(rows: int, draws: int) -> bool:
    """Whether a fast-path fit stores its pointwise log-likelihood: rows x draws up to LOG_LIK_STORE_CELLS.

    Beyond that (e.g. 240,000 rows x 1,000 draws: 0.96 GB in single precision) it is recomputed from the
    stored posterior when LOO or power-scaling needs it (`log_likelihood_group`): it is a function of
    the coefficients, participant intercepts and sigma, all stored.
    """
    return rows * draws <= LOG_LIK_STORE_CELLS


def log_likelihood_group(posterior: xr.Dataset, stats: ParticipantStatistics, prepared: PreparedData) -> xr.Dataset:
    """The `log_likelihood` group of a fast-path fit: `log_likelihood` of the response, dims chain, draw, __obs__."""
    values = log_likelihood(posterior, stats, prepared.data[prepared.response].to_numpy(dtype=float))
    return xr.Dataset({prepared.response: (("chain", "draw", "__obs__"), values)},
                      coords={"chain": posterior["chain"], "draw": posterior["draw"]})


def log_likelihood(posterior: xr.Dataset, stats: ParticipantStatistics, observed: np.ndarray,
                   chunk: int = 25, summed: bool = False) -> np.ndarray:
    """Each row's Normal log density at each draw of a completed posterior: (chain, draw, rows), float32.

    What `pymc.compute_log_likelihood` gives for the full model, computed from the sparse design and the
    participant index, `chunk` draws at a time, so that the only large array is the result itself.
    Stored in single precision: it is the largest array of a fit (rows x draws: 1.9 GB in double
    precision for 240,000 rows and 1,000 draws), and LOO and power-scaling need nowhere near 16 digits
    of a log density (float32 is exact to about 1e-7 relative). `summed`: each draw's total over the
    rows instead, (chain, draw) in double precision, without the rows x draws array (power-scaling
    the likelihood needs no more).
    """
    theta = _stacked_coefficients(posterior, stats)[..., stats.informed]
    intercepts = posterior[PARTICIPANT_TERM].transpose("chain", "draw", PARTICIPANT_DIM).to_numpy()
    sigma = posterior["sigma"].to_numpy()
    residual = observed - stats.offset
    out = np.empty(sigma.shape if summed else (*sigma.shape, len(observed)), dtype=float if summed else np.float32)
    for chain in range(sigma.shape[0]):
        for start in range(0, sigma.shape[1], chunk):
            part = slice(start, start + chunk)
            z = residual - np.asarray(stats.design @ theta[chain, part].T).T - intercepts[chain, part][:, stats.codes]
            z /= sigma[chain, part, None]
            density = -0.5 * np.log(2 * np.pi) - np.log(sigma[chain, part, None]) - 0.5 * z**2
            out[chain, part] = density.sum(axis=-1) if summed else density
    return out


# ---------------------------------------------------------------------------------------------
# Compiled-model cache
# ---------------------------------------------------------------------------------------------


def lift_priors(pymc_model):
    """A copy of the model whose free variables read their prior parameters from one shared vector.

    Constants among a free variable's distribution parameters (directly, or broadcast by Bambi) are
    replaced by slices of the shared vector `PRIOR_PREFIX_values`, so that changing a prior changes data,
    not the graph that nutpie compiles. One vector rather than a shared variable per parameter: nutpie's
    compile time grows with the number of shared variables.
    """
    import pytensor
    from pymc.model.fgraph import ModelFreeRV, fgraph_from_model, model_from_fgraph
    from pytensor.graph.basic import Constant
    from pytensor.tensor.elemwise import DimShuffle

    def prior_constant(param):
        """The float constant behind a parameter, and the broadcast applied to it (or None)."""
        broadcast = None
        if param.owner is not None and isinstance(param.owner.op, DimShuffle):
            broadcast, param = param.owner.op, param.owner.inputs[0]
        if isinstance(param, Constant) and param.dtype.startswith("float"):
            return param, broadcast
        return None, None

    fgraph, _ = fgraph_from_model(pymc_model)
    sites = []
    for node in [n for n in fgraph.toposort() if isinstance(n.op, ModelFreeRV)]:
        rv = node.inputs[0]
        found = [(i, *prior_constant(p)) for i, p in enumerate(rv.owner.inputs[2:])]
        found = [(i, constant, broadcast) for i, constant, broadcast in found if constant is not None]
        if found:
            sites.append((rv, found))
    constants = [np.asarray(constant.data, dtype=float) for _, found in sites for _, constant, _ in found]
    packed = pytensor.shared(np.concatenate([c.ravel() for c in constants]) if constants else np.zeros(0),
                             name=f"{PRIOR_PREFIX}_values")
    position = 0
    for rv, found in sites:
        rng, size, *params = rv.owner.inputs
        for i, constant, broadcast in found:
            shape = np.shape(constant.data)
            piece = packed[position:position + int(np.prod(shape))].reshape(shape).astype(constant.dtype)
            position += int(np.prod(shape))
            params[i] = broadcast(piece) if broadcast is not None else piece
        new_node = rv.owner.op.make_node(rng, size, *params)
        fgraph.replace_all(list(zip(rv.owner.outputs, new_node.outputs)), import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def lift_data(pymc_model):
    """A copy of the model whose data arrays are slices of shared vectors, one per dtype.

    Float array constants (Bambi's design matrices, the collapsed model's data summaries) and the
    observed values of any dtype become slices of `DATA_PREFIX_<dtype>`, in the graph's topological
    order, with their shapes fixed. A data set of the same layout (same shapes, same integer index
    arrays: the same persons, levels and cells) then compiles to the same graph, and a cached
    compiled model takes the new values as data. Scalars stay constants: they are structure
    (exponents, log 2 pi), not data.
    """
    import pytensor
    import pytensor.tensor as pt
    from pymc.model.fgraph import ModelObservedRV, fgraph_from_model, model_from_fgraph
    from pytensor.graph.basic import Constant
    from pytensor.tensor.type import TensorType

    fgraph, _ = fgraph_from_model(pymc_model)
    observed = {node.inputs[1] for node in fgraph.toposort() if isinstance(node.op, ModelObservedRV)}
    found: dict = {}  # insertion-ordered: the packing order is the graph's topological order
    for node in fgraph.toposort():
        for var in node.inputs:
            if (isinstance(var, Constant) and isinstance(var.type, TensorType) and var.type.ndim > 0
                    and (var in observed or var.dtype.startswith("float"))):
                found[var] = None
    by_dtype: dict[str, list] = {}
    for var in found:
        by_dtype.setdefault(var.dtype, []).append(var)
    replacements = []
    for dtype, constants in by_dtype.items():
        packed = pytensor.shared(np.concatenate([np.asarray(c.data).ravel() for c in constants]),
                                 name=f"{DATA_PREFIX}_{dtype}")
        position = 0
        for constant in constants:
            shape = np.shape(constant.data)
            size = int(np.prod(shape))
            replacements.append((constant, pt.specify_shape(packed[position:position + size].reshape(shape), shape)))
            position += size
    fgraph.replace_all(replacements, import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def _graph_outputs(pymc_model, var_names: list[str] | None) -> list:
    """What nutpie compiles: the log density and the stored deterministics."""
    stored = [pymc_model[name] for name in var_names or [] if pymc_model[name] in pymc_model.deterministics]
    return [pymc_model.logp(), *stored]


def shared_variables(pymc_model, var_names: list[str] | None = None, outputs: list | None = None) -> dict:
    """The shared variables that what nutpie compiles reads (`outputs`: `_graph_outputs`, if at hand), by name."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import ancestors

    outputs = outputs if outputs is not None else _graph_outputs(pymc_model, var_names)
    return {var.name: var for var in ancestors(outputs) if isinstance(var, SharedVariable)}


def swapped_values(pymc_model, var_names: list[str] | None = None, outputs: list | None = None) -> dict[str, np.ndarray]:
    """Current values of the shared variables that a cached compiled model takes as data: priors and data."""
    return {name: np.asarray(var.get_value()) for name, var in shared_variables(pymc_model, var_names, outputs).items()
            if (name or "").startswith((PRIOR_PREFIX, DATA_PREFIX))}


def structure_key(pymc_model, var_names: list[str] | None = None, outputs: list | None = None) -> str:
    """A hash of what nutpie compiles: the log-density and stored-variable graphs, dims and names.

    Constants enter by value; the shared variables of `lift_priors` and `lift_data` (and the collapsed
    model's data) by name and type only, since a cached model gets their current values: where the
    graph depends on their shapes it says so itself (slices, `specify_shape`, the sizes of its variables).
    Dims enter by length: level names only label the draws (`compile_nutpie` sets the current ones).
    `outputs`: `_graph_outputs(pymc_model, var_names)`, if at hand.
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import io_toposort
    from pytensor.tensor.type import TensorType

    outputs = outputs if outputs is not None else _graph_outputs(pymc_model, var_names)
    digest = hashlib.sha256()
    ids: dict[Any, int] = {}

    def ref(var) -> str:
        if var not in ids:
            ids[var] = len(ids)
            if isinstance(var, Constant):
                data = np.asarray(var.data)
                digest.update(f"const {var.type} {data.dtype} {data.shape}".encode())
                digest.update(data.tobytes() if data.dtype != object else repr(data.tolist()).encode())
            elif isinstance(var, SharedVariable):
                digest.update(f"shared {var.name} {var.type}".encode())
                if not (var.name or "").startswith((PRIOR_PREFIX, DATA_PREFIX)):
                    value = np.asarray(var.get_value())
                    digest.update(f" {value.shape}".encode())
                    if isinstance(var.type, TensorType):
                        digest.update(value.tobytes())
            elif var.owner is None:
                digest.update(f"input {var.name} {var.type}".encode())
        return str(ids[var])

    for node in io_toposort([], outputs):
        inputs = ",".join(ref(v) for v in node.inputs)
        props = node.op._props_dict() if hasattr(node.op, "_props_dict") else {}
        digest.update(f"{type(node.op).__module__}.{type(node.op).__qualname__} {props!r} ({inputs})".encode())
        for out in node.outputs:
            ids[out] = len(ids)
            digest.update(f" -> {out.type}".encode())
    digest.update(repr([ids.get(o) for o in outputs]).encode())
    digest.update(repr(sorted((k, len(v) if v is not None else None) for k, v in pymc_model.coords.items())).encode())
    digest.update(repr(sorted((k, tuple(v or ())) for k, v in pymc_model.named_vars_to_dims.items())).encode())
    digest.update(repr(sorted(var_names or [])).encode())
    return digest.hexdigest()


_COMPILED = LruCache(CACHE_SIZE)


def compile_nutpie(pymc_model, var_names: list[str] | None = None, *, cache: bool = True):
    """A nutpie-compiled model, from the in-process or the disk cache when the same structure was compiled before.

    Returns (compiled model with the current prior and data values, seconds spent, where it came from:
    "memory" (this process compiled it before), "disk" (another process did: `disk_compile`) or "" (compiled now)).
    Without `cache`, PyTensor compiles the graph in any case (numba's own disk cache still serves the machine code).
    """
    from bayes_trial.sampling.disk_compile import compile_model, for_model

    started = time.perf_counter()
    lifted = lift_data(lift_priors(pymc_model))
    outputs = _graph_outputs(lifted, var_names)
    shared = shared_variables(lifted, var_names, outputs)
    key = structure_key(lifted, var_names, outputs)

    def make():
        return compile_model(lifted, var_names, key=key if cache else None, shared=shared)

    (compiled, from_disk), hit = _COMPILED.get_or_make(key, make) if cache else (make(), False)
    if hit:  # compiled for another model of the same structure: this model's level names and initial points
        compiled = for_model(compiled, lifted)
    compiled = compiled.with_data(**{name: value for name, value in swapped_values(lifted, var_names, outputs).items()
                                     if name in compiled.shared_data})
    return compiled, time.perf_counter() - started, "memory" if hit else "disk" if from_disk else ""


def clear_cache() -> None:
    """Forget the compiled nutpie models."""
    _COMPILED.clear()


# ---------------------------------------------------------------------------------------------
# The nutpie path of `fit`
# ---------------------------------------------------------------------------------------------


def sampled_model(full: bmb.Model | OtherTerms, prepared: PreparedData, *, progress: bool = False,
                  marginalise: bool = True, collapse: bool = True):
    """What `sample_nutpie` compiles and samples: (PyMC model, `ParticipantStatistics` or None, whether collapsed).

    The collapsed model where the model allows it, else the marginal one, else the built model itself;
    see `sample_nutpie` for the arguments. Only the collapsed model holds no size of the data, so only
    its compiled form serves trials of other layouts.
    """
    if isinstance(full, OtherTerms) and not (marginalise and can_marginalise(prepared)):
        raise ValueError("OtherTerms needs a Gaussian participant-intercept model and marginalise=True")
    stats = None
    if marginalise and can_marginalise(prepared):
        started = time.perf_counter()
        stats = participant_statistics(prepared, full)
        waves = ", ".join(f"{int(n):,} with {int(m)}" for n, m in zip(stats.persons, stats.sizes))
        say(f"  {len(stats.levels):,} persons ({waves} rows) summarised in {time.perf_counter() - started:.1f} s", progress)
    target = collapsed_model(full, stats) if stats is not None and collapse else None
    collapsed = target is not None
    if stats is not None and not collapsed:
        target = marginal_model(prepared, full, stats).backend.model
    return (target if target is not None else full.backend.model), stats, collapsed


def sample_nutpie(full: bmb.Model | OtherTerms, prepared: PreparedData, settings: dict[str, Any], *,
                  progress: bool = False, marginalise: bool = True, collapse: bool = True, low_rank: bool = False,
                  cache: bool = True, save_warmup: bool = False, for_storage: bool = False) -> az.InferenceData:
    """Sample `full` with nutpie: collapsed or marginal where the model allows, else as built.

    `full` is the built Bambi model, or `OtherTerms` (`build_other_terms`: what `fit` passes for a
    Gaussian participant-intercept model, whose full Bambi model would hold persons x persons matrices).
    The result holds the full model's parameters; `sample_stats.attrs` records `compile_seconds`,
    `compile_cached` (this process compiled it before), `compile_from_disk` (another did), `sampling_seconds`
    and what was integrated out. With `for_storage` (what `fit`
    asks), a run that integrated the participant intercepts out also has its `log_likelihood` group and
    no `_offset` variables. Progress (stages and nutpie's bar) goes to stderr when `progress` is true.
    """
    import nutpie
    from threadpoolctl import threadpool_limits

    target, stats, collapsed = sampled_model(full, prepared, progress=progress, marginalise=marginalise, collapse=collapse)
    compiled, compile_seconds, reused = compile_nutpie(target, stored_variables(target), cache=cache)
    how = {"memory": "reused the compiled model",
           "disk": f"compiled model loaded from the disk cache in {compile_seconds:.1f} s"}.get(
        reused, f"compiled in {compile_seconds:.1f} s")
    integrated = ("; coefficients and participant intercepts integrated out" if collapsed
                  else f"; {PARTICIPANT_TERM} integrated out" if stats is not None else "")
    say(f"  {how}{integrated}; sampling ...", progress)
    started = time.perf_counter()
    # One BLAS thread per chain: nutpie already runs a thread per chain, and OpenBLAS threads on top of
    # them make small matrix operations (the collapsed model's Cholesky) tens of times slower.
    with threadpool_limits(limits=1):
        raw = nutpie.sample(
            compiled, draws=settings["draws"], tune=settings["tune"], chains=settings["chains"],
            seed=settings["seed"], target_accept=settings["target_accept"], save_warmup=save_warmup,
            progress_bar=progress, low_rank_modified_mass_matrix=low_rank,
        )
    sampling_seconds = time.perf_counter() - started
    if stats is not None:
        started = time.perf_counter()
        raw = complete_posterior(raw, full, stats, settings["seed"], collapsed, offsets=not for_storage,
                                 dtype=np.float32 if for_storage else np.float64)
        stored = for_storage and stores_log_likelihood(len(prepared.data), settings["chains"] * settings["draws"])
        if stored:
            raw.add_groups(log_likelihood=log_likelihood_group(raw.posterior, stats, prepared))
        say(f"  participant intercepts{' and coefficients' if collapsed else ''} drawn"
            f"{', log-likelihood computed' if stored else ''} in {time.perf_counter() - started:.1f} s", progress)
    raw.sample_stats.attrs.update(compile_seconds=round(compile_seconds, 3), compile_cached=int(reused == "memory"),
                                  compile_from_disk=int(reused == "disk"),
                                  sampling_seconds=round(sampling_seconds, 3))
    return raw
