"""Priors as first-class inputs: which priors a model really uses, and what they imply.

`prior_table` lists every prior of the built PyMC model, Bambi's data-scaled defaults included, and
marks those the spec set. It reads the priors from the PyMC graph (`model.pymc_priors`), so a prior
the modelling library dropped or changed shows as what it is. `prior_check` draws parameters and
outcomes from the prior alone and summarises what they imply on the outcome scale, with the same
g-computation as the posterior answers: outflow percentages per arm, effects in percentage points,
scores and the share predicted outside the scale, ordinal category shares, counts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayes_trial.core.errors import SpecError
from bayes_trial.estimands import query
from bayes_trial.families import registry
from bayes_trial.modelling import autoprior
from bayes_trial.modelling import frames as model_mod
from bayes_trial.modelling.spec import AUTO, ModelSpec, check_prior_for_term
from bayes_trial.sampling.fit import Fit, expected_response, keep_record
from bayes_trial.sampling.predictor import PARTICIPANT_DIM, PARTICIPANT_TERM

# The modules that build models (`sampling.build`, `sampling.fastpaths`) import Bambi and PyMC: they are
# imported where a check draws, so that a report can read a check stored with its fit without them.

# The verdict: FAIL when more than this percentage of prior-predicted outcomes falls outside the
# outcome's bounds, or when the prior probability of an implausibly large effect exceeds EFFECT_LIMIT.
OUTSIDE_LIMIT = 5.0
EFFECT_LIMIT = 0.10
# Prior draws behind the report's prior-check verdict (cheap; seeded by the fit's sampler seed).
REPORT_DRAWS = 200
# Prior predictive values kept for the figure's histogram (pooled over rows and draws).
PREDICTED_SAMPLE = 20_000
DEFAULT_NOTE = "auto (scaled to the outcome; give data to see it)"


# ---------------------------------------------------------------------------------------------
# Which priors: terms, validation, the table of priors in use
# ---------------------------------------------------------------------------------------------


def prior_terms(spec: ModelSpec) -> list[str]:
    """Names that accept a prior, from the formula and family alone (no data needed).

    The same names Bambi gives: common terms (`Intercept`, `arm`, `arm:wave`), group terms
    (`1|participant_id`, `arm|municipality`; their prior is for the standard deviation) and the
    family's auxiliary parameters (`sigma`, `alpha`, `threshold`).
    """
    import formulae
    from bambi.defaults import get_builtin_family

    try:
        description = formulae.model_description(spec.formula)
    except Exception as exc:  # formulae raises many types for bad formulas
        raise SpecError(f"model {spec.name!r}: cannot read formula {spec.formula!r}: {str(exc).splitlines()[0]}") from None
    ours = registry.get(spec.family)
    family = get_builtin_family(ours.bambi_name)
    terms = [term.name for term in description.terms if ours.has_intercept or term.name != "Intercept"]
    auxiliary = [p for p in family.likelihood.params if p != family.likelihood.parent]
    return terms + auxiliary


def check_priors(spec: ModelSpec) -> None:
    """Refuse priors for terms the model does not have, and priors a term cannot take."""
    valid = prior_terms(spec)
    for term, prior in spec.priors.items():
        if term not in valid:
            raise SpecError(f"model {spec.name!r}: prior for unknown term {term!r}; valid terms: {', '.join(valid)}")
        check_prior_for_term(term, prior, where=f"model {spec.name!r}")


def _applies_to(term: str) -> str:
    if "|" in term:
        return "SD of group effects"
    return {"sigma": "residual SD", "alpha": "dispersion", "threshold": "cut-points",
            "Intercept": "intercept"}.get(term, "coefficients")


def _user_form(distribution: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A prior as found in the PyMC graph, written the way a spec writes it.

    PyMC stores some distributions by scale rather than rate, and the half distributions with a
    location of zero (the inverse of `model._graph_form`).
    """
    params = dict(params)
    if distribution.startswith("Half") and np.all(np.asarray(params.get("loc", 0)) == 0):
        params.pop("loc", None)
    if distribution == "Exponential":
        return distribution, {"lam": 1 / np.asarray(params["scale"])}
    if distribution == "Gamma":
        return distribution, {"alpha": params["alpha"], "beta": 1 / np.asarray(params["scale"])}
    return {"InvGamma": "InverseGamma"}.get(distribution, distribution), params


