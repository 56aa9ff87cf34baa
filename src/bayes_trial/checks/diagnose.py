"""Is the posterior trustworthy? Convergence and sampler diagnostics, prior sensitivity, plots.

`diagnose` gives a pass/fail verdict against `Thresholds` that follow current practice (Vehtari et
al. 2021 for rank-normalised R-hat and bulk/tail ESS; Betancourt 2017 for divergences, E-BFMI and
tree depth), with one-line reasons and the worst parameters. `sensitivity` adds power-scaling
prior/likelihood sensitivity (Kallioinen et al. 2023, `arviz.psens`). Participant-level effects
count towards the verdict but are reported as one row per term: their labels are participant ids.

The verdict needs only the draws and sampler statistics (`checks.convergence`, numpy): `diagnose`
imports neither ArviZ nor PyMC. Sensitivity (PyMC for the log prior, ArviZ's `psens`) and the plots
(ArviZ) import them when asked for; a fit whose sensitivity table was stored when it was made
(`record_sensitivity`) gives it without them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_trial.checks.convergence import bfmi, chi2_isf, summary_diagnostics
from bayes_trial.checks.convergence import rank_r_hat as _rank_r_hat
from bayes_trial.core.errors import FitFileError, SpecError
from bayes_trial.sampling.fit import Draws, Fit, keep_record, load, log_likelihood_totals

if TYPE_CHECKING:
    import arviz as az

PERSON_ID = "participant_id"
SAMPLE_DIMS = ("chain", "draw")
DIAGNOSTICS = ("r_hat", "ess_bulk", "ess_tail", "mcse_mean", "mcse_sd")
# Power-scaling sensitivity above this value means the posterior moves when the component is scaled.
SENSITIVITY_THRESHOLD = 0.05
# The chance that a converged fit fails the R-hat gate on its worst participant-level parameter.
PERSON_LEVEL_ALPHA = 0.01
# Participant-level terms with more levels get ESS and MCSE for this many of them (R-hat for all).
PERSON_LEVEL_SUMMARY = 500
# Names of the same sampler statistic in nutpie and in PyMC's NUTS.
_TREE_DEPTH = ("depth", "tree_depth")
_MAX_DEPTH_REACHED = ("maxdepth_reached", "reached_max_treedepth")


@dataclass(frozen=True)
class Thresholds:
    """What a fit must meet to pass. ESS limits are per chain: 100 per chain is 400 for 4 chains."""

    max_r_hat: float = 1.01
    min_ess_per_chain: float = 100.0
    max_divergences: int = 0
    min_e_bfmi: float = 0.3
    max_tree_depth_share: float = 0.01

    def min_ess(self, chains: int) -> float:
        return self.min_ess_per_chain * chains


def _as_draws(fit_or_idata: Draws | Fit | az.InferenceData | str | os.PathLike) -> Draws:
    """The posterior of a fit, fit file or InferenceData, with its sampler statistics (`Draws`)."""
    if isinstance(fit_or_idata, (str, os.PathLike)):
        fit_or_idata = load(fit_or_idata)
    if isinstance(fit_or_idata, Draws):
        return fit_or_idata
    if isinstance(fit_or_idata, Fit):
        # Loaded in place: diagnostics read every parameter, and each transposed copy of one still on disk
        # (a stored fit's participant intercepts) would read it from the file again.
        posterior, stats = fit_or_idata.group("posterior").load(), fit_or_idata.group("sample_stats")
    elif hasattr(fit_or_idata, "groups"):
        posterior = fit_or_idata.posterior if "posterior" in fit_or_idata.groups() else None
        stats = fit_or_idata.sample_stats if "sample_stats" in fit_or_idata.groups() else None
    else:
        raise TypeError(f"expected a Fit, an InferenceData or a fit file, got {type(fit_or_idata).__name__}")
    if posterior is None:
        raise FitFileError("the inference data have no posterior group: nothing to diagnose")
    return Draws(posterior, xr.Dataset() if stats is None else stats)


def _parameters(posterior: xr.Dataset, var_names: list[str] | None) -> xr.Dataset:
    """Posterior variables to diagnose: row-sized deterministics (one value per observation) left out."""
    if var_names is not None:
        unknown = [v for v in var_names if v not in posterior.data_vars]
        if unknown:
            raise SpecError(f"diagnose: no parameter {', '.join(map(repr, unknown))} in this fit "
                            f"(parameters: {', '.join(map(str, posterior.data_vars))})")
    names = var_names or list(posterior.data_vars)
    return posterior[[v for v in names if "__obs__" not in posterior[v].dims]]


def _is_person_level(values: xr.DataArray) -> bool:
    return any(PERSON_ID in str(dim) for dim in values.dims)


def _element_labels(name: str, values: xr.DataArray) -> list[str]:
    """ArviZ-style labels, `arm[intensive]`, in the order of `values.to_numpy().ravel()`."""
    dims = [d for d in values.dims if d not in SAMPLE_DIMS]
    if not dims:
        return [name]
    coords = [values[d].to_numpy() for d in dims]
    return [f"{name}[{', '.join(map(str, combo))}]" for combo in itertools.product(*coords)]


def _element_table(parameters: xr.Dataset) -> pd.DataFrame:
    """One row per parameter element with its diagnostics and its position (for plotting).

    A participant-level term with more than PERSON_LEVEL_SUMMARY levels gets R-hat for every level
    (`rank_r_hat`, vectorised) and ESS and MCSE for PERSON_LEVEL_SUMMARY of them (`_summarised_levels`):
    ArviZ computes them one element at a time, 76 s for 20,000 participants.
    """
    large = [name for name, values in parameters.data_vars.items()
             if _is_person_level(values) and _size(values) > PERSON_LEVEL_SUMMARY]
    frames = []
    for name, values in parameters.data_vars.items():
        shape = tuple(values.sizes[d] for d in values.dims if d not in SAMPLE_DIMS)
        frames.append(pd.DataFrame({
            "parameter": _element_labels(name, values),
            "variable": name,
            "person_level": _is_person_level(values),
            "position": list(np.ndindex(shape)) if shape else [()],
        }))
        if name in large:
            draws = values.transpose(*SAMPLE_DIMS, ...).to_numpy().reshape(values.sizes["chain"], values.sizes["draw"], -1)
            r_hat = rank_r_hat(draws)
            frames[-1]["r_hat"] = r_hat
            chosen = _summarised_levels(r_hat)
            computed = summary_diagnostics(draws[:, :, chosen])
            for key in DIAGNOSTICS[1:]:
                frames[-1][key] = np.nan
                frames[-1].loc[chosen, key] = computed[key]
    table = pd.concat(frames, ignore_index=True)
    small = [name for name in parameters.data_vars if name not in large]
    if small:
        columns = [parameters[name].transpose(*SAMPLE_DIMS, ...).to_numpy().reshape(
            parameters.sizes["chain"], parameters.sizes["draw"], -1) for name in small]
        computed = summary_diagnostics(np.concatenate(columns, axis=-1))
        rows = table["variable"].isin(small).to_numpy()
        for key in DIAGNOSTICS:
            table.loc[rows, key] = computed[key]
    return table


def _size(values: xr.DataArray) -> int:
    return int(np.prod([values.sizes[d] for d in values.dims if d not in SAMPLE_DIMS]))


def _summarised_levels(r_hat: np.ndarray) -> np.ndarray:
    """PERSON_LEVEL_SUMMARY level indices: the half with the highest R-hat and an evenly spaced rest."""
    worst = np.argsort(-np.nan_to_num(r_hat, nan=np.inf), kind="stable")[:PERSON_LEVEL_SUMMARY // 2]
    rest = np.setdiff1d(np.arange(len(r_hat)), worst)
    spaced = rest[np.linspace(0, len(rest) - 1, PERSON_LEVEL_SUMMARY - len(worst)).astype(int)]
    return np.sort(np.concatenate([worst, spaced]))


def rank_r_hat(draws: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """ArviZ's rank-normalised split R-hat (Vehtari et al. 2021) of each column of (chain, draw, K) draws.

    The same numbers as `arviz.rhat(method="rank")` (`convergence.rank_r_hat`), `chunk` columns at a time.
    """
    return np.concatenate([_rank_r_hat(draws[:, :, start:start + chunk])
                           for start in range(0, draws.shape[-1], chunk)]) if draws.shape[-1] else np.empty(0)


def _collapse_person_level(table: pd.DataFrame, max_r_hat: float) -> pd.DataFrame:
    """One row per participant-level term: the worst value of each diagnostic over its levels.

    The position kept is that of the element with the highest R-hat, the one worth plotting;
    `above` counts the levels whose R-hat exceeds `max_r_hat`.
    """
    rows = [table[~table["person_level"]].assign(elements=1, above=0)]
    for name, block in table[table["person_level"]].groupby("variable", sort=False):
        worst = block.loc[block["r_hat"].fillna(-np.inf).idxmax()]
        rows.append(pd.DataFrame([{
            "parameter": f"{name} (worst of {len(block)} levels)",
            "variable": name, "person_level": True,
            "position": worst["position"], "r_hat": block["r_hat"].max(), "ess_bulk": block["ess_bulk"].min(),
            "ess_tail": block["ess_tail"].min(), "mcse_mean": block["mcse_mean"].max(),
            "mcse_sd": block["mcse_sd"].max(), "elements": len(block),
            "above": int((block["r_hat"] > max_r_hat).sum()),
        }]))
    return pd.concat(rows, ignore_index=True)


def _diagnostic_table(idata: Draws | az.InferenceData, var_names: list[str] | None = None,
                      thresholds: Thresholds | None = None) -> pd.DataFrame:
    return _collapse_person_level(_element_table(_parameters(idata.posterior, var_names)),
                                  (thresholds or Thresholds()).max_r_hat)


def person_level_max_r_hat(thresholds: Thresholds, levels: int, chains: int, draws: int) -> float:
    """The largest R-hat allowed for the worst of `levels` participant-level parameters.

    A converged parameter's split R-hat over M = 2 x chains half-chains of n = draws / 2 independent
    draws is about 1 + (X / (M - 1) - 1) / (2 n) with X chi-squared on M - 1 degrees of freedom (the
    between-half variance of the means against the within-half variance). The worst of K levels is
    allowed the value that K converged levels exceed with probability PERSON_LEVEL_ALPHA together
    (the 1 - alpha / K quantile of X), never less than `thresholds.max_r_hat`: 1.022 for 100,000
    participants at 2 chains x 500 draws, 1.01 at 4 x 1000. With 100,000 levels some exceed 1.01 by
    chance (1.016 at 2 x 500), and that says nothing about the sampler; a term that did not mix
    exceeds this bound by far.
    """
    halves, length = 2 * chains, max(draws // 2, 1)
    quantile = chi2_isf(PERSON_LEVEL_ALPHA / max(levels, 1), halves - 1)
    return max(thresholds.max_r_hat, 1 + (quantile / (halves - 1) - 1) / (2 * length))


def _public(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["position", "person_level", "above"]).set_index("parameter")


def summary(idata: Fit | az.InferenceData, var_names: list[str] | None = None) -> pd.DataFrame:
    """Rank-normalised R-hat, bulk and tail ESS and MCSE of mean and SD for each parameter element.

    Like `arviz.summary(kind="diagnostics")`, unrounded; participant-level terms as one row each.
    """
    return _public(_diagnostic_table(_as_draws(idata), var_names))


def _first_present(stats: xr.Dataset, names: tuple[str, ...]) -> xr.DataArray | None:
    return next((stats[n] for n in names if n in stats), None)


def sampler_stats(idata: Fit | az.InferenceData) -> pd.DataFrame:
    """Per chain: draws, divergences, E-BFMI, share of draws at the maximum tree depth, step size."""
    draws = _as_draws(idata)
    posterior, stats = draws.posterior, draws.sample_stats
    chains = posterior["chain"].to_numpy()
    table = pd.DataFrame({"chain": chains, "draws": posterior.sizes["draw"]})
    if "diverging" in stats:
        table["divergences"] = stats["diverging"].sum("draw").to_numpy().astype(int)
    if "energy" in stats:
        table["e_bfmi"] = bfmi(stats["energy"].transpose(*SAMPLE_DIMS).to_numpy())
    saturated = _first_present(stats, _MAX_DEPTH_REACHED)
    if saturated is not None:
        table["tree_depth_saturation"] = saturated.astype(float).mean("draw").to_numpy()
    depth = _first_present(stats, _TREE_DEPTH)
    if depth is not None:
        table["mean_tree_depth"] = depth.astype(float).mean("draw").to_numpy()
    if "step_size" in stats:
        table["step_size"] = stats["step_size"].mean("draw").to_numpy()
    return table


def _worst(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """Alternately the highest R-hat and the lowest ESS (bulk or tail), each parameter once."""
    by_r_hat = table.sort_values("r_hat", ascending=False, na_position="last").index
    by_ess = table.assign(ess=table[["ess_bulk", "ess_tail"]].min(axis=1)).sort_values("ess").index
    order = list(dict.fromkeys(i for pair in zip(by_r_hat, by_ess) for i in pair))
    return table.loc[order[:n]]


def _convergence_failures(table: pd.DataFrame, thresholds: Thresholds, chains: int, draws: int) -> list[str]:
    failed = []
    limits = _r_hat_limits(table, thresholds, chains, draws)
    high = table[table["r_hat"] > limits]
    if not high.empty:
        top = high.sort_values("r_hat", ascending=False).iloc[0]
        limit = f"{thresholds.max_r_hat:g}" + (" (participant levels: their bound)" if high["person_level"].any() else "")
        failed.append(f"R-hat above {limit} for {len(high)} of {len(table)} parameters "
                      f"(worst: {top['parameter']} {top['r_hat']:.3f}); run longer chains or reparameterise")
    min_ess = thresholds.min_ess(chains)
    for column, kind in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        low = table[table[column] < min_ess]
        if not low.empty:
            top = low.sort_values(column).iloc[0]
            failed.append(f"{kind} ESS below {min_ess:g} ({thresholds.min_ess_per_chain:g} per chain x {chains} chains) "
                          f"for {len(low)} of {len(table)} parameters (lowest: {top['parameter']} {top[column]:.0f}); "
                          "draw more samples")
    return failed


def _r_hat_limits(table: pd.DataFrame, thresholds: Thresholds, chains: int, draws: int) -> pd.Series:
    """Each row's R-hat bound: `max_r_hat`, or for a participant-level term `person_level_max_r_hat`."""
    return pd.Series([person_level_max_r_hat(thresholds, int(row.elements), chains, draws) if row.person_level
                      else thresholds.max_r_hat for row in table.itertuples()], index=table.index)


