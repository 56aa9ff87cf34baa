"""Prior what-ifs: a fit's answers under other priors, by re-weighting its stored draws.

A posterior under prior p_new differs from the stored one (prior p_old) by the factor
p_new(θ) / p_old(θ), so each stored draw gets that ratio as its importance weight. Pareto-smoothed
importance sampling (PSIS, Vehtari et al. 2024, JMLR 25(72)) stabilises the largest weights and
its Pareto shape k-hat says whether the draws can represent the new posterior at all: above 0.7
they cannot, and `what_if` refits with the new priors instead.

The old prior is the one the fit sampled with (`Fit.used_spec`: `auto` priors as the numbers they
became). This module imports no PyMC, Bambi or ArviZ itself: a what-if that needs no refit costs
a prior density per draw, PSIS and the queries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from bayes_trial.core.errors import SpecError
from bayes_trial.core.progress import say
from bayes_trial.core.summaries import DEFAULT_INTERVAL
from bayes_trial.estimands.query import (answer, arms, contrast_draws, contrast_text, parse_hypothesis, population,
                                         scale_factor, waves)
from bayes_trial.modelling.spec import AUTO, Prior, check_prior_for_term
from bayes_trial.sampling.fit import Fit, refit

KHAT_THRESHOLD = 0.7


def prior_distribution(prior: Prior) -> PriorDensity:
    """The density of a spec prior, with PyMC's parametrisation (`PriorDensity.logpdf`).

    PyMC's half distributions live on [0, inf) with twice the density of their symmetric parent
    there; Exponential and Gamma take rates.
    """
    if prior.dist not in _LOG_DENSITIES:
        raise SpecError(f"what-if: no density for prior {prior}; valid: {', '.join(_LOG_DENSITIES)}")
    return PriorDensity(prior.dist, dict(prior.params))


@dataclass(frozen=True)
class PriorDensity:
    """One spec prior's log density, written out with numpy and `scipy.special`.

    `scipy.stats` would give the same numbers, but importing it takes most of a second, and a
    what-if should answer in about as long as a query.
    """

    dist: str
    params: dict

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log density at each value of `x`; -inf outside the support."""
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            density, inside = _LOG_DENSITIES[self.dist](x, **self.params)
        return np.where(inside, density, -np.inf)


_LOG_2PI = np.log(2 * np.pi)


def _normal(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * _LOG_2PI, True


def _student_t(x, nu, mu, sigma):
    z = (x - mu) / sigma
    return (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi) - np.log(sigma)
            - (nu + 1) / 2 * np.log1p(z**2 / nu)), True


def _cauchy(x, alpha, beta):
    return -np.log(np.pi * beta) - np.log1p(((x - alpha) / beta) ** 2), True


def _logistic(x, mu, s):
    z = (x - mu) / s
    return -z - np.log(s) - 2 * np.logaddexp(0, -z), True


def _folded(parent):
    def density(x, **params):
        folded, _ = parent(x, **params)
        return np.log(2) + folded, x >= 0
    return density


def _exponential(x, lam):
    return np.log(lam) - lam * x, x >= 0


def _gamma(x, alpha, beta):
    return alpha * np.log(beta) - special.gammaln(alpha) + (alpha - 1) * np.log(x) - beta * x, x > 0


def _inverse_gamma(x, alpha, beta):
    return alpha * np.log(beta) - special.gammaln(alpha) - (alpha + 1) * np.log(x) - beta / x, x > 0


def _log_normal(x, mu, sigma):
    return -np.log(x) - np.log(sigma) - 0.5 * _LOG_2PI - (np.log(x) - mu) ** 2 / (2 * sigma**2), x > 0


def _uniform(x, lower, upper):
    return np.full_like(x, -np.log(upper - lower)), (x >= lower) & (x <= upper)


def _beta(x, alpha, beta):
    return (alpha - 1) * np.log(x) + (beta - 1) * np.log1p(-x) - special.betaln(alpha, beta), (x > 0) & (x < 1)