def _number(value: Any) -> str:
    values = np.atleast_1d(np.asarray(value, dtype=float))
    if values.size == 1:
        return f"{values[0]:.4g}"
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def format_prior(distribution: str, params: dict[str, Any]) -> str:
    """`Normal(mu=0, sigma=0.5)`; vector parameters (one value per level) in brackets."""
    return f"{distribution}(" + ", ".join(f"{k}={_number(v)}" for k, v in params.items()) + ")"


def prior_table(spec: ModelSpec, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every prior the model uses, one row per term, and who set it ('user' or 'default').

    With data, the priors are read from the built PyMC model: Bambi's defaults depend on the data
    (they are scaled to the outcome and predictors), and a prior that did not reach the model shows
    up as what the model really has; `auto` priors carry the rule that gave their numbers in
    `note` ("auto: 0.5 x SD(wellbeing)=1.83 -> Normal(mu=0, sigma=0.915)"). Without data, `auto`
    priors are listed as such. Columns: term, applies_to, prior, params (a dict in the spec's
    parametrisation), set_by ('user', 'auto', or 'default' for ordinal thresholds), note.
    """
    check_priors(spec)
    if frame is None:
        rows = []
        for term in prior_terms(spec):
            user = term in spec.priors and spec.priors[term].dist != AUTO
            default = "default (Bambi's ordered normals)" if term == "threshold" else DEFAULT_NOTE
            rows.append({"term": term, "applies_to": _applies_to(term), "prior": str(spec.priors[term]) if user else default,
                         "params": dict(spec.priors[term].params) if user else {},
                         "set_by": "user" if user else "default" if term == "threshold" else "auto", "note": ""})
        return pd.DataFrame(rows)
    from bayes_trial.sampling import build as bambi_build
    from bayes_trial.sampling.fastpaths import model_for_priors, prior_models

    prepared = model_mod.prepare(spec, frame)
    reasons = model_mod.resolve_priors(spec, prepared).reasons
    graph = bambi_build.pymc_priors(prior_models(model_for_priors(spec, prepared)), spec)
    rows = []
    for record in graph.to_dict("records"):
        distribution, params = _user_form(record["distribution"], record["params"])
        rows.append({"term": record["term"], "applies_to": _applies_to(record["term"]),
                     "prior": format_prior(distribution, params), "params": params,
                     "set_by": record["set_by"], "note": reasons.get(record["term"], "")})
    dropped = "; ".join(n for n in prepared.notes if n.startswith("dropped")) or "not in the model"
    rows += [{"term": term, "applies_to": _applies_to(term), "prior": str(prior), "params": dict(prior.params),
              "set_by": "user" if prior.dist != AUTO else "auto", "note": f"not used: {dropped}"}
             for term, prior in spec.priors.items() if term not in set(graph["term"])]
    order = {term: i for i, term in enumerate(prior_terms(spec))}
    table = pd.DataFrame(rows).sort_values("term", key=lambda t: t.map(order).fillna(len(order)), kind="stable")
    return table.reset_index(drop=True)


def format_prior_table(table: pd.DataFrame) -> str:
    """The table of `prior_table` as plain text for the terminal."""
    shown = table[["term", "applies_to", "prior", "set_by"]]
    shown = shown.rename(columns={"applies_to": "applies to", "set_by": "set by"})
    text = shown.to_string(index=False)
    notes = [f"  {row.term}: {row.note}" for row in table.itertuples() if row.note]
    return text + ("\n" + "\n".join(notes) if notes else "")


# ---------------------------------------------------------------------------------------------
# What priors imply: prior predictive checks on the outcome scale
# ---------------------------------------------------------------------------------------------


def mean_unit(spec: ModelSpec) -> str:
    """Unit of an arm's mean outcome: a percentage for binary outcomes, else the outcome's unit."""
    return registry.get(spec.family).mean_unit(spec)


def outcome_draws(fit: Fit) -> dict[str, dict[tuple[str, Any], np.ndarray]]:
    """Draws of each arm's standardised mean and of each arm against control, per wave.

    The draws behind `query.effects`, on the reported scale (percentages and percentage points for
    binary outcomes): {"mean": {(arm, wave): draws}, "effect": {("arm - control", wave): draws}};
    wave is None for models without waves.
    """
    scale = query.scale_factor(fit)
    control = fit.spec.control_arm
    means, effects = {}, {}
    for wave in query.waves(fit) or [None]:
        arm_draws = query.arm_means(fit, wave=wave)
        for arm, draws in arm_draws.items():
            means[(arm, wave)] = draws * scale
            if arm != control:
                effects[(f"{arm} - {control}", wave)] = (draws - arm_draws[control]) * scale
    return {"mean": means, "effect": effects}


@dataclass
class PriorCheck:
    """What the priors of `spec` imply on the outcome scale, before seeing the outcomes."""

    spec: ModelSpec
    summary: pd.DataFrame
    draws: dict[str, dict[tuple[str, Any], np.ndarray]]
    predicted: np.ndarray
    interval: float = query.DEFAULT_INTERVAL
    notes: tuple[str, ...] = field(default_factory=tuple)
    verdict: PriorVerdict | None = None


@dataclass(frozen=True)
class PriorVerdict:
    """PASS/FAIL of a prior predictive check and the two numbers behind it.

    outside: percentage of predicted outcomes outside the outcome's bounds (None: no bounds apply,
    e.g. binary outcomes and ordinal categories); effect_prob: the largest prior P(|effect| >
    implausible) over the contrasts and waves.
    """

    outside: float | None
    bounds: str  # "outside 0-10", "above 200"
    implausible: float
    unit: str
    effect_prob: float

    @property
    def passed(self) -> bool:
        return (self.outside is None or self.outside <= OUTSIDE_LIMIT) and self.effect_prob <= EFFECT_LIMIT

    def format(self) -> str:
        outside = ("" if self.outside is None else
                   f"{self.outside:.1f}% of predicted outcomes {self.bounds} (limit {OUTSIDE_LIMIT:g}%); ")
        return (f"prior predictive check {'PASS' if self.passed else 'FAIL'}: {outside}prior P(|effect| > "
                f"{self.implausible:g} {self.unit}) = {100 * self.effect_prob:.1f}% (limit {100 * EFFECT_LIMIT:g}%)")


def implausible_effect(spec: ModelSpec, prepared: model_mod.PreparedData) -> float:
    """The effect size (outcome unit) the prior should make unlikely: the spec's, else the family's default."""
    if spec.implausible_effect is not None:
        return spec.implausible_effect
    return registry.get(spec.family).implausible_effect(spec, autoprior.outcome_values(prepared))


def _parameter_names(pymc_model) -> list[str]:
    """Parameters a prediction needs: no non-centred offsets, no per-observation quantities."""
    dims = pymc_model.named_vars_to_dims
    return [v.name for v in pymc_model.unobserved_RVs
            if not v.name.endswith("_offset") and "__obs__" not in dims.get(v.name, ())]


def ordered_normal(mu: np.ndarray, sigma: np.ndarray | float, size: int, rng: np.random.Generator,
                   sweeps: int = 200) -> np.ndarray:
    """Draws (size, K) of independent Normal(mu_k, sigma) restricted to increasing values.

    This is the prior of Bambi's ordinal thresholds (a normal prior with an ordered transform).
    Gibbs sampling, one coordinate at a time between its neighbours, from the ordered means: with
    many categories, rejecting unordered draws would keep almost none.
    """
    from scipy.stats import truncnorm

    mu = np.asarray(mu, dtype=float)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), mu.shape)
    values = np.tile(np.sort(mu), (size, 1))
    for _ in range(sweeps):
        for k in range(len(mu)):
            low = values[:, k - 1] if k > 0 else -np.inf
            high = values[:, k + 1] if k < len(mu) - 1 else np.inf
            values[:, k] = truncnorm.rvs((low - mu[k]) / sigma[k], (high - mu[k]) / sigma[k], loc=mu[k],
                                         scale=sigma[k], random_state=rng)
    return values


def _sample_prior(bmb_model, draws: int, seed: int, outcomes: bool = True) -> tuple[xr.Dataset, np.ndarray | None, list[str]]:
    """Prior draws of the parameters (PyMC forward sampling) and of the outcome of every model row.

    PyMC's forward sampling ignores the ordered transform of ordinal thresholds and would draw
    them out of order (category probabilities below zero), so they are redrawn from their prior
    restricted to increasing values. Outcomes are then drawn from the likelihood by Bambi.
    """
    import pymc as pm

    pymc_model = bmb_model.backend.model
    names = _parameter_names(pymc_model)
    idata = pm.sample_prior_predictive(draws=draws, model=pymc_model, random_seed=seed, var_names=names)
    parameters = xr.Dataset({name: idata.prior[name] for name in names})
    notes = []
    if "threshold" in parameters:
        rv = pymc_model["threshold"]
        mu, sigma = (np.asarray(p.eval(), dtype=float) for p in rv.owner.op.dist_params(rv.owner))
        mu = np.broadcast_to(mu, parameters["threshold"].shape[-1:])
        ordered = ordered_normal(mu, sigma, draws, np.random.default_rng(seed))
        parameters["threshold"] = parameters["threshold"].copy(data=ordered[np.newaxis])
        notes.append("ordinal thresholds drawn from their prior restricted to increasing values "
                     "(PyMC's forward sampling ignores the ordering)")
    if not outcomes:
        return parameters, None, notes
    try:
        outcomes = bmb_model.predict(az.InferenceData(posterior=parameters), kind="response", inplace=False,
                                     random_seed=seed).posterior_predictive
    except ValueError as exc:  # e.g. numpy's "lam value too large": prior means beyond what can be drawn
        raise SpecError(f"the priors predict outcomes that cannot be drawn ({str(exc).splitlines()[0]}); "
                        "give narrower priors (or `auto`)") from None
    predicted = next(iter(outcomes.data_vars.values()))
    predicted = predicted.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    return parameters, predicted.reshape(predicted.shape[0], -1), notes


def _share_rows(spec: ModelSpec, prepared: model_mod.PreparedData, predicted: np.ndarray,
                interval: float) -> list[dict[str, Any]]:
    """Shares of predicted outcomes (per draw, over model rows) by arm and wave, in percent."""
    categories = prepared.data[spec.outcome].cat.categories if isinstance(
        prepared.data[spec.outcome].dtype, pd.CategoricalDtype) else None
    events = registry.get(spec.family).prior_events(spec, predicted, categories)
    if not events:
        return []
    data = prepared.data
    groups = [("all", None, np.ones(len(data), dtype=bool))]
    for wave in (list(data["wave"].cat.categories) if "wave" in data else [None]):
        in_wave = np.ones(len(data), dtype=bool) if wave is None else (data["wave"] == wave).to_numpy()
        groups += [(arm, wave, in_wave & (data["arm"] == arm).to_numpy()) for arm in data["arm"].cat.categories]
    rows = []
    for quantity, hits in events.items():
        for arm, wave, rows_in in groups:
            if rows_in.any():
                share = 100 * hits[:, rows_in].mean(axis=1)
                rows.append({"quantity": quantity, "arm": arm, "wave": wave, "unit": "%",
                             **query.summarise_draws(share, interval), "p_gt_0": np.nan})
    return rows


def prior_fit(spec: ModelSpec, data: pd.DataFrame | model_mod.PreparedData, draws: int = 500,
              seed: int | None = None) -> Fit:
    """A `Fit` whose posterior group holds draws from the prior: every query then answers under the prior.

    The rows of `data` (a table, or model-ready rows such as a stored fit's) give the design (arms,
    towns, consultants, waves); their outcomes are not used, except to scale `auto` priors. The
    prior predictive outcome of every model row is in `idata.prior_predictive`, and notes on the
    draws in `info["prior_notes"]`.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 10:
        raise SpecError(f"prior check: draws must be an integer of at least 10, got {draws!r}")
    from bayes_trial.sampling.fastpaths import OtherTerms, model_for_priors

    seed = spec.sampler["seed"] if seed is None else seed
    check_priors(spec)
    prepared = data if isinstance(data, model_mod.PreparedData) else model_mod.prepare(spec, data)
    bmb_model = model_for_priors(spec, prepared)
    if isinstance(bmb_model, OtherTerms):
        return _prior_fit_without_participant_term(spec, prepared, bmb_model, draws, seed)
    parameters, predicted, notes = _sample_prior(bmb_model, draws, seed)
    outcome = xr.Dataset({prepared.response: (("chain", "draw", "__obs__"), predicted[np.newaxis])})
    fit = Fit(spec, prepared, az.InferenceData(posterior=parameters, prior_predictive=outcome),
              {"prior_notes": notes, "seed": seed})
    fit.__dict__["model"] = bmb_model  # the built model; no rebuild for the predictions
    return fit


