"""Consultant variance the data can speak to: interval coverage of the consultant SD and the arm contrasts.

In the trials, consultants (caseworkers) deliver the treatment and are partly confounded with
arms. :func:`consultant_study` simulates trials over a grid of consultant layouts (consultants per
arm, nested in one arm or shared across the arms of a town) and true consultant SDs, fits each
through the normal fit path, and records whether the 90% central interval of the consultant SD and
of every arm contrast holds the truth; :func:`coverage_table` and :func:`plot_coverage` summarise.

Every fit runs as a task of :func:`bayes_trial.batch.engine.run_batch`, so runs resume and scale out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_trial.batch.engine import Task, run_batch
from bayes_trial.batch.simulated import (
    as_design,
    as_spec,
    interval_coverage,
    model_frame,
    parameter_draws,
    population_parameters,
    sampling_diagnostics,
    save_figure,
    true_values,
    write_csv,
)
from bayes_trial.core.errors import SpecError
from bayes_trial.modelling.frames import prepare, resolve_priors
from bayes_trial.modelling.spec import ModelSpec, spec_from_json
from bayes_trial.simulation.design import validate_design
from bayes_trial.simulation.generate import simulate

__all__ = ["Cell", "ConsultantResult", "consultant_study", "consultant_design", "study_grid", "arm_contrasts",
           "contrast_prior_sd", "coverage_table", "plot_coverage"]

CONSULTANT_SD = "1|municipality:consultant_id_sigma"
NESTINGS = ("nested", "shared")
STUDY_SETTINGS = {"draws": 500, "tune": 500, "chains": 2}
LEVEL = 0.90
THRESHOLD = 0.85


@dataclass(frozen=True)
class Cell:
    """One grid cell: the outcome's spec, consultants per arm and town, their nesting, the true SD."""

    spec: str
    per_arm: int
    nesting: str
    sd: float

    @property
    def key(self) -> str:
        return f"{self.spec}_k{self.per_arm}_{self.nesting}_sd{self.sd:g}"


def consultant_design(base: dict | str | os.PathLike, per_arm: int, nesting: str, sd: float) -> dict:
    """`base` with `per_arm` consultants for every arm of every town and consultant SD `sd` on every outcome.

    `nesting="nested"`: each consultant serves one arm, so arm and consultant are confounded within
    a town. `nesting="shared"`: the same 3 x `per_arm` consultants of a town (for three arms) serve
    every arm; the town has as many consultants as when nested, but each arm meets all of them.
    """
    if nesting not in NESTINGS:
        raise SpecError(f"nesting: expected one of {', '.join(NESTINGS)}, got {nesting!r}")
    design = as_design(base)
    towns = []
    for town in design["towns"]:
        consultants = {arm: per_arm for arm in town["participants"]}
        towns.append({**town, "consultants": consultants,
                      "shared_consultants": sum(consultants.values()) if nesting == "shared" else 0})
    outcomes = {name: {**o, "consultant_sd": sd} for name, o in design["outcomes"].items()}
    return validate_design({**design, "name": f"{design['name']}_k{per_arm}_{nesting}_sd{sd:g}", "towns": towns,
                            "outflow": {**design["outflow"], "consultant_sd": sd}, "outcomes": outcomes})


def study_grid(specs: tuple[str, ...], per_arm: tuple[int, ...], nestings: tuple[str, ...] = NESTINGS,
               sds: tuple[float, ...] = (0.2, 0.5, 0.8)) -> list[Cell]:
    """Every combination, ordered so that cells sharing a data layout (spec, consultants) are adjacent."""
    return [Cell(spec, k, nesting, float(sd)) for spec in specs for k in per_arm for nesting in nestings for sd in sds]


def arm_contrasts(draws: dict[str, np.ndarray], truth: dict[str, float]) -> dict[str, tuple[np.ndarray, float]]:
    """Each arm's contrast with control at the last wave: draws and true value, keyed by label.

    Bambi's `arm*wave` has `arm[a]` at baseline and `arm:wave[a, w]` as the change from it, so the
    contrast at the last wave is their sum, labelled `arm[a] + arm:wave[a, w]`; without waves it is
    `arm[a]` itself.
    """
    out = {}
    for label in [k for k in draws if k.startswith("arm[") and k in truth]:
        arm = label[4:-1]
        changes = [k for k in draws if k.startswith(f"arm:wave[{arm}, ") and k in truth]
        if changes:
            last = max(changes, key=lambda k: int(k.rsplit(", ", 1)[1].rstrip("]")))
            out[f"{label} + {last}"] = (draws[label] + draws[last], truth[label] + truth[last])
        else:
            out[label] = (draws[label], truth[label])
    return out