def _person_level_rules(table: pd.DataFrame, thresholds: Thresholds, chains: int, draws: int) -> list[str]:
    """The R-hat rule for each participant-level term, in words, with its share of levels above `max_r_hat`."""
    return [f"{row.variable}: {row.elements} levels, {row.above} ({row.above / row.elements:.2%}) above R-hat "
            f"{thresholds.max_r_hat:g}; the worst may reach "
            f"{person_level_max_r_hat(thresholds, int(row.elements), chains, draws):.3f}, the value {row.elements} "
            f"converged levels exceed by chance with probability {PERSON_LEVEL_ALPHA:g} (its SD is gated like "
            "every other parameter)"
            for row in table[table["person_level"]].itertuples()]


def _sampler_failures(chains: pd.DataFrame, thresholds: Thresholds) -> tuple[list[str], list[str]]:
    failed, missing = [], []
    if "divergences" in chains:
        total = int(chains["divergences"].sum())
        if total > thresholds.max_divergences:
            per_chain = ", ".join(f"chain {c}: {d}" for c, d in zip(chains["chain"], chains["divergences"]) if d)
            failed.append(f"{total} divergent transitions after warm-up ({per_chain}); raise target_accept "
                          "or reparameterise: the posterior may be biased")
    else:
        missing.append("divergences")
    if "e_bfmi" in chains:
        low = chains[chains["e_bfmi"] < thresholds.min_e_bfmi]
        if not low.empty:
            which = ", ".join(f"chain {c}: {v:.2f}" for c, v in zip(low["chain"], low["e_bfmi"]))
            failed.append(f"E-BFMI below {thresholds.min_e_bfmi:g} ({which}): the sampler explores the "
                          "energy distribution poorly; reparameterise (e.g. group-level SDs)")
    else:
        missing.append("E-BFMI")
    if "tree_depth_saturation" in chains:
        share = float((chains["tree_depth_saturation"] * chains["draws"]).sum() / chains["draws"].sum())
        if share > thresholds.max_tree_depth_share:
            failed.append(f"{share:.1%} of draws hit the maximum tree depth (limit {thresholds.max_tree_depth_share:.0%}): "
                          "sampling is inefficient; reparameterise or raise the maximum depth")
    else:
        missing.append("tree depth")
    warnings = [f"no sampler statistics for {', '.join(missing)}: not checked"] if missing else []
    return failed, warnings