_LOG_DENSITIES = {
    "Normal": _normal, "StudentT": _student_t, "Cauchy": _cauchy, "Logistic": _logistic,
    "HalfNormal": _folded(lambda x, sigma: _normal(x, 0.0, sigma)),
    "HalfStudentT": _folded(lambda x, nu, sigma: _student_t(x, nu, 0.0, sigma)),
    "HalfCauchy": _folded(lambda x, beta: _cauchy(x, 0.0, beta)),
    "Exponential": _exponential, "Gamma": _gamma, "InverseGamma": _inverse_gamma, "LogNormal": _log_normal,
    "Uniform": _uniform, "Beta": _beta,
}


def term_variable(term: str) -> str:
    """The posterior variable whose draws a term's prior is on: a group term's prior is on its SD."""
    return f"{term}_sigma" if "|" in term else term


def log_prior(fit: Fit, term: str, prior: Prior) -> np.ndarray:
    """Log density of each stored draw of `term` under `prior`, summed over the term's columns.

    Parameters
    ----------
    fit
        A fit; its posterior holds the term's draws.
    term
        A prior term as a spec names it: `arm`, `Intercept`, `sigma`, `1|municipality` (whose prior
        is on its SD, the posterior's `1|municipality_sigma`; its group effects keep their Normal(0,
        SD) given the SD, so only that SD's density changes).
    prior
        The distribution; each column of a vector term (arm levels) has it independently.

    Returns
    -------
    numpy.ndarray
        One value per draw, chain by chain (as `hypothesis` stacks draws).
    """
    values = fit.posterior[term_variable(term)]
    draws = values.transpose("chain", "draw", ...).to_numpy().astype(float)
    density = prior_distribution(prior).logpdf(draws.reshape(draws.shape[0] * draws.shape[1], -1))
    return np.sum(density, axis=1)


def check_what_if_priors(fit: Fit, priors: dict[str, Prior]) -> None:
    """Refuse a prior for a term the fit has no draws for, or one its term cannot take (one line each)."""
    used = fit.used_spec.priors
    posterior = fit.posterior
    valid = [t for t, p in used.items() if p.dist != AUTO and term_variable(t) in posterior]
    for term, prior in priors.items():
        if term not in valid:
            raise SpecError(f"what-if: prior for unknown term {term!r}; terms of this fit ({fit.spec.name}): "
                            f"{', '.join(valid)}")
        check_prior_for_term(term, prior, where=f"what-if {term}")


def log_weights(fit: Fit, priors: dict[str, Prior]) -> np.ndarray:
    """log p_new(θ) − log p_old(θ) per stored draw: the raw importance log-weights of new `priors`.

    Terms whose prior is unchanged contribute nothing; the old prior of each term is the one the fit
    sampled with (`Fit.used_spec`).
    """
    check_what_if_priors(fit, priors)
    old = fit.used_spec.priors
    posterior = fit.posterior
    total = np.zeros(posterior.sizes["chain"] * posterior.sizes["draw"])
    for term, prior in priors.items():
        if prior != old[term]:
            total += log_prior(fit, term, prior) - log_prior(fit, term, old[term])
    return total