def contrast_prior_sd(spec: ModelSpec, frame: pd.DataFrame, label: str) -> float:
    """The prior SD that `spec`, its `auto` priors resolved on `frame`, puts on a contrast label of `arm_contrasts`.

    The label's terms (`arm`, `arm:wave`) have independent priors, so the contrast's prior variance is
    the sum of theirs; NaN where a term's prior is not a Normal centred on 0 (its pull on the
    estimate is then not the simple one `coverage_table` reports).
    """
    priors = resolve_priors(spec, prepare(spec, frame)).spec.priors
    variance = 0.0
    for term in (part.strip().split("[", 1)[0] for part in label.split(" + ")):
        prior = priors.get(term)
        if prior is None or prior.dist != "Normal" or prior.params.get("mu", 0.0) != 0.0:
            return float("nan")
        variance += prior.params["sigma"] ** 2
    return float(np.sqrt(variance))


def consultant_fit(spec_json: str, design: dict, seed: int, layout_seed: int, settings: dict) -> dict:
    """One replication on a worker: simulate, fit, summarise the consultant SD and the arm contrasts."""
    from bayes_trial.sampling.fit import sample

    spec = spec_from_json(spec_json)
    sim = simulate(design, seed=seed, layout_seed=layout_seed)
    fit = sample(spec, model_frame(spec, sim), progress=False, **{**settings, "seed": seed})
    names = population_parameters(fit.idata.posterior)
    draws = parameter_draws(fit.idata.posterior, names)
    truth = true_values(spec, sim.truth, list(draws))
    targets = {CONSULTANT_SD: (draws[CONSULTANT_SD], truth[CONSULTANT_SD]), **arm_contrasts(draws, truth)}
    tail = (1 - LEVEL) / 2
    rows = []
    for label, (values, true) in targets.items():
        low, high = np.quantile(values, [tail, 1 - tail])
        rows.append({"parameter": label, "truth": true, "mean": float(values.mean()), "sd": float(values.std(ddof=1)),
                     "low": float(low), "high": float(high), "covered": bool(low <= true <= high)})
    return {"parameters": rows, "sampling_seconds": fit.info["sampling_seconds"],
            **sampling_diagnostics(fit.idata, names)}


@dataclass
class ConsultantResult:
    """Per simulation and parameter: truth, posterior mean and 90% interval; the coverage table; files."""

    estimates: pd.DataFrame
    coverage: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def consultant_study(base: dict | str | os.PathLike, cells: list[Cell], sims: int = 30, *, out: str | os.PathLike,
                     seed: int = 1, scheduler: str | None = None, n_workers: int | None = None, progress: bool = True,
                     **sampler_settings) -> ConsultantResult:
    """Fit `sims` trials (seeds seed, seed+1, ...) per grid cell of designs built from `base`.

    Within a cell every trial has the same layout (persons, arms, consultants: `layout_seed=seed`);
    consultant, town and person effects and the outcomes are drawn anew, so the coverage is that of
    a fixed design, and a worker reuses one compiled model per layout (the fit path caches
    `fastpaths.CACHE_SIZE` of them: more layouts than that in one run recompile every round).

    Writes to `out`: `runs/` (one record per fit; reruns resume, and a larger `sims` or more cells
    extend a run), `estimates.csv`, `coverage.csv` and `coverage.png`/`.svg`. Sampler settings
    default to 2 chains x 500 draws after 500 tuning steps, as in recovery.
    """
    if sims < 1:
        raise SpecError(f"sims: expected a positive number of simulations, got {sims}")
    if not cells:
        raise SpecError("cells: expected at least one grid cell")
    base = as_design(base)
    specs = {name: as_spec(name) for name in dict.fromkeys(cell.spec for cell in cells)}
    settings = {**STUDY_SETTINGS, **{k: v for k, v in sampler_settings.items() if v is not None}}
    specs = {name: spec.with_sampler(**settings) for name, spec in specs.items()}
    designs = {cell: consultant_design(base, cell.per_arm, cell.nesting, cell.sd) for cell in cells}
    tasks, cell_of = [], {}
    # Round by round over the cells: a run stopped early leaves (nearly) as many trials in every cell.
    for i in range(sims):
        for cell in cells:
            key = f"{cell.key}_sim{seed + i:04d}"
            cell_of[key] = cell
            tasks.append(Task(key, consultant_fit, {"spec_json": specs[cell.spec].to_json(), "design": designs[cell],
                                                    "seed": seed + i, "layout_seed": seed,
                                                    "settings": specs[cell.spec].sampler}))
    out = Path(out)
    manifest = {"kind": "consultants", "base": base, "settings": settings}
    batch = run_batch(tasks, out / "runs", scheduler=scheduler, n_workers=n_workers, manifest=manifest,
                      progress=progress, label="consultant coverage")
    records = {key: res for key, res in batch.results().items() if key in cell_of}
    estimates = pd.DataFrame([{"sim": key, "spec": cell_of[key].spec, "per_arm": cell_of[key].per_arm,
                               "nesting": cell_of[key].nesting, "true_sd": cell_of[key].sd, **row,
                               **{k: res[k] for k in ("divergences", "max_rhat", "sampling_seconds")}}
                              for key, res in records.items() for row in res["parameters"]])
    if not estimates.empty:
        estimates["prior_sd"] = _prior_sds(estimates, specs, designs, seed)
    result = ConsultantResult(estimates, coverage_table(estimates),
                              {k: batch.records[k]["error"] for k in batch.failed if k in cell_of})
    if not estimates.empty:
        result.files = {name: write_csv(getattr(result, name), out / f"{name}.csv") for name in ("estimates", "coverage")}
        result.files.update(save_figure(plot_coverage(result.coverage), out, "coverage"))
    return result