@dataclass
class Diagnosis:
    """The verdict of `diagnose` with its reasons and tables; `to_dict()` is JSON-able."""

    passed: bool
    failed: list[str]
    warnings: list[str]
    thresholds: Thresholds
    chains: int
    draws: int
    parameters: pd.DataFrame
    sampler: pd.DataFrame
    worst: pd.DataFrame
    sensitivity: pd.DataFrame | None = None
    model: str = ""
    person_level: list[str] = dataclasses.field(default_factory=list)
    # One row per parameter (person-level terms collapsed) with each worst element's position: what
    # `plot_diagnostics` plots, kept so that a report does not compute every R-hat twice.
    elements: pd.DataFrame | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "verdict": self.verdict, "passed": self.passed, "failed": list(self.failed),
            "warnings": list(self.warnings), "thresholds": dataclasses.asdict(self.thresholds),
            "chains": self.chains, "draws": self.draws,
            "worst": _records(self.worst), "parameters": _records(self.parameters), "sampler": _records(self.sampler),
            "sensitivity": None if self.sensitivity is None else _records(self.sensitivity),
            "person_level": list(self.person_level),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def format(self) -> str:
        """Plain text for the terminal."""
        t = self.thresholds
        name = f"{self.model}: " if self.model else ""
        lines = [f"{name}diagnostics {self.verdict.upper()} ({self.chains} chains x {self.draws} draws; "
                 f"R-hat <= {t.max_r_hat:g}, bulk/tail ESS >= {t.min_ess(self.chains):g}, "
                 f"divergences <= {t.max_divergences}, E-BFMI >= {t.min_e_bfmi:g}, "
                 f"tree depth saturated in <= {t.max_tree_depth_share:.0%} of draws)"]
        lines += [f"  participant levels: {rule}" for rule in self.person_level]
        lines += [f"  FAILED: {message}" for message in self.failed]
        lines += [f"  warning: {message}" for message in self.warnings]
        lines += ["", "Worst parameters:", _text_table(self.worst.reset_index(), {
            "r_hat": "{:.3f}", "ess_bulk": "{:.0f}", "ess_tail": "{:.0f}", "mcse_mean": "{:.3g}", "mcse_sd": "{:.3g}"})]
        lines += ["", "Sampler, per chain:", _text_table(self.sampler, {
            "e_bfmi": "{:.2f}", "tree_depth_saturation": "{:.1%}", "mean_tree_depth": "{:.1f}", "step_size": "{:.3f}"})]
        if self.sensitivity is not None:
            lines += ["", f"Prior sensitivity (power-scaling; flagged at >= {SENSITIVITY_THRESHOLD}):",
                      _text_table(self.sensitivity, {"prior": "{:.3f}", "likelihood": "{:.3f}"})]
        return "\n".join(lines)