def _prior_fit_without_participant_term(spec: ModelSpec, prepared: model_mod.PreparedData, other,
                                        draws: int, seed: int) -> Fit:
    """`prior_fit` for a Gaussian participant-intercept model, without Bambi's dense participant term.

    The other terms' parameters come from their PyMC model as in `_sample_prior`; the participant SD
    from its own prior, each person's intercept from Normal(0, SD), and each row's outcome from
    Normal(mean + intercept, sigma).
    """
    import pymc as pm

    from bayes_trial.sampling.fastpaths import PARTICIPANT_SIGMA, participant_levels, participant_sd_model

    parameters, _, notes = _sample_prior(other.model, draws, seed, outcomes=False)
    sd = pm.draw(participant_sd_model(other)[PARTICIPANT_SIGMA], draws=draws, random_seed=np.random.default_rng([seed, 1]))
    levels = participant_levels(prepared.data)
    rng = np.random.default_rng([seed, 2])
    parameters[PARTICIPANT_SIGMA] = (("chain", "draw"), np.asarray(sd, dtype=float).reshape(1, draws))
    parameters[PARTICIPANT_TERM] = xr.DataArray(
        rng.standard_normal((1, draws, len(levels))) * parameters[PARTICIPANT_SIGMA].to_numpy()[..., None],
        dims=("chain", "draw", PARTICIPANT_DIM), coords={PARTICIPANT_DIM: levels})
    fit = Fit(spec, prepared, az.InferenceData(posterior=parameters), {"prior_notes": notes, "seed": seed})
    fit.__dict__["other_terms"] = other
    mean = expected_response(fit, fit.idata, prepared.data).isel(chain=0).transpose("draw", "__obs__")
    predicted = mean.to_numpy() + parameters["sigma"].to_numpy()[0][:, None] * rng.standard_normal(mean.shape)
    fit.idata.add_groups(prior_predictive=xr.Dataset(
        {prepared.response: (("chain", "draw", "__obs__"), predicted[np.newaxis])}))
    return fit


