"""Convergence diagnostics with numpy alone: ArviZ's numbers without importing ArviZ (4 s) or SciPy.

Rank-normalised split R-hat, bulk and tail ESS, MCSE of the mean and SD (Vehtari et al. 2021), as
`arviz.summary(kind="diagnostics")` computes them, and E-BFMI as `arviz.bfmi`; each for every
column of a (chain, draw, K) array at once where numpy allows. `bayes-trial query` states whether
a fit passed its diagnostics before it answers, so these sit on the path of every answer.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np

MIN_DRAWS = 4
#: Blom's offset of the normal scores of ranks (ArviZ's `_backtransform_ranks`).
BLOM = 3 / 8


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N of each column of an (N, K) array, ties given their average rank."""
    rows = np.ascontiguousarray(values.T)  # sorting along contiguous rows is several times faster
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    tied = np.zeros(rows.shape, dtype=bool)
    tied[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    sorted_ranks = np.broadcast_to(np.arange(1.0, rows.shape[1] + 1), rows.shape).copy()
    # Draws rarely tie (distances from the median do, in pairs): average the few tied runs one by one.
    for row in np.flatnonzero(tied.any(axis=1)):
        positions = np.flatnonzero(tied[row])
        for run in np.split(positions, np.flatnonzero(np.diff(positions) > 1) + 1):
            first, last = run[0] - 1, run[-1]
            sorted_ranks[row, first:last + 1] = (first + last) / 2 + 1
    ranks = np.empty(rows.shape)
    np.put_along_axis(ranks, order, sorted_ranks, axis=1)
    return ranks.T


@lru_cache(maxsize=8)
def _half_rank_scores(n: int) -> np.ndarray:
    """Normal scores of the ranks 0, 1/2, 1, ..., n among n values (ties make half ranks)."""
    quantile = NormalDist().inv_cdf
    return np.array([np.nan] * 2 + [quantile((k / 2 - BLOM) / (n - 2 * BLOM + 1)) for k in range(2, 2 * n + 1)])


def normal_scores(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised draws: the normal quantile of each draw's rank among all draws of its column.

    `draws` is (chain, draw, K); ranks are over chains and draws together.
    """
    flat = draws.reshape(-1, draws.shape[-1])
    halves = np.rint(2 * average_ranks(flat)).astype(np.int64)
    return _half_rank_scores(len(flat))[halves].reshape(draws.shape)


def split_chains(draws: np.ndarray) -> np.ndarray:
    """Each chain's first and last halves as separate chains (a middle draw of an odd count is left out)."""
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, -half:]], axis=0)


def _r_hat(draws: np.ndarray) -> np.ndarray:
    n = draws.shape[1]
    between = n * draws.mean(axis=1).var(axis=0, ddof=1)
    within = draws.var(axis=1, ddof=1).mean(axis=0)
    return np.sqrt((between / within + n - 1) / n)


def rank_r_hat(draws: np.ndarray, *, fold_split: bool = True) -> np.ndarray:
    """Rank-normalised split R-hat of each column of (chain, draw, K) draws (`arviz.rhat(method="rank")`).

    The larger of the R-hats of the rank-normalised draws and of their distances from the median;
    `fold_split` takes that median over the split chains (as `arviz.rhat`), else over all draws
    (as `arviz.summary`): the same unless a chain has an odd number of draws.
    """
    chains, n_draws, columns = draws.shape
    if chains < 2 or n_draws < MIN_DRAWS:
        return np.full(columns, np.nan)
    split = split_chains(draws)
    if fold_split:
        folded = np.abs(split - np.median(split.reshape(-1, columns), axis=0))
    else:
        folded = split_chains(np.abs(draws - np.median(draws.reshape(-1, columns), axis=0)))
    return np.maximum(_r_hat(normal_scores(split)), _r_hat(normal_scores(folded)))


def _autocovariance(draws: np.ndarray) -> np.ndarray:
    """Autocovariance at every lag along the draw axis of (chain, draw, K) draws (FFT, as ArviZ)."""
    n = draws.shape[1]
    # Draws last and contiguous: the transforms run along memory, several times faster.
    centred = np.ascontiguousarray(np.moveaxis(draws - draws.mean(axis=1, keepdims=True), 1, -1))
    size = 1 << (2 * n - 1).bit_length()
    transformed = np.fft.rfft(centred, n=size, axis=-1)
    return np.moveaxis(np.fft.irfft(transformed * np.conjugate(transformed), n=size, axis=-1)[..., :n] / n, -1, 1)


