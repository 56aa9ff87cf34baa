"""Sampling, storing and loading fits.

A stored fit is one netCDF InferenceData file: posterior, sample_stats, observed_data,
log_likelihood, and the model-ready data in `constant_data`; the posterior group's attributes carry
the full spec, a hash of the data, package versions and the sampler settings. `load` gives back a
`Fit` that can be queried or refitted without the original spec or data files.

Answers need only the posterior and the data: `load` reads those two groups with xarray, and the
expected outcomes of `expected_response` are evaluated from the draws by `sampling.predictor`, so a
query imports neither PyMC, Bambi nor ArviZ. The other groups (sample statistics, log-likelihood)
are read, as an ArviZ InferenceData, when something asks for `Fit.idata`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_trial.core.errors import FitFileError, SpecError
from bayes_trial.core.progress import say
from bayes_trial.data.contract import data_hash
from bayes_trial.families import registry
from bayes_trial.families.base import Family
from bayes_trial.modelling import frames as model_mod
from bayes_trial.modelling import parametrisation
from bayes_trial.modelling.spec import ModelSpec, Prior, parse_prior, spec_from_json
from bayes_trial.sampling.predictor import (PARTICIPANT, PARTICIPANT_DIM, PARTICIPANT_TERM, formula_terms,
                                            linear_predictor)

if TYPE_CHECKING:
    import arviz as az

ATTR = "bayes_trial"
# pip-installed PyTensor warns on every import that it found no optimised BLAS; it is noise for users.
logging.getLogger("pytensor.tensor.blas").setLevel(logging.ERROR)
PACKAGES = ("bayes-trial", "pymc", "pytensor", "bambi", "arviz", "nutpie", "numpy", "pandas", "xarray")


class _StoredGroups:
    """The groups of a fit file, each read (with xarray) when first asked for."""

    def __init__(self, path: Path, names: list[str], loaded: dict[str, xr.Dataset]):
        self.path, self.names, self.loaded = path, names, loaded
        self.stamp = _file_stamp(path)

    def group(self, name: str) -> xr.Dataset | None:
        """The group `name` (None if the file has none)."""
        if name not in self.loaded and name in self.names:
            if not self.path.exists() or _file_stamp(self.path) != self.stamp:
                raise FitFileError(f"{self.path}: the fit file changed after it was loaded; load it again")
            try:
                self.loaded.update(_read_groups(self.path, [name])[1])
            except Exception as exc:  # netCDF/HDF5 raise many types for damaged files
                raise FitFileError(f"{self.path}: not a readable fit file (damaged {name}: "
                                   f"{exc.__class__.__name__})") from None
        return self.loaded.get(name)

    def inference_data(self) -> az.InferenceData:
        """Every group, wholly in memory: what needs ArviZ reads all draws, the participant intercepts included,
        and ArviZ's and xarray's copies of a variable still on disk would each read it again."""
        import arviz as az

        return az.InferenceData(**{name: self.group(name).load() for name in self.names})


def _file_stamp(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns, status.st_ino


def _read_groups(path: Path, names: list[str]) -> tuple[list[str], dict[str, xr.Dataset]]:
    """The names of a netCDF file's groups and the named ones read; the file is closed again.

    Variables over the participants (persons x draws: most of a large fit's file) stay on disk until
    first used, since a contrast of arm means does not need them (`mean_expected_response`); xarray
    reopens the file to read them.
    """
    with xr.open_datatree(path) as tree:
        groups = {name: tree[name].to_dataset() for name in names if name in tree.children}
        for group in groups.values():
            for variable in group.data_vars.values():
                if PARTICIPANT_DIM not in variable.dims:
                    variable.load()
        return list(tree.children), groups


class Fit:
    """A fitted model: spec, model-ready data and the draws.

    Parameters
    ----------
    spec, prepared, idata, info
        The spec, its model-ready data, the InferenceData (None for a stored fit whose other groups
        are read when `idata` is first asked for) and the stored records.
    stored
        For `load`: the file's groups and those already read (the posterior and the data).
    """

    def __init__(self, spec: ModelSpec, prepared: model_mod.PreparedData, idata: az.InferenceData | None = None,
                 info: dict[str, Any] | None = None, *, stored: _StoredGroups | None = None):
        self.spec, self.prepared, self.info = spec, prepared, info if info is not None else {}
        self._idata, self._stored = idata, stored

    def __repr__(self) -> str:
        return f"<Fit {self.spec.name}: {self.prepared.formula} ({self.prepared.family}), {len(self.data)} rows>"

    @property
    def idata(self) -> az.InferenceData:
        """The ArviZ InferenceData (a stored fit reads its remaining groups now)."""
        if self._idata is None:
            self._idata = self._stored.inference_data()
        return self._idata

    @idata.setter
    def idata(self, value: az.InferenceData) -> None:
        self._idata = value

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws, without reading the rest of a stored fit or importing ArviZ."""
        return self.group("posterior")

    def group(self, name: str) -> xr.Dataset | None:
        """One group of the draws (``posterior``, ``sample_stats``, ...) as xarray, None if absent; no ArviZ."""
        if self._idata is None:
            return self._stored.group(name)
        return getattr(self._idata, name) if name in self._idata.groups() else None

    @cached_property
    def used_spec(self) -> ModelSpec:
        """The spec with the priors this fit used: `auto` priors as the numbers they were resolved to.

        A stored fit reads them from its file, so it rebuilds and reports what it sampled with even
        if the rule for `auto` priors changes; a fit without that record resolves them now.
        """
        stored = self.info.get("resolved_priors")
        if stored is None:
            return model_mod.resolve_priors(self.spec, self.prepared).spec
        priors = {term: parse_prior(text, where=f"stored prior for {term!r}") for term, text in json.loads(stored).items()}
        return self.spec.with_priors(priors)

    @property
    def prior_reasons(self) -> dict[str, str]:
        """How each `auto` prior became its numbers ("auto: 0.5 x SD(wellbeing)=1.83 -> ...")."""
        stored = self.info.get("prior_reasons")
        return json.loads(stored) if stored is not None else model_mod.resolve_priors(self.spec, self.prepared).reasons

    @cached_property
    def model(self):
        """The Bambi model, rebuilt from the stored spec (its resolved priors) and data (no sampling)."""
        from bayes_trial.sampling import build as bambi_build

        return bambi_build.build(self.used_spec, self.prepared)

    @cached_property
    def other_terms(self):
        """`fastpaths.OtherTerms` (the model without `(1|participant_id)` and that term's SD prior)
        where the participant intercepts can be integrated out, else None."""
        from bayes_trial.sampling.fastpaths import build_other_terms, can_marginalise

        return build_other_terms(self.used_spec, self.prepared) if can_marginalise(self.prepared) else None

    @cached_property
    def mean_model(self):
        """The Bambi model that `expected_response` predicts with.

        For a Gaussian model whose participant intercepts the fast path can integrate out, the model
        of the other terms: Bambi builds `(1|participant_id)` from dense rows x persons and
        persons x persons matrices (47 GiB for 80,000 persons), and the intercepts' draws are in
        the posterior anyway. Otherwise the full model.
        """
        from bayes_trial.sampling.fastpaths import PARTICIPANT_TERM

        if self.other_terms is not None and PARTICIPANT_TERM in self.idata.posterior:
            return self.other_terms.model
        return self.model

    @cached_property
    def prior_models(self) -> list:
        """PyMC models that together carry every prior of the fit, without a persons-sized term
        where the participant intercepts can be integrated out (`fastpaths.prior_models`)."""
        from bayes_trial.sampling.fastpaths import prior_models

        return prior_models(self.other_terms if self.other_terms is not None else self.model)

    @property
    def data(self) -> pd.DataFrame:
        return self.prepared.data

    @property
    def family(self) -> Family:
        """The spec's outcome family (see `families.registry`)."""
        return registry.get(self.spec.family)

    @property
    def categories(self) -> np.ndarray | None:
        """The values of an ordinal outcome's categories (floats), else None."""
        outcome = self.data[self.prepared.response]
        if isinstance(outcome.dtype, pd.CategoricalDtype):
            return np.asarray(outcome.cat.categories, dtype=float)
        return None


@dataclass(frozen=True)
class Draws:
    """Posterior draws as answers and diagnostics use them: the groups of an InferenceData, without ArviZ."""

    posterior: xr.Dataset
    sample_stats: xr.Dataset = field(default_factory=xr.Dataset)


def _posterior(draws) -> xr.Dataset:
    return draws.posterior if hasattr(draws, "posterior") else draws


def expected_response(fit: Fit, draws, data: pd.DataFrame) -> xr.DataArray:
    """Posterior draws of the likelihood's parent parameter (the mean, or category probabilities) per row.

    Evaluated from the draws (`sampling.predictor`, `Family.response_parameter`): the numbers of
    Bambi's ``predict(kind="response_params")`` without building the model.

    Parameters
    ----------
    fit
        The fit whose formula and family predict.
    draws
        Its posterior (a Dataset, or anything with a ``posterior``: `Fit.idata`, or a changed copy
        such as `query.new_town_posterior`'s).
    data
        Rows to predict, in the columns of ``fit.data``; on the fast Gaussian path their
        participants must be the fit's own.

    Returns
    -------
    xarray.DataArray
        Dims chain, draw, ``__obs__`` (and a category dim for ordinal models).
    """
    posterior = _posterior(draws)
    predicted, row_pattern, intercepts = _pattern_predictions(fit, posterior, data)
    values = predicted.isel(__obs__=xr.DataArray(row_pattern, dims="__obs__"))
    values = values.assign_coords(__obs__=np.arange(len(data)))
    if intercepts is not None:
        intercepts.load()  # into the posterior itself: a stored fit's are read from disk once
        persons = xr.DataArray(data[PARTICIPANT].astype(str).to_numpy(), dims="__obs__")
        values = values + intercepts.sel({PARTICIPANT_DIM: persons}).drop_vars(PARTICIPANT_DIM).assign_coords(
            __obs__=values["__obs__"])
    return values


def mean_expected_response(fit: Fit, draws, data: pd.DataFrame, groups: np.ndarray,
                           weights: np.ndarray, *, differences_only: bool = False) -> xr.DataArray:
    """Draws of the weighted mean of `expected_response` over the rows of each group.

    The same numbers as averaging `expected_response` (up to float rounding), without its rows x draws
    array: a row's mean is its formula pattern's prediction plus (for an identity link) its
    participant's intercept, so each group's mean is a weighted sum over patterns and over persons.
    For 4 counterfactual copies of 100,000 persons and 4,000 draws that array alone was 12.8 GB.

    Parameters
    ----------
    fit, draws
        As for `expected_response`.
    data
        Rows to predict, in the columns of ``fit.data``.
    groups
        Each row's group, integers 0 to G - 1 (every group with rows).
    weights
        Each row's weight in its group's mean.
    differences_only
        Only differences between the groups will be used: where every group weights the same persons
        alike (counterfactual copies of one population), the participant intercepts add the same
        draws to every group and are left out, so the persons x draws intercepts are never read.

    Returns
    -------
    xarray.DataArray
        Dims chain, draw, ``group`` (and a category dim for ordinal models).
    """
    predicted, row_pattern, intercepts = _pattern_predictions(fit, _posterior(draws), data)
    groups = np.asarray(groups, dtype=int)
    n_groups = int(groups.max()) + 1
    totals = np.bincount(groups, weights=weights, minlength=n_groups)
    mixing = _group_matrix(groups, row_pattern, weights, n_groups, predicted.sizes["__obs__"]) / totals[:, None]
    values = xr.dot(predicted.drop_vars("__obs__", errors="ignore"), xr.DataArray(mixing, dims=("group", "__obs__")),
                    dim="__obs__")
    if intercepts is not None:
        levels = pd.Index(intercepts[PARTICIPANT_DIM].to_numpy())
        codes = levels.get_indexer(data[PARTICIPANT].astype(str).to_numpy())
        persons = _group_matrix(groups, codes, weights, n_groups, len(levels)) / totals[:, None]
        if differences_only and np.allclose(persons, persons[:1]):
            return values.transpose("chain", "draw", "group", ...)
        intercepts.load()  # into the posterior itself: a stored fit's are read from disk once
        values = values + xr.dot(intercepts.drop_vars(PARTICIPANT_DIM),
                                 xr.DataArray(persons, dims=("group", PARTICIPANT_DIM)), dim=PARTICIPANT_DIM)
    return values.transpose("chain", "draw", "group", ...)


def _group_matrix(groups: np.ndarray, columns: np.ndarray, weights: np.ndarray, n_groups: int, n_columns: int) -> np.ndarray:
    """Summed weights of the rows of each (group, column) pair, as a dense n_groups x n_columns matrix."""
    flat = np.bincount(groups * n_columns + columns, weights=weights, minlength=n_groups * n_columns)
    return flat.reshape(n_groups, n_columns)


def mean_outcome_shifts(fit: Fit, draws, data: pd.DataFrame, weights: np.ndarray, deltas) -> np.ndarray:
    """Draws of how far shifting the linear predictor by each delta moves the weighted mean expected outcome.

    The linear predictor of `data` is evaluated once (each distinct formula pattern once) and shifted
    by every delta; the family says what the shift does on the outcome scale (`Family.mean_shifts`).

    Parameters
    ----------
    fit, draws
        As for `expected_response`.
    data
        Rows to predict, in the columns of ``fit.data``.
    weights
        Each row's weight in the mean.
    deltas
        Shifts on the link (latent) scale.

    Returns
    -------
    numpy.ndarray
        (sample, delta), samples chain by chain as `query` stacks them; exactly 0 where delta is 0.
    """
    posterior = _posterior(draws)
    eta, row_pattern, _ = _pattern_linear_predictor(fit, posterior, data)
    pattern_weights = np.bincount(row_pattern, weights=weights, minlength=eta.shape[-1]) / np.sum(weights)
    deltas = np.asarray(deltas, dtype=float)
    shifts = fit.family.mean_shifts(eta, deltas, pattern_weights, posterior, fit.prepared.response, fit.categories)
    return shifts.reshape(-1, len(deltas))


def _pattern_predictions(fit: Fit, posterior: xr.Dataset, data: pd.DataFrame):
    """The parent parameter's draws for each distinct formula pattern of `data`, each row's pattern, and
    the participant intercepts to add to them (None where they are inside the patterns' predictions)."""
    eta, row_pattern, intercepts = _pattern_linear_predictor(fit, posterior, data)
    predicted = fit.family.response_parameter(eta, posterior, fit.prepared.response, fit.categories)
    return predicted, row_pattern, intercepts


def _pattern_linear_predictor(fit: Fit, posterior: xr.Dataset, data: pd.DataFrame):
    """The linear predictor's draws for each distinct formula pattern of `data` (chain, draw, pattern), each
    row's pattern, and the participant intercepts to add to them (None where they are inside the patterns')."""
    terms = formula_terms(fit.prepared.formula, posterior)
    # With an identity link a participant's intercept adds to the mean of every row of theirs, so it
    # is added per person afterwards (`expected_response`, `mean_expected_response`) instead of
    # making every person a pattern of their own.
    added = fit.family.link == "identity" and any(t.variable == PARTICIPANT_TERM for t in terms)
    intercepts = posterior[PARTICIPANT_TERM] if added else None
    terms = [t for t in terms if not (added and t.variable == PARTICIPANT_TERM)]
    # A row's prediction depends only on the columns its terms name, and counterfactual copies of
    # thousands of persons share a few hundred such patterns: each pattern is predicted once.
    used = list(dict.fromkeys(c for t in terms for part in (*t.parts, *(t.factor or "").split(":"))
                              for c in [part.strip()] if c in data.columns and not (added and c == PARTICIPANT)))
    pattern = data.groupby(used, sort=False, observed=True, dropna=False).ngroup().to_numpy() if used else (
        np.zeros(len(data), dtype=int))
    _, first, row_pattern = np.unique(pattern, return_index=True, return_inverse=True)
    patterns = data.iloc[first].reset_index(drop=True)
    return linear_predictor(posterior, terms, patterns), row_pattern, intercepts


def keep_record(fit: Fit, name: str, text: str) -> None:
    """Keep `text` with the fit under `name`: in `fit.info` now, and in the file that `save` writes.

    For results about a fit that never change once it is sampled (its diagnostics verdict, prior
    check), so that readers of the file need not compute them again. Small texts only: they are
    attributes of the posterior group.
    """
    fit.posterior.attrs[f"{ATTR}_{name}"] = text
    fit.info[name] = text


GRAPH_PRIORS_RECORD = "graph_priors"


def graph_priors(fit: Fit) -> pd.DataFrame:
    """Every prior of the fit as it stands in the PyMC graph (`sampling.build.pymc_priors`), one row per term.

    Read from the fit's record (`record_graph_priors`) when it has one, else from the rebuilt models.
    """
    stored = fit.info.get(GRAPH_PRIORS_RECORD)
    if stored is not None:
        return pd.DataFrame(json.loads(stored), columns=["term", "parameter", "distribution", "params", "set_by"])
    from bayes_trial.sampling.build import pymc_priors

    return pymc_priors(fit.prior_models, fit.spec)


def record_graph_priors(fit: Fit) -> None:
    """Keep the table of `graph_priors` in the fit (a few rows), for `save` to write."""
    keep_record(fit, GRAPH_PRIORS_RECORD, json.dumps(graph_priors(fit).to_dict(orient="records")))


def storage_note(fit: Fit) -> str | None:
    """What a fast-path fit stores of its largest arrays, in words (None for other fits)."""
    from bayes_trial.sampling.fastpaths import PARTICIPANT_DIM, PARTICIPANT_TERM

    posterior = fit.posterior
    if fit.other_terms is None or PARTICIPANT_TERM not in posterior:
        return None
    draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    intercepts = posterior[PARTICIPANT_TERM]
    note = (f"stored: participant intercepts as {intercepts.dtype} ({posterior.sizes[PARTICIPANT_DIM]:,} persons x "
            f"{draws:,} draws, {intercepts.nbytes / 1e9:.2f} GB)")
    if "log_likelihood" in fit.idata.groups():
        return note + f"; pointwise log-likelihood as float32 ({len(fit.data):,} rows x {draws:,} draws)"
    return note + (f"; pointwise log-likelihood not stored ({len(fit.data):,} rows x {draws:,} draws would be "
                   f"{len(fit.data) * draws * 4 / 1e9:.2f} GB): compare, ppc and diagnose --sensitivity recompute it")


def package_versions() -> dict[str, str]:
    """Versions of the packages a fit depends on, stored with every fit."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _run_sampler(bmb_model, prepared: model_mod.PreparedData, settings: dict[str, Any], progress: bool) -> az.InferenceData:
    from bayes_trial.sampling.build import stored_variables

    if settings["sampler"] == "nutpie":
        # Participant intercepts integrated out where the model allows, compiled models cached.
        from bayes_trial.sampling.fastpaths import sample_nutpie

        return sample_nutpie(bmb_model, prepared, settings, progress=progress, marginalise=settings.get("fast", True),
                             for_storage=True)
    import pymc as pm

    pymc_model = bmb_model.backend.model

    with pymc_model:
        return pm.sample(
            draws=settings["draws"], tune=settings["tune"], chains=settings["chains"], var_names=stored_variables(pymc_model),
            random_seed=settings["seed"], target_accept=settings["target_accept"],
            progressbar=progress, compute_convergence_checks=False, cores=min(settings["chains"], os.cpu_count() or 1),
        )


def _tidy(idata: az.InferenceData, bmb_model, prepared: model_mod.PreparedData) -> az.InferenceData:
    """Keep what a reader needs: parameters on their natural scale, observed data, log-likelihood."""
    import arviz as az
    import pymc as pm

    from bayes_trial.sampling.fastpaths import OtherTerms

    pymc_model = (bmb_model.model if isinstance(bmb_model, OtherTerms) else bmb_model).backend.model
    for group in [g for g in idata.groups() if g.startswith("warmup")]:
        delattr(idata, group)
    if "log_likelihood" not in idata.groups() and not isinstance(bmb_model, OtherTerms):  # the fast path brings its own
        pm.compute_log_likelihood(idata, model=pymc_model, extend_inferencedata=True, progressbar=False)
    drop = [name for name, values in idata.posterior.data_vars.items()
            if name.endswith(("_offset", "__")) or "__obs__" in values.dims]
    posterior = idata.posterior.drop_vars(drop)
    observed = {rv.name: pymc_model.rvs_to_values[rv] for rv in pymc_model.observed_RVs}
    obs_data = xr.Dataset(
        {name: (("__obs__",), np.asarray(value.data if hasattr(value, "data") else value.eval()).reshape(len(prepared.data), -1)[:, 0])
         for name, value in observed.items()}
    )
    groups = {"posterior": posterior, "sample_stats": idata.sample_stats, "observed_data": obs_data,
              "constant_data": _data_to_dataset(prepared.data)}
    if "log_likelihood" in idata.groups():  # else a large fast-path fit: `with_log_likelihood` recomputes it
        groups["log_likelihood"] = idata.log_likelihood.rename(
            {d: "__obs__" for d in idata.log_likelihood.dims if d not in ("chain", "draw")})
    return az.InferenceData(**groups)


def _log_likelihood_not_stored(fit: Fit) -> bool:
    """A fast-path fit of many rows without its pointwise log-likelihood (`fastpaths.stores_log_likelihood`)."""
    return "log_likelihood" not in fit.idata.groups() and fit.other_terms is not None


def with_log_likelihood(fit: Fit) -> az.InferenceData:
    """The fit's InferenceData with its pointwise log-likelihood (for LOO and power-scaling).

    Fast-path fits of many rows do not store it (`fastpaths.stores_log_likelihood`); it is then
    recomputed from the stored posterior and data (the same numbers) and kept on the fit.
    """
    if _log_likelihood_not_stored(fit):
        from bayes_trial.sampling.fastpaths import log_likelihood_group, participant_statistics

        stats = participant_statistics(fit.prepared, fit.other_terms)
        fit.idata.add_groups(log_likelihood=log_likelihood_group(fit.idata.posterior, stats, fit.prepared))
    return fit.idata


def log_likelihood_totals(fit: Fit) -> xr.Dataset:
    """Each draw's log-likelihood summed over the rows: one (chain, draw) variable, as power-scaling needs.

    A large fast-path fit without a stored pointwise log-likelihood sums it draw block by draw block,
    never holding the rows x draws array (0.96 GB for 240,000 rows and 1,000 draws).
    """
    if _log_likelihood_not_stored(fit):
        from bayes_trial.sampling.fastpaths import log_likelihood, participant_statistics

        posterior = fit.idata.posterior
        stats = participant_statistics(fit.prepared, fit.other_terms)
        totals = log_likelihood(posterior, stats, fit.prepared.data[fit.prepared.response].to_numpy(dtype=float),
                                summed=True)
        return xr.Dataset({fit.prepared.response: (("chain", "draw"), totals)},
                          coords={"chain": posterior["chain"], "draw": posterior["draw"]})
    pointwise = with_log_likelihood(fit).log_likelihood
    return xr.Dataset({name: values.sum([d for d in values.dims if d not in ("chain", "draw")], dtype=float)
                       for name, values in pointwise.data_vars.items()})


def _data_to_dataset(frame: pd.DataFrame) -> xr.Dataset:
    columns = {}
    for col in frame.columns:
        values = frame[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(values.cat.categories.dtype if values.cat.categories.dtype != object else object)
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            values = values.astype(str).to_numpy(dtype=object)
        columns[col] = (("__obs__",), np.asarray(values))
    return xr.Dataset(columns)


def _levels(frame: pd.DataFrame) -> dict[str, list]:
    return {
        col: [v.item() if hasattr(v, "item") else v for v in frame[col].cat.categories]
        for col in frame.columns
        if isinstance(frame[col].dtype, pd.CategoricalDtype)
    }


def sample(spec: ModelSpec, frame: pd.DataFrame, *, progress: bool = True, **sampler_settings: Any) -> Fit:
    """Fit `spec` to a validated survey or register table; sampler settings override the spec's."""
    spec = spec.with_sampler(**sampler_settings)
    prepared = model_mod.prepare(spec, frame)
    return sample_prepared(spec, prepared, data_hash=data_hash(frame), progress=progress)


def sample_prepared(spec: ModelSpec, prepared: model_mod.PreparedData, *, data_hash: str, progress: bool = True) -> Fit:
    """Sample `spec` on model-ready rows (`modelling.frames.prepare`); see `sample`."""
    from bayes_trial.sampling.fastpaths import OtherTerms

    for note in prepared.notes:
        say(f"note: {note}", progress)
    settings = spec.sampler
    resolved = model_mod.resolve_priors(spec, prepared)
    for term, reason in resolved.reasons.items():
        say(f"prior {term}: {reason}", progress)
    choices = parametrisation.choose(resolved.spec, prepared)
    if choices:
        say(f"group effects: {parametrisation.summary(choices)} ({parametrisation.origin(choices)})", progress)
    bmb_model = model_to_sample(resolved.spec, prepared, settings)
    say(f"Sampling {spec.name} ({prepared.formula}, {prepared.family}) with {settings['sampler']}: "
        f"{settings['chains']} chains x {settings['tune']} tune + {settings['draws']} draws, seed {settings['seed']}", progress)
    started = time.perf_counter()
    raw = _run_sampler(bmb_model, prepared, settings, progress)
    elapsed = time.perf_counter() - started
    say(f"  done in {elapsed:.1f} s", progress)
    idata = _tidy(raw, bmb_model, prepared)
    info = {
        "spec": spec.to_json(),
        "data_hash": data_hash,
        "formula_used": prepared.formula,
        # Every prior as used, `auto` ones as numbers: a stored fit reports and rebuilds what it sampled.
        "resolved_priors": json.dumps({term: str(prior) for term, prior in resolved.spec.priors.items()}),
        "prior_reasons": json.dumps(resolved.reasons),
        "parametrisation": json.dumps({term: choice.parametrisation for term, choice in choices.items()}),
        "family_used": prepared.family,
        "response": prepared.response,
        "aggregated": int(prepared.aggregated),
        "notes": json.dumps(list(prepared.notes)),
        "dropped_factors": json.dumps(list(prepared.dropped_factors)),
        "missing_outcomes": json.dumps([list(row) for row in prepared.missing]),
        "missing_over_randomised": int(prepared.missing_over_randomised),
        "levels": json.dumps(_levels(prepared.data)),
        "sampler": json.dumps(settings, sort_keys=True),
        "versions": json.dumps(package_versions(), sort_keys=True),
        "sampling_seconds": round(elapsed, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    idata.posterior.attrs.update({f"{ATTR}_{k}": v for k, v in info.items()})
    fit = Fit(spec, prepared, idata, info)
    fit.__dict__["used_spec"] = resolved.spec
    if not isinstance(bmb_model, OtherTerms):  # else `Fit.model` builds the full model when a query needs it
        fit.__dict__["model"] = bmb_model
    return fit


def model_to_sample(spec: ModelSpec, prepared: model_mod.PreparedData, settings: dict[str, Any]):
    """The built Bambi model, or for the fast Gaussian participant-intercept path only its other terms.

    Bambi builds `(1|participant_id)` from dense rows x persons and persons x persons matrices (47 GiB
    for 80,000 persons), so that path never builds the full model.
    """
    from bayes_trial.sampling import build as bambi_build
    from bayes_trial.sampling.fastpaths import build_other_terms, can_marginalise

    if fast_path(settings) and can_marginalise(prepared):
        return build_other_terms(spec, prepared)
    return bambi_build.build(spec, prepared)


def fast_path(settings: dict[str, Any]) -> bool:
    """Whether sampler `settings` take the nutpie path that integrates what the model allows out (`fastpaths`)."""
    return settings["sampler"] == "nutpie" and settings.get("fast", True)


def refit(fit: Fit, *, priors: dict[str, Prior] | None = None, progress: bool = True, **sampler_settings: Any) -> Fit:
    """The same model and data with new priors and/or sampler settings."""
    spec = fit.spec.with_priors(priors or {}).with_sampler(**sampler_settings)
    return sample_prepared(spec, fit.prepared, data_hash=fit.info["data_hash"], progress=progress)


def save(fit: Fit, path: str | os.PathLike) -> Path:
    """Write the fit as netCDF atomically: a crash never leaves a half-written file at `path`.

    The fit is written to a hidden `.NAME.PID.*.tmp` beside `path` and renamed over `path` only
    when complete. A save that is killed mid-write leaves its temporary file behind; the next save
    to the same path removes those whose writing process is gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # Uncompressed: posterior draws barely compress (a fit file 8-12% larger), while zlib in
        # netCDF's small default chunks made reading the draws 2.5-3.5x slower, and every query reads them.
        fit.idata.to_netcdf(tmp, compress=False)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _remove_abandoned_temp_files(path: Path) -> None:
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _process_running(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_running(pid: int) -> bool:
    if os.name != "posix":  # signal 0 is only a liveness probe on POSIX: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def load(path: str | os.PathLike) -> Fit:
    """A stored fit, ready to query or refit.

    The posterior and the model-ready data are read now (damaged draws fail here, not in a later
    query), with xarray alone; the other groups when `Fit.idata` is first used.
    """
    path = Path(path)
    if not path.exists():
        raise FitFileError(f"{path}: no such fit file")
    try:
        names, loaded = _read_groups(path, ["posterior", "constant_data"])
    except Exception as exc:  # netCDF/HDF5 raise many types for truncated or foreign files
        raise FitFileError(f"{path}: not a readable fit file (truncated or not netCDF: {exc.__class__.__name__})") from None
    attrs = loaded["posterior"].attrs if "posterior" in loaded else {}
    if f"{ATTR}_spec" not in attrs or "constant_data" not in loaded:
        raise FitFileError(f"{path}: a netCDF file, but not a bayes-trial fit (no stored spec)")
    info = {k[len(ATTR) + 1:]: v for k, v in attrs.items() if k.startswith(f"{ATTR}_")}
    try:
        spec = spec_from_json(info["spec"])
        frame = loaded["constant_data"].to_dataframe().reset_index(drop=True)
        levels = json.loads(info["levels"])
        for col in frame.columns:
            if col in levels:
                frame[col] = pd.Categorical(frame[col], categories=levels[col], ordered=True)
            elif frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col]):
                frame[col] = frame[col].astype(str).astype(object)
        prepared = model_mod.PreparedData(
            data=frame, formula=info["formula_used"], family=info["family_used"], response=info["response"],
            aggregated=bool(int(info["aggregated"])), notes=tuple(json.loads(info["notes"])),
            dropped_factors=tuple(json.loads(info["dropped_factors"])),
            # Fits stored before missing outcomes were counted have no such record.
            missing=tuple(tuple(row) for row in json.loads(info.get("missing_outcomes", "[]"))),
            missing_over_randomised=bool(int(info.get("missing_over_randomised", 0))),
        )
    except KeyError as exc:
        raise FitFileError(f"{path}: bayes-trial fit without its stored {exc.args[0]!r} (damaged, or written by another version)") from None
    except (ValueError, TypeError, SpecError) as exc:  # JSONDecodeError is a ValueError
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise FitFileError(f"{path}: bayes-trial fit with damaged metadata ({reason})") from None
    return Fit(spec, prepared, info=info, stored=_StoredGroups(path, names, loaded))