def psis(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance sampling of one vector of log importance ratios.

    The largest M = ceil(min(S / 5, 3 √S)) of the S ratios are replaced by the expected order
    statistics of a generalized Pareto distribution fitted to them (Zhang & Stephens' empirical
    Bayes estimate with a weak prior on the shape, as in Vehtari et al. 2024), and truncated at the
    largest raw ratio.

    Parameters
    ----------
    log_ratios
        Log importance ratios, one per draw (any additive constant; −inf for a draw the new
        prior excludes).

    Returns
    -------
    log_weights : numpy.ndarray
        Smoothed log-weights, normalised so that their exponentials sum to 1.
    khat : float
        The fitted Pareto shape: up to 0.7 the weighted estimates are reliable. −inf where the
        largest ratio is shared by more than the tail's draws (bounded weights: nothing to smooth,
        e.g. an unchanged prior); +inf where the tail is too short to fit (fewer than 5 draws above
        the cut-off).
    """
    x = np.array(log_ratios, dtype=float)
    x -= np.max(x)
    size = len(x)
    tail_length = int(np.ceil(min(size / 5, 3 * np.sqrt(size))))
    cutoff = max(np.sort(x)[-tail_length - 1], np.log(np.finfo(float).tiny))
    tail = np.flatnonzero(x > cutoff)
    if cutoff == 0:
        khat = -np.inf
    elif len(tail) <= 4:
        khat = np.inf
    else:
        tail = tail[np.argsort(x[tail])]
        exceedances = np.exp(x[tail]) - np.exp(cutoff)
        khat, scale = _fit_generalized_pareto(exceedances)
        if np.isfinite(khat):
            probs = (np.arange(len(tail)) + 0.5) / len(tail)
            x[tail] = np.log(_pareto_quantile(probs, khat, scale) + np.exp(cutoff))
            x = np.minimum(x, 0.0)
    finite = x[np.isfinite(x)]
    top = np.max(finite)
    return x - (top + np.log(np.sum(np.exp(finite - top)))), float(khat)


def _fit_generalized_pareto(exceedances: np.ndarray) -> tuple[float, float]:
    """Shape and scale of a generalized Pareto fit to sorted positive exceedances.

    Zhang & Stephens (2009): a posterior mean of θ = −k/σ over a grid, then k from θ, with the
    shape pulled towards 0.5 by a prior worth 10 observations (Vehtari et al. 2024, appendix C).
    """
    n = len(exceedances)
    grid_size = 30 + int(np.sqrt(n))
    theta = 1 - np.sqrt(grid_size / (np.arange(1, grid_size + 1) - 0.5))
    theta = theta / (3 * exceedances[int(n / 4 + 0.5) - 1]) + 1 / exceedances[-1]
    k = np.mean(np.log1p(-theta[:, None] * exceedances), axis=1)
    profile = n * (np.log(-theta / k) - k - 1)
    weights = 1 / np.sum(np.exp(profile - profile[:, None]), axis=1)
    keep = weights >= 10 * np.finfo(float).eps
    theta, weights = theta[keep], weights[keep] / np.sum(weights[keep])
    theta_mean = np.sum(theta * weights)
    k_mean = np.mean(np.log1p(-theta_mean * exceedances))
    scale = -k_mean / theta_mean
    return (n * k_mean + 10 * 0.5) / (n + 10), scale


def _pareto_quantile(probs: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """Quantiles of a generalized Pareto distribution with location 0."""
    if abs(shape) < np.finfo(float).eps:
        return -scale * np.log1p(-probs)
    return scale * np.expm1(-shape * np.log1p(-probs)) / shape


@dataclass(frozen=True)
class PriorWeights:
    """Importance weights of a fit's stored draws under new priors."""

    #: Normalised weights (sum 1), one per draw, chain by chain.
    weights: np.ndarray
    #: Pareto shape of the ratios' tail (see `psis`).
    khat: float

    @property
    def equal(self) -> bool:
        """Whether every draw has the same weight (the prior is unchanged where the draws lie)."""
        return bool(np.all(self.weights == self.weights[0]))

    @property
    def ess(self) -> float:
        """Effective number of independent draws the weights leave: 1 / Σ w²."""
        return float(1 / np.sum(self.weights**2))


def prior_weights(fit: Fit, priors: dict[str, Prior]) -> PriorWeights:
    """PSIS weights that turn `fit`'s posterior into the posterior under `priors` (other terms unchanged).

    Parameters
    ----------
    fit
        A stored or fresh fit.
    priors
        New priors by term, e.g. ``{"arm": parse_prior("Normal(0, 0.25)")}``.

    Returns
    -------
    PriorWeights
        Weights and k-hat; an unchanged prior gives equal weights.

    Raises
    ------
    SpecError
        For a term the fit has no prior or draws for, or a prior the term cannot take.
    """
    smoothed, khat = psis(log_weights(fit, priors))
    return PriorWeights(np.exp(smoothed), khat)