def _text_table(table: pd.DataFrame, formats: dict[str, str]) -> str:
    shown = table.drop(columns=[c for c in ("variable", "elements") if c in table]).copy()
    for column, pattern in formats.items():
        if column in shown:
            shown[column] = [("-" if pd.isna(v) else pattern.format(v)) for v in shown[column]]
    return shown.to_string(index=False)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    return value


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    frame = table.reset_index() if table.index.name else table
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


@dataclass(frozen=True)
class Verdict:
    """The pass/fail verdict of `diagnose` and its reasons, without the tables."""

    passed: bool
    failed: tuple[str, ...]

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"


VERDICT_RECORD = "verdict"


def record_verdict(fit: Fit, diagnosis: Diagnosis) -> None:
    """Keep `diagnosis`'s verdict, and the thresholds it was reached under, in the fit for `save` to write.

    A stored fit's draws never change, so `verdict` can answer from this record instead of
    recomputing R-hat and ESS over every parameter (thousands of participant intercepts) per question.
    """
    keep_record(fit, VERDICT_RECORD, json.dumps({"passed": diagnosis.passed, "failed": list(diagnosis.failed),
                                                 "thresholds": dataclasses.asdict(diagnosis.thresholds)}))


def verdict(fit: Fit, thresholds: Thresholds | None = None) -> Verdict:
    """The verdict recorded with the fit when it was reached under `thresholds` (default `Thresholds()`),
    else `diagnose`'s, computed now."""
    thresholds = thresholds or Thresholds()
    record = json.loads(fit.info.get(VERDICT_RECORD) or "null")
    if record is not None and record.get("thresholds") == dataclasses.asdict(thresholds):
        return Verdict(bool(record["passed"]), tuple(record["failed"]))
    diagnosis = diagnose(fit, thresholds)
    return Verdict(diagnosis.passed, tuple(diagnosis.failed))


