"""Aggregate-data hierarchical models: partial pooling of effects reported per group (town, site, stratum).

Two models, in the spirit of baggr's "Rubin" and "logit" models:

``pool(effects_df)`` — one row per group with a reported ``estimate`` and its standard error ``se``::

    theta_j  = mu + tau * eta_j,  eta_j ~ Normal(0, 1)      (non-centred)
    estimate_j ~ Normal(theta_j, se_j)                       (se_j treated as known)

  Default prior (``DEFAULT_PRIOR``), scaled to the data with S = max(max|estimate_j|, max se_j):
  ``mu ~ Normal(0, 10 S)`` (flat over any plausible effect) and ``tau ~ HalfCauchy(S)`` (Gelman 2006:
  weakly informative for few groups, allows no heterogeneity and heavy heterogeneity).
  ``prior="flat"`` gives p(mu, tau) ∝ 1 (``Flat()`` / ``HalfFlat()``), the prior of BDA3 §5.5 and of the
  published eight-schools posterior; it needs at least 3 groups to give a proper posterior.

``pool_counts(counts_df, control_arm)`` — events out of n per group × arm, logit scale::

    logit p_j,control = alpha_j,         alpha_j = baseline_mu + baseline_sd * z_j
    logit p_j,k       = alpha_j + beta_jk,  beta_jk = mu_k + tau_k * eta_jk
    events ~ Binomial(n, p)

  Defaults (``COUNTS_PRIOR``): baseline_mu ~ Normal(0, 1.5), baseline_sd ~ HalfNormal(1),
  mu_k ~ Normal(0, 1) (log-odds ratio; odds ratios 0.2–5 cover 90%), tau_k ~ HalfNormal(0.5).
  Effects are reported in percentage points: 100 × (p_j,k − p_j,control).

Both models carry, as deterministics, the group effects ``theta``, the pooling factors
``pooling = se²/(se² + tau²)`` (for counts: se of the log-odds ratio from the cell counts, with a
0.5 correction) and the effect in a **new group** ``theta_new`` (a fresh draw from the population
distribution), so :func:`pooling_summary` only summarises draws. Sampling uses nutpie
(``nutpie.compile_pymc_model`` + ``nutpie.sample(..., seed=seed)``), or ``pm.sample`` with
``sampler="pymc"``. Compiled nutpie models are cached per model structure (group labels, prior
families); prior parameters and data are swapped in with ``with_data`` so refits with other prior
scales (prior sensitivity) do not recompile. The default ``target_accept`` is 0.95 (eight schools: no
divergences). :func:`format_pooling_summary` prints a summary; :func:`plot_forest` draws reported
against shrunken effects, the pooled effect and a new group (PNG + SVG).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayes_trial.core.cache import LruCache
from bayes_trial.core.errors import DataError, SpecError
from bayes_trial.plots.figures import save_figure_as
from bayes_trial.core.summaries import DEFAULT_INTERVAL, summarise_draws

SAMPLERS = ("nutpie", "pymc")
# Eight schools with the non-centred model still gives a few divergences at nutpie's default 0.8;
# 0.95 gave none in 27 runs (3 priors x 3 seeds x 3 settings) at a cost of about a second.
TARGET_ACCEPT = 0.95

# Prior for pool(); "S" is replaced by the data scale max(max|estimate|, max se).
DEFAULT_PRIOR = {"mu": "Normal(0, 10*S)", "tau": "HalfCauchy(S)"}
FLAT_PRIOR = {"mu": "Flat()", "tau": "HalfFlat()"}
# Prior for pool_counts(), on the log-odds scale.
COUNTS_PRIOR = {
    "baseline_mu": "Normal(0, 1.5)",
    "baseline_sd": "HalfNormal(1)",
    "mu": "Normal(0, 1)",
    "tau": "HalfNormal(0.5)",
}

_LOCATION_DISTS = {"Normal", "StudentT", "Cauchy", "Logistic", "Flat"}
_SCALE_DISTS = {"HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma", "InverseGamma",
                "LogNormal", "Uniform", "HalfFlat"}
_ROLES = {"mu": _LOCATION_DISTS, "tau": _SCALE_DISTS, "baseline_mu": _LOCATION_DISTS,
          "baseline_sd": _SCALE_DISTS}

_CACHE = LruCache(16)


# --------------------------------------------------------------------------------------------- priors

def _parse_one(name: str, text: Any, scale: float | None) -> tuple[str, dict[str, float]]:
    """`Normal(0, 10*S)` -> ("Normal", {"mu": 0, "sigma": 10 S}); also Flat() / HalfFlat()."""
    if hasattr(text, "dist") and hasattr(text, "params"):  # a bayes_trial.spec.Prior
        dist, params = text.dist, dict(text.params)
    else:
        raw = str(text).strip()
        if raw.replace(" ", "") in ("Flat()", "HalfFlat()"):
            dist, params = raw.replace(" ", "")[:-2], {}
        else:
            if "S" in raw.split("(", 1)[-1]:
                if scale is None:
                    raise SpecError(f"prior for {name}: 'S' (data scale) is only defined for pool()")
                raw = raw.split("(", 1)[0] + "(" + _substitute_scale(raw.split("(", 1)[1], scale)
            from bayes_trial.modelling.spec import parse_prior  # lazy: spec is only needed for prior strings

            prior = parse_prior(raw, where=f"prior for {name}")
            dist, params = prior.dist, dict(prior.params)
    allowed = _ROLES[name]
    if dist not in allowed:
        raise SpecError(f"prior for {name}: {dist} is not allowed here; use one of {', '.join(sorted(allowed))}")
    if dist == "Uniform" and params["lower"] < 0:
        raise SpecError(f"prior for {name}: a Uniform prior for a standard deviation needs lower >= 0")
    return dist, {k: float(v) for k, v in params.items()}


def _substitute_scale(args: str, scale: float) -> str:
    """Evaluate the arguments of a prior that mention S, e.g. '0, 10*S)' with S = 28 -> '0, 280.0)'."""
    import ast

    body = args.rstrip().rstrip(")")
    try:
        call = ast.parse(f"f({body})", mode="eval").body
    except SyntaxError:
        raise SpecError(f"cannot read prior arguments {args!r}") from None

    def ev(node: ast.AST) -> float:
        code = compile(ast.Expression(node), "<prior>", "eval")
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if names - {"S"} or any(isinstance(n, ast.Call | ast.Attribute | ast.Subscript) for n in ast.walk(node)):
            raise SpecError(f"cannot read prior argument {ast.unparse(node)!r}; only numbers and S are allowed")
        return float(eval(code, {"__builtins__": {}}, {"S": scale}))  # noqa: S307 - checked above

    parts = [repr(ev(a)) for a in call.args] + [f"{kw.arg}={ev(kw.value)!r}" for kw in call.keywords]
    return ", ".join(parts) + ")"


def resolve_prior(prior: Mapping[str, Any] | str | None, defaults: Mapping[str, str],
                  scale: float | None = None) -> dict[str, tuple[str, dict[str, float]]]:
    """Merge a user prior (None, "flat", or a dict of NAME -> "Dist(...)") into `defaults` and parse it."""
    if prior is None:
        given: dict[str, Any] = {}
    elif isinstance(prior, str):
        if prior.lower() not in ("flat", "bda3", "uniform"):
            raise SpecError(f"prior {prior!r}: use None (default), 'flat', or a dict such as "
                            "{'tau': 'HalfNormal(5)'}")
        if "baseline_mu" in defaults:
            raise SpecError("prior 'flat' is only available for pool(), not for pool_counts()")
        given = dict(FLAT_PRIOR)
    elif isinstance(prior, Mapping):
        given = dict(prior)
    else:
        raise SpecError(f"prior must be None, 'flat' or a dict of parameter -> distribution, got {type(prior).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SpecError(f"prior: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(defaults)}")
    merged = {**defaults, **given}
    return {name: _parse_one(name, text, scale) for name, text in merged.items()}


def describe_prior(resolved: Mapping[str, tuple[str, dict[str, float]]]) -> str:
    """One line, e.g. 'mu ~ Normal(mu=0, sigma=280); tau ~ HalfCauchy(beta=28)'."""
    parts = []
    for name, (dist, params) in resolved.items():
        args = ", ".join(f"{k}={v:g}" for k, v in params.items())
        parts.append(f"{name} ~ {dist}({args})")
    return "; ".join(parts)


def _prior_rv(pm, name: str, dist: str, params: dict[str, float], **kwargs):
    """A prior whose parameters are pm.Data, so a cached compiled model can take new values."""
    if dist == "Flat":
        return pm.Flat(name, **kwargs)
    if dist == "HalfFlat":
        return pm.HalfFlat(name, **kwargs)
    data = {k: pm.Data(f"prior_{name}_{k}", v) for k, v in params.items()}
    return getattr(pm, dist)(name, **data, **kwargs)


def _prior_data(resolved: Mapping[str, tuple[str, dict[str, float]]]) -> dict[str, float]:
    return {f"prior_{name}_{k}": v for name, (_, params) in resolved.items() for k, v in params.items()}


def _families(resolved: Mapping[str, tuple[str, dict[str, float]]]) -> tuple:
    return tuple((name, dist) for name, (dist, _) in sorted(resolved.items()))


# --------------------------------------------------------------------------------------------- checks

def _need_frame(df: Any, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{what} is missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    if len(df) == 0:
        raise DataError(f"{what} has no rows")
    return df


def _numeric(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    try:
        values = pd.to_numeric(df[column], errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        raise DataError(f"{what}: column {column} must be numeric") from None
    bad = ~np.isfinite(values)
    if bad.any():
        label = df["group"].iloc[int(np.argmax(bad))]
        raise DataError(f"{what}: column {column} has a missing or infinite value (group {label!r})")
    return values


def check_effects(effects_df: pd.DataFrame) -> pd.DataFrame:
    """Validate an effects table (group, estimate, se) and return a clean copy; raises DataError."""
    what = "effects table"
    df = _need_frame(effects_df, what, ("group", "estimate", "se"))
    if df["group"].isna().any():
        raise DataError(f"{what}: column group has missing labels")
    groups = df["group"].astype(str)
    dup = groups[groups.duplicated()]
    if len(dup):
        raise DataError(f"{what}: group {dup.iloc[0]!r} appears more than once")
    est = _numeric(df, "estimate", what)
    se = _numeric(df, "se", what)
    if (se <= 0).any():
        i = int(np.argmax(se <= 0))
        raise DataError(f"{what}: se must be > 0; group {groups.iloc[i]!r} has se = {se[i]:g}")
    return pd.DataFrame({"group": groups.to_numpy(), "estimate": est, "se": se})


def check_counts(counts_df: pd.DataFrame, control_arm: str) -> pd.DataFrame:
    """Validate a counts table (group, arm, n, events) and return a clean copy; raises DataError."""
    what = "counts table"
    df = _need_frame(counts_df, what, ("group", "arm", "n", "events"))
    if df["group"].isna().any() or df["arm"].isna().any():
        raise DataError(f"{what}: columns group and arm must not have missing labels")
    out = pd.DataFrame({"group": df["group"].astype(str).to_numpy(), "arm": df["arm"].astype(str).to_numpy()})
    for col in ("n", "events"):
        values = _numeric(df.assign(group=out["group"].to_numpy()), col, what)
        if (values != np.round(values)).any() or (values < 0).any():
            raise DataError(f"{what}: column {col} must hold non-negative whole numbers")
        out[col] = values.astype(int)
    if (out["n"] <= 0).any():
        row = out[out["n"] <= 0].iloc[0]
        raise DataError(f"{what}: n must be > 0; group {row['group']!r}, arm {row['arm']!r} has n = {row['n']}")
    if (out["events"] > out["n"]).any():
        row = out[out["events"] > out["n"]].iloc[0]
        raise DataError(f"{what}: events > n for group {row['group']!r}, arm {row['arm']!r}")
    dup = out.duplicated(["group", "arm"])
    if dup.any():
        row = out[dup].iloc[0]
        raise DataError(f"{what}: group {row['group']!r}, arm {row['arm']!r} appears more than once")
    control_arm = str(control_arm)
    if control_arm not in set(out["arm"]):
        raise DataError(f"{what}: control arm {control_arm!r} not found; arms are {', '.join(sorted(set(out['arm'])))}")
    lacking = sorted(set(out["group"]) - set(out.loc[out["arm"] == control_arm, "group"]))
    if lacking:
        raise DataError(f"{what}: group {lacking[0]!r} has no row for the control arm {control_arm!r}")
    if set(out["arm"]) == {control_arm}:
        raise DataError(f"{what}: no arm besides the control arm {control_arm!r}")
    return out


def _check_sampling(draws: int, tune: int, chains: int, seed: int, sampler: str, target_accept: float) -> None:
    for key, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise SpecError(f"{key} must be an integer >= {low}, got {value!r}")
    if sampler not in SAMPLERS:
        raise SpecError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if isinstance(target_accept, bool) or not isinstance(target_accept, int | float) or not 0.5 <= target_accept < 1:
        raise SpecError(f"target_accept must be in [0.5, 1), got {target_accept!r}")


# --------------------------------------------------------------------------------------------- models

def _rubin_model(groups: list[str], est: np.ndarray, se: np.ndarray, resolved):
    import pymc as pm

    with pm.Model(coords={"group": groups}) as model:
        estimate = pm.Data("estimate", est, dims="group")
        se_data = pm.Data("se", se, dims="group")
        mu = _prior_rv(pm, "mu", *resolved["mu"])
        tau = _prior_rv(pm, "tau", *resolved["tau"])
        eta = pm.Normal("eta", 0.0, 1.0, dims="group")
        theta = pm.Deterministic("theta", mu + tau * eta, dims="group")
        pm.Deterministic("pooling", se_data**2 / (se_data**2 + tau**2), dims="group")
        eta_new = pm.Normal("eta_new", 0.0, 1.0)
        pm.Deterministic("theta_new", mu + tau * eta_new)
        pm.Normal("estimate_obs", mu=theta, sigma=se_data, observed=estimate, dims="group")
    return model


def _counts_model(groups: list[str], arms: list[str], cells: pd.DataFrame, se_lor: np.ndarray, resolved):
    import pymc as pm
    import pytensor.tensor as pt

    gi = cells["g"].to_numpy()
    ai = cells["a"].to_numpy()  # -1 for the control arm
    treated = ai >= 0
    coords = {"group": groups, "arm": arms, "cell": cells["cell"].tolist()}
    with pm.Model(coords=coords) as model:
        n = pm.Data("n", cells["n"].to_numpy(dtype="int64"), dims="cell")
        events = pm.Data("events", cells["events"].to_numpy(dtype="int64"), dims="cell")
        se_data = pm.Data("se_log_or", se_lor, dims=("group", "arm"))
        base_mu = _prior_rv(pm, "baseline_mu", *resolved["baseline_mu"])
        base_sd = _prior_rv(pm, "baseline_sd", *resolved["baseline_sd"])
        z_base = pm.Normal("z_baseline", 0.0, 1.0, dims="group")
        alpha = pm.Deterministic("alpha", base_mu + base_sd * z_base, dims="group")
        mu = _prior_rv(pm, "mu", *resolved["mu"], dims="arm")
        tau = _prior_rv(pm, "tau", *resolved["tau"], dims="arm")
        eta = pm.Normal("eta", 0.0, 1.0, dims=("group", "arm"))
        beta = pm.Deterministic("beta", mu[None, :] + tau[None, :] * eta, dims=("group", "arm"))
        p_control = pm.Deterministic("p_control", pm.math.invlogit(alpha), dims="group")
        p_arm = pm.Deterministic("p_arm", pm.math.invlogit(alpha[:, None] + beta), dims=("group", "arm"))
        pm.Deterministic("theta", 100.0 * (p_arm - p_control[:, None]), dims=("group", "arm"))
        pm.Deterministic("mu_pp", 100.0 * (pm.math.invlogit(base_mu + mu) - pm.math.invlogit(base_mu)), dims="arm")
        pm.Deterministic("pooling", se_data**2 / (se_data**2 + tau[None, :] ** 2), dims=("group", "arm"))
        z_base_new = pm.Normal("z_baseline_new", 0.0, 1.0)
        eta_new = pm.Normal("eta_new", 0.0, 1.0, dims="arm")
        alpha_new = base_mu + base_sd * z_base_new
        pm.Deterministic("theta_new", 100.0 * (pm.math.invlogit(alpha_new + mu + tau * eta_new)
                                                - pm.math.invlogit(alpha_new)), dims="arm")
        offset = pt.zeros(len(cells))
        offset = pt.set_subtensor(offset[np.flatnonzero(treated)], beta[gi[treated], ai[treated]])
        pm.Binomial("events_obs", n=n, logit_p=alpha[gi] + offset, observed=events, dims="cell")
    return model


def _sample(key: tuple, build, data: dict[str, Any], *, draws: int, tune: int, chains: int, seed: int,
            sampler: str, target_accept: float) -> az.InferenceData:
    if sampler == "pymc":
        import pymc as pm

        with build():
            return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False,
                             compute_convergence_checks=False, target_accept=target_accept)
    import nutpie

    compiled, _ = _CACHE.get_or_make(key, lambda: nutpie.compile_pymc_model(build()))
    compiled = compiled.with_data(**data)
    return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, progress_bar=False,
                         save_warmup=False, target_accept=target_accept)


def clear_cache() -> None:
    """Forget the compiled nutpie models."""
    _CACHE.clear()


def _attach(idata: az.InferenceData, inputs: xr.Dataset, attrs: dict[str, Any]) -> az.InferenceData:
    if "constant_data" in idata.groups():
        for name, values in inputs.data_vars.items():
            idata.constant_data[name] = values
    else:
        idata.add_groups(constant_data=inputs)
    idata.posterior.attrs.update(attrs)
    return idata


# --------------------------------------------------------------------------------------------- public

def pool(effects_df: pd.DataFrame, *, prior: Mapping[str, Any] | str | None = None, draws: int = 1000,
         tune: int = 1000, chains: int = 4, seed: int = 0, sampler: str = "nutpie",
         target_accept: float = TARGET_ACCEPT, unit: str = "") -> az.InferenceData:
    """Partially pool reported effects (one row per group: group, estimate, se).

    `prior`: None for ``DEFAULT_PRIOR`` (mu ~ Normal(0, 10 S), tau ~ HalfCauchy(S), S = max(max|estimate|,
    max se)); ``"flat"`` for p(mu, tau) ∝ 1 (BDA3); or a dict overriding either part, e.g.
    ``{"tau": "HalfNormal(5)"}`` ("S" may appear in the arguments). Returns the InferenceData from the
    sampler with the inputs in ``constant_data`` (``input_estimate``, ``input_se``) and the prior,
    sampler, seed and `unit` (e.g. "pp", shown beside numbers) in ``posterior.attrs``.
    """
    df = check_effects(effects_df)
    _check_sampling(draws, tune, chains, seed, sampler, target_accept)
    scale = float(max(np.abs(df["estimate"]).max(), df["se"].max()))
    resolved = resolve_prior(prior, DEFAULT_PRIOR, scale=scale)
    if resolved["tau"][0] == "HalfFlat" and len(df) < 3:
        raise SpecError(f"a flat prior on tau gives an improper posterior with {len(df)} group(s); "
                        "use at least 3 groups or a proper prior such as HalfNormal")
    groups = df["group"].tolist()
    est, se = df["estimate"].to_numpy(), df["se"].to_numpy()
    key = ("rubin", tuple(groups), _families(resolved))
    data = {"estimate": est, "se": se, **_prior_data(resolved)}
    idata = _sample(key, lambda: _rubin_model(groups, est, se, resolved), data, draws=draws, tune=tune,
                    chains=chains, seed=seed, sampler=sampler, target_accept=target_accept)
    inputs = xr.Dataset({"input_estimate": ("group", est), "input_se": ("group", se)}, coords={"group": groups})
    return _attach(idata, inputs, {"bayes_trial_model": "rubin", "prior": describe_prior(resolved),
                                   "sampler": sampler, "seed": int(seed), "unit": str(unit)})


def pool_counts(counts_df: pd.DataFrame, control_arm: str, *, prior: Mapping[str, Any] | None = None,
                draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0, sampler: str = "nutpie",
                target_accept: float = TARGET_ACCEPT) -> az.InferenceData:
    """Partially pool arm effects on a binary outcome from counts (group, arm, n, events).

    Every group needs a row for `control_arm`; other arms may be missing in some groups (their effect
    there is then a prediction from the population distribution, pooling factor 1). `prior` overrides
    parts of ``COUNTS_PRIOR`` (keys baseline_mu, baseline_sd, mu, tau; log-odds scale). Effects
    (``theta``, ``mu_pp``, ``theta_new``) are in percentage points.
    """
    df = check_counts(counts_df, control_arm)
    _check_sampling(draws, tune, chains, seed, sampler, target_accept)
    resolved = resolve_prior(prior, COUNTS_PRIOR)
    groups = list(dict.fromkeys(df["group"]))
    arms = [a for a in dict.fromkeys(df["arm"]) if a != str(control_arm)]
    g_index = {g: i for i, g in enumerate(groups)}
    a_index = {a: i for i, a in enumerate(arms)}
    cells = df.assign(g=df["group"].map(g_index), a=df["arm"].map(a_index).fillna(-1).astype(int),
                      cell=df["group"] + ":" + df["arm"]).reset_index(drop=True)
    n_tab = np.full((len(groups), len(arms)), np.nan)
    e_tab = np.full((len(groups), len(arms)), np.nan)
    se_lor = np.full((len(groups), len(arms)), 1e6)  # no data: pooling factor 1
    control = cells[cells["a"] < 0].set_index("g")
    for row in cells[cells["a"] >= 0].itertuples():
        c = control.loc[row.g]
        n_tab[row.g, row.a], e_tab[row.g, row.a] = row.n, row.events
        se_lor[row.g, row.a] = np.sqrt(1 / (row.events + 0.5) + 1 / (row.n - row.events + 0.5)
                                       + 1 / (c["events"] + 0.5) + 1 / (c["n"] - c["events"] + 0.5))
    pattern = tuple(zip(cells["g"], cells["a"]))
    key = ("counts", tuple(groups), tuple(arms), pattern, _families(resolved))
    data = {"n": cells["n"].to_numpy(), "events": cells["events"].to_numpy(), "se_log_or": se_lor,
            **_prior_data(resolved)}
    idata = _sample(key, lambda: _counts_model(groups, arms, cells, se_lor, resolved), data, draws=draws,
                    tune=tune, chains=chains, seed=seed, sampler=sampler, target_accept=target_accept)
    ctrl = control.sort_index()
    inputs = xr.Dataset(
        {"input_n": (("group", "arm"), n_tab), "input_events": (("group", "arm"), e_tab),
         "input_se_log_or": (("group", "arm"), np.where(se_lor >= 1e6, np.nan, se_lor)),
         "input_n_control": ("group", ctrl["n"].to_numpy(dtype=float)),
         "input_events_control": ("group", ctrl["events"].to_numpy(dtype=float))},
        coords={"group": groups, "arm": arms})
    return _attach(idata, inputs, {"bayes_trial_model": "counts", "prior": describe_prior(resolved),
                                   "sampler": sampler, "seed": int(seed), "control_arm": str(control_arm),
                                   "unit": "pp"})


def _diag(da: xr.DataArray) -> dict[str, float]:
    ds = xr.Dataset({"x": da})
    return {"r_hat": float(az.rhat(ds)["x"]), "ess_bulk": float(az.ess(ds, method="bulk")["x"])}


def pooling_summary(idata: az.InferenceData, *, prob: float = DEFAULT_INTERVAL) -> pd.DataFrame:
    """Tidy summary of a :func:`pool` or :func:`pool_counts` fit.

    One row per quantity (`kind`): ``pooled_mean`` (mu), ``tau`` (between-group SD), ``group`` (each
    group's shrunken effect, with its input ``estimate`` / ``se`` and ``pooling_factor`` = se²/(se²+tau²)
    averaged over the posterior: 0 = no pooling, 1 = complete pooling) and ``new_group`` (the predictive
    effect in a group not in the data). Counts fits add ``control_rate`` rows and a ``pooled_log_odds``
    row per arm; their effects are in percentage points and tau is on the log-odds scale.
    Columns: kind, group, arm, unit, estimate, se, mean, sd, median, lower, upper (equal-tailed `prob`
    interval), p_gt_0, pooling_factor, r_hat, ess_bulk. ``df.attrs`` holds prior, prob, divergences.
    """
    if not isinstance(idata, az.InferenceData) or "posterior" not in idata.groups():
        raise DataError("pooling_summary needs the InferenceData returned by pool() or pool_counts()")
    if not 0 < prob < 1:
        raise SpecError(f"prob must be between 0 and 1, got {prob!r}")
    post = idata.posterior
    kind = post.attrs.get("bayes_trial_model")
    if kind not in ("rubin", "counts"):
        raise DataError("pooling_summary: this InferenceData was not made by pool() or pool_counts()")
    const = idata.constant_data
    rows: list[dict[str, Any]] = []

    def add(kind_: str, da: xr.DataArray, unit: str, **extra: Any) -> None:
        flat = da.values.reshape(-1)
        row = {"kind": kind_, "group": None, "arm": None, "unit": unit, "estimate": np.nan, "se": np.nan,
               **summarise_draws(flat, prob), "pooling_factor": np.nan, **_diag(da)}
        row.update(extra)
        rows.append(row)

    if kind == "rubin":
        unit = post.attrs.get("unit", "")
        add("pooled_mean", post["mu"], unit)
        add("tau", post["tau"], unit, p_gt_0=np.nan)
        for g in post["theta"].coords["group"].values:
            add("group", post["theta"].sel(group=g), unit, group=str(g),
                estimate=float(const["input_estimate"].sel(group=g)), se=float(const["input_se"].sel(group=g)),
                pooling_factor=float(post["pooling"].sel(group=g).mean()))
        add("new_group", post["theta_new"], unit)
    else:
        for a in post["mu"].coords["arm"].values:
            add("pooled_mean", post["mu_pp"].sel(arm=a), "pp", arm=str(a))
            add("pooled_log_odds", post["mu"].sel(arm=a), "log-odds", arm=str(a))
            add("tau", post["tau"].sel(arm=a), "log-odds", arm=str(a), p_gt_0=np.nan)
            for g in post["theta"].coords["group"].values:
                n = float(const["input_n"].sel(group=g, arm=a))
                e = float(const["input_events"].sel(group=g, arm=a))
                nc = float(const["input_n_control"].sel(group=g))
                ec = float(const["input_events_control"].sel(group=g))
                raw = 100 * (e / n - ec / nc) if np.isfinite(n) else np.nan
                se = 100 * np.sqrt(e / n * (1 - e / n) / n + ec / nc * (1 - ec / nc) / nc) if np.isfinite(n) else np.nan
                add("group", post["theta"].sel(group=g, arm=a), "pp", group=str(g), arm=str(a), estimate=raw,
                    se=se, pooling_factor=float(post["pooling"].sel(group=g, arm=a).mean()))
            add("new_group", post["theta_new"].sel(arm=a), "pp", arm=str(a))
        for g in post["p_control"].coords["group"].values:
            nc = float(const["input_n_control"].sel(group=g))
            ec = float(const["input_events_control"].sel(group=g))
            add("control_rate", 100 * post["p_control"].sel(group=g), "%", group=str(g), estimate=100 * ec / nc,
                p_gt_0=np.nan)
    out = pd.DataFrame(rows)
    out.attrs.update({"model": kind, "prior": post.attrs.get("prior", ""), "prob": prob,
                      "interval": f"{round(prob * 100)}% equal-tailed",
                      "divergences": int(idata.sample_stats["diverging"].sum())
                      if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats else None})
    return out


# --------------------------------------------------------------------------------------------- output

def format_pooling_summary(summary: pd.DataFrame, digits: int = 1) -> str:
    """A pooling summary as a plain-text table for the terminal, with the prior and diagnostics below."""
    if summary.empty:
        return ""
    labels = {"pooled_mean": "pooled effect (mu)", "pooled_log_odds": "pooled effect (log-odds)",
              "tau": "between-group SD (tau)", "new_group": "new group (predictive)"}
    pct = f"{summary.attrs.get('prob', DEFAULT_INTERVAL):.0%}"

    def number(value: float, signed: bool = True) -> str:
        return "" if not np.isfinite(value) else f"{value:{'+' if signed else ''}.{digits}f}"

    rows = []
    for row in summary.itertuples():
        name = (str(row.group) + (" control rate" if row.kind == "control_rate" else "")
                if row.kind in ("group", "control_rate") else labels.get(row.kind, row.kind))
        rows.append({
            "quantity": name + (f" [{row.arm}]" if isinstance(row.arm, str) else ""),
            "reported": number(row.estimate) + (f" ({number(row.se, False)})" if np.isfinite(row.se) else ""),
            "mean": f"{number(row.mean)} {row.unit}".rstrip(),
            f"{pct} interval": f"[{number(row.lower)}, {number(row.upper)}]",
            "P(>0)": "" if not np.isfinite(row.p_gt_0) else f"{row.p_gt_0:.3f}",
            "pooling": "" if not np.isfinite(row.pooling_factor) else f"{row.pooling_factor:.2f}",
            "r_hat": f"{row.r_hat:.3f}",
        })
    footer = [f"prior: {summary.attrs.get('prior', '')}",
              f"intervals: {summary.attrs.get('interval', '')}; reported = estimate (se) as given; "
              "pooling = se²/(se²+tau²): 0 no pooling, 1 complete pooling",
              f"divergences: {summary.attrs.get('divergences')}"]
    return "\n".join([pd.DataFrame(rows).to_string(index=False), *footer])


def _forest_panels(summary: pd.DataFrame | Mapping[str, pd.DataFrame]) -> list[tuple[str, pd.DataFrame]]:
    if isinstance(summary, Mapping):
        items = list(summary.items())
    else:
        arms = [a for a in summary["arm"].dropna().unique()] if "arm" in summary else []
        items = ([(str(a), summary[summary["arm"] == a]) for a in arms] if arms else [("", summary)])
    if not items or any(not isinstance(df, pd.DataFrame) or "kind" not in df for _, df in items):
        raise DataError("plot_forest needs the table(s) returned by pooling_summary()")
    return items


def plot_forest(summary: pd.DataFrame | Mapping[str, pd.DataFrame], path: str | os.PathLike, *,
                title: str = "", unit: str | None = None, new_label: str = "new group") -> list[Path]:
    """Forest plot of a pooling summary: each group's reported estimate (open circle, ± z·se) against
    its shrunken estimate (filled, posterior interval), then the pooled effect and a new group.

    `summary` is one :func:`pooling_summary` table (a counts fit gets one panel per arm) or a dict of
    panel title -> table. Writes PATH.png and PATH.svg and returns both paths.
    """
    from matplotlib.figure import Figure
    from scipy.stats import norm

    panels = _forest_panels(summary)
    n_rows = max(len(df[df["kind"].isin(("group", "pooled_mean", "new_group"))]) for _, df in panels)
    fig = Figure(figsize=(5.2 * len(panels), 1.4 + 0.5 * n_rows), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, df) in zip(axes, panels):
        prob = df.attrs.get("prob", DEFAULT_INTERVAL)
        z = norm.ppf(0.5 + prob / 2)
        groups = df[df["kind"] == "group"]
        y_groups = np.arange(len(groups))[::-1] + 2.0
        for yi, row in zip(y_groups, groups.itertuples()):
            if np.isfinite(row.estimate) and np.isfinite(row.se):
                ax.plot([row.estimate - z * row.se, row.estimate + z * row.se], [yi + 0.15] * 2, color="0.55", lw=1)
                ax.plot(row.estimate, yi + 0.15, "o", mfc="white", mec="0.35", ms=5)
            ax.plot([row.lower, row.upper], [yi - 0.15] * 2, color="C0", lw=2.2)
            ax.plot(row.mean, yi - 0.15, "o", color="C0", ms=5)
        for yi, kind, color, marker in ((1.0, "pooled_mean", "C3", "D"), (0.0, "new_group", "C2", "s")):
            row = df[df["kind"] == kind]
            if len(row):
                row = row.iloc[0]
                ax.plot([row["lower"], row["upper"]], [yi] * 2, color=color, lw=2.2)
                ax.plot(row["mean"], yi, marker, color=color, ms=6)
        ax.axvline(0, color="0.3", lw=0.8, ls=":")
        ax.set_yticks([*y_groups, 1.0, 0.0], [*groups["group"].astype(str), "pooled", new_label])
        ax.set_ylim(-0.7, len(groups) + 1.7)
        shown_unit = unit if unit is not None else (groups["unit"].iloc[0] if len(groups) else "")
        ax.set_xlabel(f"effect ({shown_unit})" if shown_unit else "effect")
        ax.set_title(label or title, fontsize=10)
        ax.grid(axis="x", color="0.9")
    fig.legend(handles=_forest_legend(prob, new_label), loc="outside lower center", ncols=4, fontsize=8,
               frameon=False)
    if title and any(label for label, _ in panels):
        fig.suptitle(title, fontsize=11)
    return save_figure_as(fig, path)


def _forest_legend(prob: float, new_label: str) -> list:
    from matplotlib.lines import Line2D

    pct = f"{prob:.0%}"
    return [Line2D([], [], color="0.55", marker="o", mfc="white", mec="0.35", label=f"reported ± {pct} (normal)"),
            Line2D([], [], color="C0", marker="o", lw=2, label=f"shrunken, {pct} interval"),
            Line2D([], [], color="C3", marker="D", lw=2, label="pooled effect"),
            Line2D([], [], color="C2", marker="s", lw=2, label=f"{new_label} (predictive)")]