def prior_check(spec: ModelSpec, data: pd.DataFrame | model_mod.PreparedData, draws: int = 500,
                seed: int | None = None, interval: float = query.DEFAULT_INTERVAL,
                implausible: float | None = None) -> PriorCheck:
    """Draw from the prior of `spec` on the rows of `data` (outcomes unused) and summarise it, with a verdict.

    The summary has one row per quantity x arm (or contrast) x wave: the standardised mean outcome
    per arm ("arm mean"), each arm against control ("effect", with the prior P(> 0)), and for
    scores, counts and ordinal items the share of predicted outcomes outside the scale, of zeros,
    or in each category, per arm and over all rows ("all"). The verdict (`PriorVerdict`) fails
    when more than `OUTSIDE_LIMIT` % of predicted outcomes fall outside the spec's bounds, or the
    prior P(|effect| > implausible) exceeds `EFFECT_LIMIT` for some contrast and wave;
    `implausible` (outcome unit) overrides the spec's `implausible_effect` and the family default.
    """
    if not registry.get(spec.family).prior_checkable:
        checkable = [family.name for family in registry.families() if family.prior_checkable]
        raise SpecError(f"model {spec.name!r}: prior checks cover the families {', '.join(checkable)}, "
                        f"not {spec.family!r}")
    if implausible is not None and not implausible > 0:
        raise SpecError(f"prior check: the implausible effect must be a positive number, got {implausible!r}")
    fit = prior_fit(spec, data, draws, seed)
    predicted = fit.idata.prior_predictive[fit.prepared.response].to_numpy()[0]
    estimands = outcome_draws(fit)
    rows = [{"quantity": "arm mean", "arm": arm, "wave": wave, "unit": mean_unit(spec),
             **query.summarise_draws(values, interval), "p_gt_0": np.nan}
            for (arm, wave), values in estimands["mean"].items()]
    rows += [{"quantity": "effect", "arm": contrast, "wave": wave, "unit": spec.outcome_unit,
              **query.summarise_draws(values, interval)}
             for (contrast, wave), values in estimands["effect"].items()]
    rows += _share_rows(spec, fit.prepared, predicted, interval)
    rng = np.random.default_rng(fit.info["seed"])
    sample = rng.choice(predicted.ravel(), size=min(PREDICTED_SAMPLE, predicted.size), replace=False)
    summary = pd.DataFrame(rows)
    size = implausible_effect(spec, fit.prepared) if implausible is None else float(implausible)
    outside = summary[(summary["arm"] == "all") & summary["quantity"].str.startswith(
        ("predicted share outside", "predicted share above"))]
    verdict = PriorVerdict(
        outside=float(outside["mean"].max()) if not outside.empty else None,
        bounds=outside["quantity"].iloc[0].removeprefix("predicted share ") if not outside.empty else "",
        implausible=size, unit=spec.outcome_unit,
        effect_prob=max((float(np.mean(np.abs(v) > size)) for v in estimands["effect"].values()), default=0.0))
    return PriorCheck(spec, summary, estimands, sample.astype(float), interval,
                      fit.prepared.notes + tuple(fit.info["prior_notes"]), verdict)