def diagnose(fit_or_idata: Fit | az.InferenceData | str | os.PathLike, thresholds: Thresholds | None = None, *,
             with_sensitivity: bool = False, worst: int = 5) -> Diagnosis:
    """Check a fit against `thresholds` (defaults: `Thresholds()`); `with_sensitivity` needs a Fit.

    Prior sensitivity never fails the verdict: a prior-data conflict is a finding about the model,
    not a failure of the sampler. It is reported among the warnings.
    """
    thresholds = thresholds or Thresholds()
    fit = load(fit_or_idata) if isinstance(fit_or_idata, (str, os.PathLike)) else fit_or_idata
    idata = _as_draws(fit)
    table = _diagnostic_table(idata, thresholds=thresholds)
    chains_table = sampler_stats(idata)
    n_chains, n_draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    failed = _convergence_failures(table, thresholds, n_chains, n_draws)
    sampler_failed, warnings = _sampler_failures(chains_table, thresholds)
    failed += sampler_failed
    sens = None
    if with_sensitivity:
        if not isinstance(fit, Fit):
            raise TypeError("prior sensitivity needs a Fit (the model is needed for the log prior), not bare inference data")
        sens = stored_sensitivity(fit)
        sens = sensitivity(fit) if sens is None else sens
        warnings += _sensitivity_warnings(sens)
    public = _public(table)
    return Diagnosis(
        passed=not failed, failed=failed, warnings=warnings, thresholds=thresholds, chains=n_chains,
        draws=idata.posterior.sizes["draw"], parameters=public, sampler=chains_table,
        worst=public.loc[_worst(table, worst)["parameter"]], sensitivity=sens,
        model=fit.spec.name if isinstance(fit, Fit) else "",
        person_level=_person_level_rules(table, thresholds, n_chains, n_draws), elements=table,
    )


