"""Does the survey analysis survive non-response? Interval coverage under known missingness mechanisms.

:func:`attrition_study` simulates trials whose survey non-response is missing completely at random,
at random given arm, wave and the previous answer, or not at random (the non-responders' own scores
shifted by a known delta: a pattern mixture), fits the survey model to everyone's rows (the
non-responders' rows empty, `data.contract.with_nonresponse`), and records whether the 90% interval
of each arm's contrast with control at the last wave holds the true contrast over everyone
randomised, twice: under the missing-at-random answer (`query.hypothesis`) and delta-adjusted at the
design's true delta (`estimands.sensitivity.delta_adjusted`). The MAR answer should cover at its
nominal rate under MCAR and MAR and miss under MNAR; the delta-adjusted answer at the true delta
should restore it.

Every fit runs as a task of :func:`bayes_trial.batch.engine.run_batch`, so runs resume and scale out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bayes_trial.batch.engine import Task, run_batch
from bayes_trial.batch.simulated import as_design, as_spec, interval_coverage, save_figure, write_csv
from bayes_trial.core.errors import SpecError
from bayes_trial.data.contract import validate_register, validate_survey, with_nonresponse
from bayes_trial.modelling.spec import spec_from_json
from bayes_trial.simulation.generate import simulate

__all__ = ["AttritionResult", "attrition_study", "coverage_table", "plot_coverage", "true_deltas"]

STUDY_SETTINGS = {"draws": 500, "tune": 500, "chains": 2}
LEVEL = 0.90
ANALYSES = ("MAR", "delta-adjusted at the true delta")


def true_deltas(truth: dict, outcome: str) -> dict[str, float]:
    """The design's delta per arm for `outcome` (empty when non-response is ignorable)."""
    per_arm = (truth["attrition"].get("delta") or {}).get(outcome, {})
    return {arm: float(d) for arm, d in per_arm.items() if d != 0}


def attrition_fit(spec_json: str, design: dict, seed: int, layout_seed: int, settings: dict) -> dict:
    """One replication on a worker: simulate, fit the survey model, both answers per arm at the last wave."""
    from bayes_trial.estimands.query import hypothesis
    from bayes_trial.estimands.sensitivity import delta_adjusted
    from bayes_trial.sampling.fit import sample

    spec = spec_from_json(spec_json)
    sim = simulate(design, seed=seed, layout_seed=layout_seed)
    survey = validate_survey(sim.survey, outcomes={spec.outcome: tuple(spec.bounds)}, control_arm=spec.control_arm)
    padded = with_nonresponse(survey, validate_register(sim.register, control_arm=spec.control_arm))
    fit = sample(spec, padded, progress=False, **{**settings, "seed": seed})
    truth = sim.truth["attrition"]["outcomes"][spec.outcome]
    wave = max(int(w) for w in truth["nonresponse_share"][spec.control_arm])
    deltas = true_deltas(sim.truth, spec.outcome) or {spec.control_arm: 0.0}
    rows = []
    for arm, by_wave in truth["true_contrast"].items():
        expression = f"{arm} - {spec.control_arm} > 0"
        mar = hypothesis(fit, expression, wave=wave, interval=LEVEL).iloc[0]
        adjusted = delta_adjusted(fit, expression, deltas={a: [d] for a, d in deltas.items()}, wave=wave,
                                  interval=LEVEL).grid.iloc[0]
        true = float(by_wave[str(wave)])
        for analysis, answer in zip(ANALYSES, (mar, adjusted)):
            rows.append({"contrast": f"{arm} - {spec.control_arm}", "wave": wave, "analysis": analysis, "truth": true,
                         "mean": float(answer["mean"]), "low": float(answer["lower"]), "high": float(answer["upper"]),
                         "covered": bool(answer["lower"] <= true <= answer["upper"])})
    shares = {arm: float(s[str(wave)]) for arm, s in truth["nonresponse_share"].items()}
    return {"contrasts": rows, "nonresponse_share": shares, "sampling_seconds": fit.info["sampling_seconds"],
            "divergences": int(fit.idata.sample_stats["diverging"].sum())}