PRIOR_CHECK_RECORD = "prior_check"


def fit_prior_check(fit: Fit, draws: int = REPORT_DRAWS) -> PriorCheck | str:
    """The prior predictive check of a fit, with the priors it used, on its own rows; else why there is none.

    Read from the fit when `record_prior_check` stored one of `draws` draws with it (its summary and
    verdict: `draws` and `predicted` of the result are then empty), else drawn now.
    """
    stored = stored_prior_check(fit, draws)
    return stored if stored is not None else computed_prior_check(fit, draws)


def computed_prior_check(fit: Fit, draws: int = REPORT_DRAWS) -> PriorCheck | str:
    """`fit_prior_check` drawn now (Bambi and PyMC), whatever the fit has stored."""
    if not fit.family.prior_checkable:
        return "prior predictive check: not available for this family"
    try:
        return prior_check(fit.used_spec, fit.prepared, draws=draws, seed=fit.spec.sampler["seed"])
    except SpecError as exc:
        return f"prior predictive check: FAIL, {exc}"


def record_prior_check(fit: Fit, draws: int = REPORT_DRAWS) -> PriorCheck | str:
    """Draw the prior check of `fit` and keep its summary table and verdict in the fit, for `save` to write.

    The priors and rows of a fit never change, so a report reads this record (`fit_prior_check`)
    instead of building the model and drawing from the prior again. Returns the check.
    """
    result = computed_prior_check(fit, draws)
    record = {"draws": draws, "seed": fit.spec.sampler["seed"]}
    if isinstance(result, str):
        record["text"] = result
    else:
        record.update(summary=result.summary.to_dict(orient="records"), interval=result.interval, notes=list(result.notes),
                      verdict=dataclasses.asdict(result.verdict))
    keep_record(fit, PRIOR_CHECK_RECORD, json.dumps(record, default=_plain_number))
    return result