def _geyer_ess(acov: np.ndarray, chain_means: np.ndarray, size: int) -> float:
    """ESS of one column from its chains' autocovariances (Geyer's initial monotone sequence, ArviZ's `_ess`)."""
    n_chain, n_draw = acov.shape
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(chain_means, ddof=1)
    rho = np.zeros(n_draw)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * np.sum(rho[:max_t + 1]) + np.sum(rho[max_t + 1:max_t + 2])
    tau = max(tau, 1 / np.log10(size))
    return np.nan if np.isnan(rho).any() else size / tau


def ess(draws: np.ndarray) -> np.ndarray:
    """Effective sample size of each column of (chain, draw, K) draws, as they are (no splitting)."""
    draws = np.asarray(draws, dtype=float)
    acov = _autocovariance(draws)
    means = draws.mean(axis=1)
    flat = draws.reshape(-1, draws.shape[-1])
    constant = (flat.max(axis=0) - flat.min(axis=0)) < np.finfo(float).resolution
    out = np.empty(draws.shape[-1])
    for k in range(draws.shape[-1]):
        if np.isnan(flat[:, k]).any():
            out[k] = np.nan
        elif constant[k]:
            out[k] = flat[:, k].size
        else:
            out[k] = _geyer_ess(acov[:, :, k], means[:, k], flat[:, k].size)
    return out


def summary_diagnostics(draws: np.ndarray) -> dict[str, np.ndarray]:
    """R-hat, bulk and tail ESS and MCSE of mean and SD of each column of (chain, draw, K) draws.

    The numbers of ``arviz.summary(kind="diagnostics", round_to="none")`` (its `_multichain_statistics`),
    by name: ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``mcse_sd``. Columns with a NaN
    draw, or fewer than four draws per chain, get NaN throughout; R-hat needs two chains.
    """
    draws = np.asarray(draws, dtype=float)
    chains, n_draws, columns = draws.shape
    flat = draws.reshape(-1, columns)
    valid = ~np.isnan(flat).any(axis=0) & (n_draws >= MIN_DRAWS)
    out = {key: np.full(columns, np.nan) for key in ("r_hat", "ess_bulk", "ess_tail", "mcse_mean", "mcse_sd")}
    if not valid.any():
        return out
    draws, flat = draws[:, :, valid], flat[:, valid]
    low, high = np.quantile(flat, [0.05, 0.95], axis=0)
    tail = np.minimum(ess(split_chains((draws <= low).astype(float))), ess(split_chains((draws <= high).astype(float))))
    squares = (draws - flat.mean(axis=0)) ** 2
    total = squares.reshape(-1, squares.shape[-1]).sum(axis=0)
    ess_mean = ess(split_chains(draws))
    evar = total / flat.shape[0]
    varvar = ((squares**2).reshape(-1, squares.shape[-1]).mean(axis=0) - evar**2) / ess(split_chains(squares))
    found = {"r_hat": rank_r_hat(draws, fold_split=False), "ess_bulk": ess(normal_scores(split_chains(draws))),
             "ess_tail": tail, "mcse_mean": np.sqrt(total / (flat.shape[0] - 1) / ess_mean),
             "mcse_sd": np.sqrt(varvar / evar / 4)}
    for key, values in found.items():
        out[key][valid] = values
    return out


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X chi-squared on a whole number `df` of degrees of freedom (closed form, no SciPy)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        terms, term = 0.0, 1.0
        for i in range(df // 2):
            terms += term
            term *= half / (i + 1)
        return math.exp(-half) * terms
    root = math.sqrt(x)
    terms, term = 0.0, root
    for i in range(1, (df - 1) // 2 + 1):
        terms += term
        term *= x / (2 * i + 1)
    return math.erfc(root / math.sqrt(2)) + 2 * math.exp(-half) / math.sqrt(2 * math.pi) * terms


def chi2_isf(p: float, df: int) -> float:
    """The x with P(X > x) = p for X chi-squared on `df` (whole) degrees of freedom (`scipy.stats.chi2.isf`)."""
    low, high = 0.0, float(df)
    while chi2_sf(high, df) > p:
        low, high = high, 2 * high
    for _ in range(200):  # bisection to the last bit
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if chi2_sf(middle, df) > p else (low, middle)
    return (low + high) / 2


def bfmi(energy: np.ndarray) -> np.ndarray:
    """Estimated Bayesian fraction of missing information of each chain's (chain, draw) energy (`arviz.bfmi`)."""
    energy = np.atleast_2d(np.asarray(energy, dtype=float))
    return np.square(np.diff(energy, axis=1)).mean(axis=1) / np.var(energy, axis=1, ddof=1)