def default_hypotheses(fit: Fit) -> list[str]:
    """Each arm against control, "> 0", as `query` writes contrasts."""
    control = fit.spec.control_arm
    return [f"{contrast_text(arm, control)} > 0" for arm in arms(fit) if arm != control]


def what_if(fit: Fit, priors: dict[str, Prior], hypotheses: list[str] | None = None, *,
            khat_threshold: float = KHAT_THRESHOLD, refit_if_needed: bool = True,
            interval: float = DEFAULT_INTERVAL, progress: bool = True) -> pd.DataFrame:
    """The fit's answers under other priors, beside its own: re-weighted draws, or a refit where they cannot serve.

    Parameters
    ----------
    fit
        A stored or fresh fit (not a hazard fit).
    priors
        New priors by term (`modelling.spec.parse_prior`); other terms keep the fit's.
    hypotheses
        Expressions as `query` reads them; default each arm against control > 0.
    khat_threshold
        Above this Pareto k-hat the weights are not trusted and the model is refitted.
    refit_if_needed
        False: report re-weighted answers whatever k-hat is (the `khat` column says how far to
        trust them).
    interval
        Width of the equal-tailed intervals.
    progress
        Say on stderr when and why a refit runs.

    Raises
    ------
    SpecError
        For a hazard fit, an unknown term, a prior the term cannot take, or a hypothesis `query`
        cannot read.

    Returns
    -------
    pandas.DataFrame
        One row per hypothesis: hypothesis, [wave: the last, for survey models], unit, p_old, mean_old,
        lower_old, upper_old, p_new, mean_new, lower_new, upper_new (means and bounds in `unit`), khat,
        ess (of the weights, also where they were not used), method ("reweighted", "refit", or
        "unchanged" where every draw has the same weight: the fitted answers), draws
        (stored draws), seconds (the whole what-if, refit included).
    """
    started = time.perf_counter()
    if fit.family.over_time:
        raise SpecError(f"what-if: {fit.spec.name} is a discrete-time hazard fit; what-ifs answer arm contrasts "
                        "of the other families (refit it with the new prior: bayes_trial.refit)")
    parsed = [parse_hypothesis(text, arms(fit), fit.spec.outcome_unit) for text in hypotheses or default_hypotheses(fit)]
    weighted = prior_weights(fit, priors)
    needs_refit = refit_if_needed and weighted.khat > khat_threshold
    if needs_refit:
        say(f"what-if: Pareto k-hat {weighted.khat:.2f} > {khat_threshold:g}: the stored draws cannot represent "
            "the posterior under the new priors; refitting", progress)
        new_fit = refit(fit, priors=priors, progress=progress)
    wave = (waves(fit) or [None])[-1]
    scale = scale_factor(fit)
    rows = []
    for hypothesis in parsed:
        draws = contrast_draws(fit, hypothesis, population(fit), wave)
        if needs_refit:
            new = answer(contrast_draws(new_fit, hypothesis, population(new_fit), wave), hypothesis, scale, interval)
        else:
            # Equal weights are the stored posterior itself: its answers, exactly.
            new = answer(draws, hypothesis, scale, interval, weights=None if weighted.equal else weighted.weights)
        old = answer(draws, hypothesis, scale, interval)
        rows.append({"hypothesis": hypothesis.text, **({} if wave is None else {"wave": wave}),
                     "unit": fit.spec.outcome_unit, **{f"{key}_old": old[col] for key, col in _ANSWER.items()},
                     **{f"{key}_new": new[col] for key, col in _ANSWER.items()}})
    table = pd.DataFrame(rows)
    table["khat"] = weighted.khat
    table["ess"] = weighted.ess
    table["method"] = "refit" if needs_refit else "unchanged" if weighted.equal else "reweighted"
    table["draws"] = weighted.weights.size
    table["seconds"] = time.perf_counter() - started
    return table


_ANSWER = {"p": "p_hypothesis", "mean": "mean", "lower": "lower", "upper": "upper"}