def _plain_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a prior-check record")


def stored_prior_check(fit: Fit, draws: int = REPORT_DRAWS) -> PriorCheck | str | None:
    """The prior check stored with the fit by `record_prior_check` with `draws` draws, else None."""
    record = json.loads(fit.info.get(PRIOR_CHECK_RECORD) or "null")
    if record is None or record.get("draws") != draws or record.get("seed") != fit.spec.sampler["seed"]:
        return None
    if "text" in record:
        return record["text"]
    return PriorCheck(fit.used_spec, pd.DataFrame(record["summary"]), {}, np.empty(0), record["interval"],
                      tuple(record["notes"]), PriorVerdict(**record["verdict"]))


def format_prior_check(result: PriorCheck) -> str:
    """The summary as plain-text tables, one per quantity."""
    interval = result.interval
    parts = [f"Prior predictive check for {result.spec.name} ({result.spec.outcome}), {interval:.0%} intervals:"]
    if result.verdict is not None:
        parts.insert(0, result.verdict.format()[0].upper() + result.verdict.format()[1:])
    parts += [f"  note: {note}" for note in result.notes]
    for quantity, table in result.summary.groupby("quantity", sort=False):
        shown = table.drop(columns=["quantity"] + (["p_gt_0"] if table["p_gt_0"].isna().all() else []))
        shown["wave"] = shown["wave"].astype(object)
        parts += ["", f"{quantity}:", query.format_table(shown, "arm", interval)]
    return "\n".join(parts)