def prior_parameters(fit: Fit) -> list[str]:
    """Parameters that carry a user-facing prior: fixed effects, group SDs, thresholds, sigma, alpha.

    Centred participant effects would be free variables too; they are left out (their labels are ids).
    """
    posterior = fit.posterior
    return [rv.name for pymc_model in fit.prior_models for rv in pymc_model.free_RVs
            if rv.name in posterior and not _is_person_level(posterior[rv.name])]


def log_prior(fit: Fit, var_names: list[str] | None = None) -> xr.Dataset:
    """Pointwise log prior density of `var_names` (default: `prior_parameters`) at each draw.

    Read from `Fit.prior_models`: never a model with a persons-sized term where the participant
    intercepts can be integrated out. What `pymc.compute_log_prior` gives (to rounding in the last
    bit), for all draws in one call: each log density is elementwise, so its graph is vectorised
    over the draws and run by PyTensor's Python linker without rewrites. PyMC compiled C code and
    evaluated it draw by draw: 0.2-0.5 s of every fit. A density depends on its own value and on
    the values of its parameters' variables only; those are in the posterior (stored fits keep no
    non-centred `_offset` variables, and no asked-for density depends on one).
    """
    import pytensor
    import pytensor.tensor as pt
    from pymc.model.transform.conditioning import remove_value_transforms
    from pytensor.compile.mode import Mode
    from pytensor.graph.replace import vectorize_graph
    from pytensor.graph.traversal import graph_inputs

    names = var_names or prior_parameters(fit)
    posterior = fit.posterior
    draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    found = {}
    for pymc_model in fit.prior_models:
        model = remove_value_transforms(pymc_model)  # the posterior holds untransformed values
        own = [rv for rv in model.free_RVs if rv.name in names]
        if not own:
            continue
        densities = model.logp(vars=own, sum=False)
        inputs = [value for value in model.value_vars if value in set(graph_inputs(densities))]
        batched = [pt.tensor(dtype=value.dtype, shape=(None, *value.type.shape)) for value in inputs]
        function = pytensor.function(batched, vectorize_graph(densities, replace=dict(zip(inputs, batched))),
                                     mode=Mode(linker="py", optimizer=None))
        values = [posterior[model.values_to_rvs[value].name] for value in inputs]
        results = function(*[np.asarray(v, dtype=value.dtype).reshape(draws, *v.shape[2:]) for v, value in zip(values, inputs)])
        for rv, result in zip(own, results):
            found[rv.name] = (posterior[rv.name].dims, np.asarray(result).reshape(posterior[rv.name].shape))
    return xr.Dataset(found, coords={dim: posterior[dim] for dim in SAMPLE_DIMS})