@dataclass
class AttritionResult:
    """Per simulation, contrast and analysis: truth, posterior mean and 90% interval; the coverage table; files."""

    estimates: pd.DataFrame
    coverage: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def attrition_study(designs: dict[str, dict | str | os.PathLike], spec: str = "wellbeing", sims: int = 50, *,
                    out: str | os.PathLike, seed: int = 1, scheduler: str | None = None, n_workers: int | None = None,
                    progress: bool = True, **sampler_settings) -> AttritionResult:
    """Fit `sims` trials (seeds seed, seed+1, ...) of each design, keyed by the mechanism's name.

    Within a design every trial has the same persons, arms and consultants (`layout_seed=seed`), so
    a worker reuses one compiled model; effects, outcomes and who answers are drawn anew. Writes to
    `out`: `runs/` (one record per fit; reruns resume), `estimates.csv`, `coverage.csv` and
    `coverage.png`/`.svg`. Sampler settings default to 2 chains x 500 draws after 500 tuning steps.
    """
    if sims < 1:
        raise SpecError(f"sims: expected a positive number of simulations, got {sims}")
    if not designs:
        raise SpecError("designs: expected at least one non-response mechanism")
    settings = {**STUDY_SETTINGS, **{k: v for k, v in sampler_settings.items() if v is not None}}
    model = as_spec(spec).with_sampler(**settings)
    if model.table != "survey":
        raise SpecError(f"attrition study: {model.name!r} models the register; non-response concerns survey outcomes")
    loaded = {name: as_design(design) for name, design in designs.items()}
    tasks, mechanism_of = [], {}
    for i in range(sims):
        for name, design in loaded.items():
            key = f"{name}_sim{seed + i:04d}"
            mechanism_of[key] = name
            tasks.append(Task(key, attrition_fit, {"spec_json": model.to_json(), "design": design, "seed": seed + i,
                                                   "layout_seed": seed, "settings": model.sampler}))
    out = Path(out)
    manifest = {"kind": "attrition", "spec": model.name, "designs": loaded, "settings": settings}
    batch = run_batch(tasks, out / "runs", scheduler=scheduler, n_workers=n_workers, manifest=manifest,
                      progress=progress, label="attrition coverage")
    records = {key: res for key, res in batch.results().items() if key in mechanism_of}
    estimates = pd.DataFrame([{"sim": key, "mechanism": mechanism_of[key], **row,
                               "nonresponse_control": res["nonresponse_share"][model.control_arm],
                               "divergences": res["divergences"], "sampling_seconds": res["sampling_seconds"]}
                              for key, res in records.items() for row in res["contrasts"]])
    result = AttritionResult(estimates, coverage_table(estimates),
                             {k: batch.records[k]["error"] for k in batch.failed if k in mechanism_of})
    if not estimates.empty:
        result.files = {name: write_csv(getattr(result, name), out / f"{name}.csv") for name in ("estimates", "coverage")}
        result.files.update(save_figure(plot_coverage(result.coverage), out, "coverage"))
    return result


CELL_COLUMNS = ["mechanism", "contrast", "analysis"]


def coverage_table(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per mechanism, contrast and analysis: 90% coverage with its binomial SE, mean bias, interval width
    (`simulated.interval_coverage`), and control's mean non-response share."""
    if estimates.empty:
        return pd.DataFrame()
    rows = [{**dict(zip(CELL_COLUMNS, keys)), **interval_coverage(g, LEVEL),
             "nonresponse_control": float(g["nonresponse_control"].mean())}
            for keys, g in estimates.groupby(CELL_COLUMNS, sort=False)]
    return pd.DataFrame(rows)


def plot_coverage(coverage: pd.DataFrame):
    """Coverage per mechanism, one panel per contrast, the two analyses side by side, the nominal 0.9 dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contrasts = list(dict.fromkeys(coverage["contrast"]))
    mechanisms = list(dict.fromkeys(coverage["mechanism"]))
    fig, axes = plt.subplots(1, len(contrasts), figsize=(3.6 * len(contrasts), 3.2), squeeze=False, sharey=True)
    for ax, contrast in zip(axes[0], contrasts):
        for i, analysis in enumerate(ANALYSES):
            here = coverage[(coverage["contrast"] == contrast) & (coverage["analysis"] == analysis)]
            here = here.set_index("mechanism").reindex(mechanisms)
            x = [m + (i - 0.5) * 0.25 for m in range(len(mechanisms))]
            ax.errorbar(x, here["coverage"], yerr=2 * here["coverage_se"], fmt="o", ms=5, capsize=3, color=f"C{i}",
                        label=analysis)
        ax.axhline(LEVEL, color="0.4", ls=":", lw=1)
        ax.set_xticks(range(len(mechanisms)), mechanisms)
        ax.set_ylim(0, 1.05)
        ax.set_title(contrast, fontsize=9)
    axes[0, 0].set_ylabel("coverage of the 90% interval")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    n = int(coverage["sims"].min())
    fig.suptitle(f"Survey contrast at the last wave under non-response ({n}+ simulated trials per point, bars +-2 SE)",
                 fontsize=10)
    fig.tight_layout()
    return fig