def plot_prior_check(result: PriorCheck, out_dir: str | os.PathLike) -> list[Path]:
    """Figure `prior_check_NAME` (PNG and SVG): arm means, effects and predicted outcomes under the prior."""
    from bayes_trial.plots.figures import arm_colours, plt, save_figure  # figures picks the Agg backend first

    spec, summary = result.spec, result.summary
    last_wave = summary["wave"].dropna().max() if summary["wave"].notna().any() else None
    at_wave = f" at wave {int(last_wave)}" if last_wave is not None else ""
    shares = summary[summary["quantity"].str.startswith("predicted share")]
    third = registry.get(spec.family).prior_predicted_panel()
    panels = 2 if third is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8))
    arm_names = [arm for arm, wave in result.draws["mean"] if wave == last_wave]
    colours = arm_colours(arm_names)
    for arm in arm_names:
        axes[0].hist(result.draws["mean"][(arm, last_wave)], bins=40, density=True, histtype="step", lw=1.5,
                     color=colours[arm], label=arm)
    axes[0].set_xlabel(f"mean {spec.outcome} ({mean_unit(spec)})")
    axes[0].set_title(f"Expected outcome per arm{at_wave}", fontsize=10)
    axes[0].legend(fontsize=8)
    for (contrast, wave), values in result.draws["effect"].items():
        if wave == last_wave:
            axes[1].hist(values, bins=40, density=True, histtype="step", lw=1.5,
                         color=colours[contrast.split(" - ")[0]], label=contrast)
    axes[1].axvline(0, color="black", lw=0.8, ls="--")
    axes[1].set_xlabel(f"effect against {spec.control_arm} ({spec.outcome_unit})")
    axes[1].set_title(f"Arm effects{at_wave}", fontsize=10)
    axes[1].legend(fontsize=8)
    if third == "categories":
        overall = shares[shares["arm"] == "all"]
        levels = [q.rsplit(" ", 1)[1] for q in overall["quantity"]]
        axes[2].bar(levels, overall["mean"], yerr=[overall["mean"] - overall["lower"], overall["upper"] - overall["mean"]],
                    color="#9ecae1", capsize=3)
        axes[2].set_xlabel(spec.outcome)
        axes[2].set_ylabel("predicted share (%)")
        axes[2].set_title("Predicted categories (all rows)", fontsize=10)
    elif panels == 3:
        low, high = np.quantile(result.predicted, [0.005, 0.995])
        axes[2].hist(result.predicted, bins=60, range=(low, high), density=True, color="#9ecae1")
        for bound in (b for b in spec.bounds if b is not None):
            axes[2].axvline(bound, color="#d95f02", lw=1)
        overall = shares[shares["arm"] == "all"]
        label = "; ".join(f"{q.removeprefix('predicted share ')}: {m:.1f}%" for q, m in zip(overall["quantity"], overall["mean"]))
        axes[2].set_title(f"Predicted {spec.outcome}\n{label}", fontsize=9)
        axes[2].set_xlabel(f"{spec.outcome} (middle 99% of prior draws)")
    fig.suptitle(f"{spec.name}: what the priors imply (prior predictive)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out_dir, f"prior_check_{spec.name}")