def _sensitivity_label(prior: float, likelihood: float) -> str:
    if prior >= SENSITIVITY_THRESHOLD and likelihood >= SENSITIVITY_THRESHOLD:
        return "prior-data conflict"
    if prior >= SENSITIVITY_THRESHOLD:
        return "strong prior / weak likelihood"
    return ""


def sensitivity(fit: Fit, var_names: list[str] | None = None) -> pd.DataFrame:
    """Power-scaling sensitivity of each parameter to its prior and to the likelihood.

    Both above 0.05: the prior and the data disagree (prior-data conflict). Prior sensitive while
    the likelihood is not: the prior dominates a weak likelihood (as with few municipalities).
    """
    import arviz as az

    names = var_names or prior_parameters(fit)
    # psens uses only each draw's total log-likelihood: the rows x draws array is never needed here.
    idata = az.InferenceData(posterior=fit.posterior[names], log_likelihood=log_likelihood_totals(fit),
                             log_prior=log_prior(fit, names))
    prior = az.psens(idata, component="prior", var_names=names)
    likelihood = az.psens(idata, component="likelihood", var_names=names)
    rows = []
    for name in names:
        labels = _element_labels(name, fit.posterior[name])
        for label, p, lik in zip(labels, np.asarray(prior[name]).ravel(), np.asarray(likelihood[name]).ravel()):
            rows.append({"parameter": label, "prior": float(p), "likelihood": float(lik),
                         "diagnosis": _sensitivity_label(p, lik)})
    return pd.DataFrame(rows)


SENSITIVITY_RECORD = "sensitivity"


def record_sensitivity(fit: Fit) -> pd.DataFrame:
    """Compute `sensitivity` and keep its table (one row per prior parameter) in the fit, for `save` to write.

    The draws of a stored fit never change, so `diagnose(..., with_sensitivity=True)` reads this
    record instead of rebuilding the PyMC models for the log prior. Returns the table.
    """
    table = sensitivity(fit)
    keep_record(fit, SENSITIVITY_RECORD, json.dumps(_records(table)))
    return table


def stored_sensitivity(fit: Fit) -> pd.DataFrame | None:
    """The table of `record_sensitivity` stored with the fit, else None."""
    stored = fit.info.get(SENSITIVITY_RECORD)
    if stored is None:
        return None
    return pd.DataFrame(json.loads(stored), columns=["parameter", "prior", "likelihood", "diagnosis"])