def _prior_sds(estimates: pd.DataFrame, specs: dict, designs: dict, seed: int) -> list[float]:
    """`contrast_prior_sd` per estimate row, its `auto` priors resolved on the cell's layout (the same in every trial)."""
    sds = {}
    for cell, design in designs.items():
        frame = model_frame(specs[cell.spec], simulate(design, seed=seed, layout_seed=seed))
        labels = estimates.loc[(estimates["spec"] == cell.spec) & (estimates["per_arm"] == cell.per_arm)
                               & (estimates["nesting"] == cell.nesting) & (estimates["true_sd"] == cell.sd), "parameter"]
        for label in set(labels) - {CONSULTANT_SD}:
            sds[(cell.key, label)] = contrast_prior_sd(specs[cell.spec], frame, label)
    return [sds.get((Cell(r.spec, r.per_arm, r.nesting, r.true_sd).key, r.parameter), np.nan)
            for r in estimates.itertuples()]


CELL_COLUMNS = ["spec", "per_arm", "nesting", "true_sd", "parameter"]


def coverage_table(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per cell and parameter: 90% coverage with its binomial SE (`simulated.interval_coverage`), posterior
    mean, bias, share of fits that diverged.

    Where `estimates` has a `prior_sd` (the contrast's zero-centred Normal prior), also `prior_pull`:
    the bias that prior alone explains, −truth × mean(posterior SD²) / prior SD² (to a normal
    approximation, the posterior mean is the data's estimate shrunk towards 0 by that share), and
    `bias_beyond_prior` = bias − prior_pull.
    """
    if estimates.empty:
        return pd.DataFrame()
    rows = []
    for keys, g in estimates.groupby(CELL_COLUMNS, sort=False):
        stats = interval_coverage(g, LEVEL)
        row = {**dict(zip(CELL_COLUMNS, keys)), "sims": stats["sims"], "truth": float(g["truth"].mean()),
               "coverage": stats["coverage"], "coverage_se": stats["coverage_se"], "mean": float(g["mean"].mean()),
               **{k: stats[k] for k in ("bias", "bias_se", "mean_width")},
               "diverged": float((g["divergences"] > 0).mean())}
        if "prior_sd" in g:
            row["prior_pull"] = float(np.mean(-g["truth"] * g["sd"] ** 2 / g["prior_sd"] ** 2))
            row["bias_beyond_prior"] = row["bias"] - row["prior_pull"]
        rows.append(row)
    return pd.DataFrame(rows)


def plot_coverage(coverage: pd.DataFrame):
    """Coverage vs consultants per arm: rows by parameter, columns by outcome x nesting, lines by true SD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(coverage["parameter"].map(_kind)))
    panels = list(coverage[["spec", "nesting"]].drop_duplicates().itertuples(index=False, name=None))
    fig, axes = plt.subplots(len(kinds), len(panels), figsize=(3.0 * len(panels), 2.5 * len(kinds) + 0.8),
                             squeeze=False, sharex=True, sharey=True)
    sds = sorted(coverage["true_sd"].unique())
    for row, kind in enumerate(kinds):
        for col, (spec, nesting) in enumerate(panels):
            ax = axes[row, col]
            here = coverage[(coverage["spec"] == spec) & (coverage["nesting"] == nesting)
                            & (coverage["parameter"].map(_kind) == kind)]
            for i, sd in enumerate(sds):
                line = here[here["true_sd"] == sd].sort_values("per_arm")
                shift = (i - (len(sds) - 1) / 2) * 0.06
                ax.errorbar(line["per_arm"] * (1 + shift), line["coverage"], yerr=2 * line["coverage_se"], marker="o",
                            ms=4, capsize=2, color=f"C{i}", label=f"true SD {sd:g}")
            ax.axhline(THRESHOLD, color="0.3", ls="--", lw=0.9)
            ax.axhline(LEVEL, color="0.6", ls=":", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(coverage["per_arm"].unique()), [str(k) for k in sorted(coverage["per_arm"].unique())])
            ax.set_ylim(0.4, 1.03)
            if row == 0:
                ax.set_title(f"{spec}, consultants {nesting}", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{kind}\n90% coverage", fontsize=8.5)
            if row == len(kinds) - 1:
                ax.set_xlabel("consultants per arm and town")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    n = int(coverage["sims"].min())
    fig.suptitle(f"Coverage of 90% intervals ({n}+ simulated trials per point, bars +-2 SE; dashed: 0.85)", fontsize=10)
    fig.tight_layout()
    return fig


def _kind(label: str) -> str:
    """Panel row of a parameter: the consultant SD, or the arm in an arm contrast."""
    return "consultant SD" if label == CONSULTANT_SD else f"{label[4:label.index(']')]} - control"