def _sensitivity_warnings(table: pd.DataFrame) -> list[str]:
    flagged = table[table["diagnosis"] != ""]
    return [f"{diagnosis}: {', '.join(block['parameter'])} (power-scaling sensitivity >= {SENSITIVITY_THRESHOLD})"
            for diagnosis, block in flagged.groupby("diagnosis", sort=True)]


def _plot_dataset(idata: Draws, rows: pd.DataFrame) -> xr.Dataset:
    """The draws of the chosen elements, one (chain, draw) variable each, named by their label."""
    posterior = idata.posterior
    data = {}
    for _, row in rows.iterrows():
        values = posterior[row["variable"]].transpose(*SAMPLE_DIMS, ...)
        data[row["parameter"]] = (SAMPLE_DIMS, values.to_numpy()[(slice(None), slice(None), *row["position"])])
    return xr.Dataset(data, coords={d: posterior[d] for d in SAMPLE_DIMS})


def plot_diagnostics(fit_or_idata: Fit | az.InferenceData | str | os.PathLike, out_dir: str | os.PathLike, *,
                     worst: int = 4, diagnosis: Diagnosis | None = None) -> list[Path]:
    """Rank and trace plots of the `worst` parameters and an energy plot, as PNG and SVG in `out_dir`.

    The energy plot is left out when the sampler stored no energy (not a Hamiltonian sampler).
    `diagnosis`, this fit's `diagnose` result, saves computing its diagnostics again.
    """
    import arviz as az
    from matplotlib.figure import Figure

    from bayes_trial.plots.figures import save_figure

    idata = _as_draws(fit_or_idata)
    out_dir = Path(out_dir)
    table = diagnosis.elements if diagnosis is not None and diagnosis.elements is not None else _diagnostic_table(idata)
    chosen = _worst(table, worst)
    draws = _plot_dataset(idata, chosen)
    n = len(chosen)
    written = []

    fig = Figure(figsize=(4.2 * min(n, 2), 3.2 * math.ceil(n / 2)), layout="constrained")
    axes = fig.subplots(math.ceil(n / 2), min(n, 2), squeeze=False).ravel()
    az.plot_rank(draws, ax=axes[:n])
    for ax, (_, row) in zip(axes, chosen.iterrows()):
        ax.set_title(f"{row['parameter']}\nR-hat {row['r_hat']:.3f}, bulk ESS {row['ess_bulk']:.0f}", fontsize=9)
        ax.set_xlabel("rank of draw (all chains pooled)", fontsize=9)
        ax.set_ylabel("chain", fontsize=9)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("Rank plots: uniform bars in every chain mean the chains agree", fontsize=10)
    written += save_figure(fig, out_dir, "diagnostics_rank")

    fig = Figure(figsize=(10, 2.4 * n), layout="constrained")
    axes = fig.subplots(n, 2, squeeze=False)
    az.plot_trace(draws, axes=axes, compact=False, legend=True)
    for (left, right), label in zip(axes, chosen["parameter"]):
        left.set_title(f"{label}: density per chain", fontsize=9)
        right.set_title(f"{label}: trace per chain", fontsize=9)
        right.set_xlabel("draw")
    legends = [ax.get_legend() for ax in axes.ravel() if ax.get_legend() is not None]
    if legends:  # ArviZ puts the chain legend over the trace; move it below the figure
        fig.legend(legends[0].legend_handles, [t.get_text() for t in legends[0].get_texts()], title="chain",
                   loc="outside lower center", ncols=len(legends[0].get_texts()), fontsize=8)
        for legend in legends:
            legend.remove()
    fig.suptitle("Trace plots of the parameters with the worst R-hat or ESS", fontsize=10)
    written += save_figure(fig, out_dir, "diagnostics_trace")

    if "energy" not in idata.sample_stats:
        return written
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    az.plot_energy(az.InferenceData(sample_stats=idata.sample_stats), ax=ax, legend=True)
    ax.set_title("Energy: transition narrower than marginal means poor exploration (low E-BFMI)", fontsize=10)
    ax.set_xlabel("energy (centred)")
    written += save_figure(fig, out_dir, "diagnostics_energy")
    return written
