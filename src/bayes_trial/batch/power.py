"""Power and assurance for the next trial: simulate trials of several sizes, refit, count decisions.

For each size, `sims` trials are simulated from the design with `n_per_arm` participants per arm
(spread over the design's towns in their proportions), each is fitted with the normal fit path,
and the trial "succeeds" when the posterior probability of the target (an arm contrast on the
outcome scale, read exactly as `bayes-trial query` reads it: ``"intensive - control > 0"``,
``"intensive - control > 2pp"`` for outflow, score points for scales) reaches the threshold.
With ``effect_sd = 0`` this is the power at the design's assumed effects; with
``effect_sd > 0`` every simulated trial first draws its true arm effects around the design's
(normal, link scale), and the success rate is the assurance under that design prior.
Fits run on :func:`bayes_trial.batch.run_batch`, so a run resumes and can use a Dask cluster.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_trial.batch.engine import Task, run_batch
from bayes_trial.core.errors import SpecError
from bayes_trial.estimands.query import Hypothesis, parse_hypothesis
from bayes_trial.simulation.generate import simulate
from bayes_trial.modelling.spec import ModelSpec, spec_from_json
from bayes_trial.batch.simulated import (as_design, as_spec, model_frame, population_parameters, sampling_diagnostics,
                                         save_figure, write_csv)

__all__ = ["PowerResult", "parse_target", "scale_design", "power", "power_table", "plot_power"]

POWER_SETTINGS = {"draws": 500, "tune": 500, "chains": 2}


def scale_design(design: dict, n_per_arm: int) -> dict:
    """The design with `n_per_arm` participants in every arm, spread over towns as in the design."""
    design = as_design(design)
    scaled = copy.deepcopy(design)
    for arm in design["arms"]:
        towns = [t for t in scaled["towns"] if arm in t["participants"]]
        if n_per_arm < len(towns):
            raise SpecError(f"n_per_arm {n_per_arm}: arm {arm!r} runs in {len(towns)} towns of design "
                            f"{design['name']!r}, so it needs at least one participant per town")
        counts = np.array([t["participants"][arm] for t in towns], dtype=float)
        exact = counts / counts.sum() * n_per_arm
        new = np.maximum(np.floor(exact).astype(int), 1)
        for i in np.argsort(-(exact - np.floor(exact)))[: n_per_arm - new.sum()]:  # largest remainders
            new[i] += 1
        for town, count in zip(towns, new):
            town["participants"][arm] = int(count)
    scaled["name"] = f"{design['name']}_n{n_per_arm}"
    return scaled


def with_drawn_effects(design: dict, spec: ModelSpec, rng: np.random.Generator, effect_sd: float) -> dict:
    """The design with each treatment arm's true effect shifted by a normal draw (link scale)."""
    drawn = copy.deepcopy(design)
    treated = design["arms"][1:]
    shifts = dict(zip(treated, rng.normal(0.0, effect_sd, len(treated))))
    if spec.table == "register":
        probability = drawn["outflow"]["probability"]
        for arm, shift in shifts.items():
            probability[arm] = float(1 / (1 + math.exp(-(math.log(probability[arm] / (1 - probability[arm])) + shift))))
    else:
        effects = drawn["outcomes"][spec.outcome]["arm_effects"]
        for arm, shift in shifts.items():
            effects[arm] = [e + float(shift) for e in effects[arm]]
    return drawn


def power_fit(spec_json: str, design: dict, seed: int, settings: dict, target: str, wave: int | None) -> dict:
    """One simulated trial on a worker: fit it and give the posterior probability of the target."""
    from bayes_trial.sampling.fit import sample
    from bayes_trial.estimands.query import hypothesis

    spec = spec_from_json(spec_json)
    fit = sample(spec, model_frame(spec, simulate(design, seed=seed)), progress=False, **settings)
    answer = hypothesis(fit, target, wave=wave).iloc[0]
    names = population_parameters(fit.idata.posterior)
    return {"probability": float(answer["p_hypothesis"]), "effect_mean": float(answer["mean"]),
            "effect_lower": float(answer["lower"]), "effect_upper": float(answer["upper"]),
            "sampling_seconds": fit.info["sampling_seconds"], **sampling_diagnostics(fit.idata, names)}


def parse_target(text: str, arms: list[str]) -> Hypothesis:
    """Read a target as `query` does, refusing one that compares nothing (e.g. 'control - control')."""
    target = parse_hypothesis(text, arms)
    if not any(target.weights.values()):
        raise SpecError(f"target {text!r}: the arms cancel out; expected a contrast such as 'intensive - control > 0'")
    return target


@dataclass
class PowerResult:
    """Per size: success rate with its interval; per simulated trial: the posterior probability."""

    table: pd.DataFrame
    trials: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def power(design: dict | str, n_per_arm=(50, 100, 200, 400), target: str = "intensive - control > 0",
          threshold: float = 0.95, sims: int = 100, *, spec: ModelSpec | str = "outflow",
          out: str | os.PathLike, seed: int = 1, wave: int | None = None, effect_sd: float = 0.0,
          scheduler: str | None = None, n_workers: int | None = None, progress: bool = True,
          **sampler_settings) -> PowerResult:
    """Probability that a trial of each size reaches P(target) >= threshold, by simulation and refitting.

    `wave` (survey outcomes) defaults to the design's last wave. Writes to `out`: `runs/` (one
    record per simulated trial; reruns resume, and more sizes or simulations extend a run),
    `power.csv`, `trials.csv` and `power_curve.png`/`.svg`.
    """
    spec = as_spec(spec)
    design = as_design(design)
    goal = parse_target(target, design["arms"])
    sizes = sorted({int(n) for n in n_per_arm})
    if not sizes or sizes[0] < 1:
        raise SpecError(f"n_per_arm: expected positive numbers of participants per arm, got {list(n_per_arm)}")
    if not 0 < threshold < 1:
        raise SpecError(f"threshold: expected a probability between 0 and 1, got {threshold}")
    if sims < 1:
        raise SpecError(f"sims: expected a positive number of simulations, got {sims}")
    if effect_sd < 0:
        raise SpecError(f"effect_sd: expected a standard deviation >= 0, got {effect_sd}")
    if spec.table == "survey":
        if spec.outcome not in design["outcomes"]:
            raise SpecError(f"design {design['name']!r} does not simulate outcome {spec.outcome!r} of model {spec.name!r}")
        wave = design["waves"] - 1 if wave is None else wave
        if not 0 <= wave < design["waves"]:
            raise SpecError(f"wave: expected 0 to {design['waves'] - 1} for design {design['name']!r}, got {wave}")
    else:
        wave = None
    settings = {**POWER_SETTINGS, **{k: v for k, v in sampler_settings.items() if v is not None}}
    spec = spec.with_sampler(**settings)
    tasks = []
    for n in sizes:
        scaled = scale_design(design, n)
        for i in range(sims):
            # The same simulation index draws the same true effects at every size (common random numbers).
            truth = with_drawn_effects(scaled, spec, np.random.default_rng([seed, i]), effect_sd) if effect_sd else scaled
            tasks.append(Task(f"n{n:05d}-sim{i:05d}", power_fit, {
                "spec_json": spec.to_json(), "design": truth, "seed": seed * 100_003 + i,
                "settings": spec.sampler, "target": goal.text, "wave": wave}))
    out = Path(out)
    manifest = {"kind": "power", "spec": spec.to_dict(), "design": design, "target": goal.text, "wave": wave,
                "effect_sd": effect_sd, "seed": seed}
    batch = run_batch(tasks, out / "runs", scheduler=scheduler, n_workers=n_workers, manifest=manifest,
                      progress=progress, label=f"power {spec.name} on {design['name']}")
    trials = pd.DataFrame([{"n_per_arm": int(key[1:6]), "sim": int(key[-5:]), **res}
                           for key, res in batch.results().items()])
    table = power_table(trials, threshold)
    result = PowerResult(table, trials, {k: batch.records[k]["error"] for k in batch.failed})
    if not trials.empty:
        result.files = {"power": write_csv(table, out / "power.csv"), "trials": write_csv(trials, out / "trials.csv")}
        what = "assurance" if effect_sd else "power"
        title = (f"{what.capitalize()}: P({goal.text}) >= {threshold:g}, model {spec.name}, design {design['name']}"
                 + (f", effect sd {effect_sd:g}" if effect_sd else "")
                 + (f", wave {wave}" if wave is not None else ""))
        result.files.update(save_figure(plot_power(table, title, what), out, "power_curve"))
    return result


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion `successes / n` (95% for the default `z`)."""
    centre = (successes + z * z / 2) / (n + z * z)
    half = z * math.sqrt(successes * (n - successes) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


def power_table(trials: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per size: simulated trials, successes (P(target) >= threshold), rate and 95% Wilson interval."""
    rows = []
    for n, g in trials.groupby("n_per_arm"):
        successes = int((g["probability"] >= threshold).sum())
        lower, upper = wilson_interval(successes, len(g))
        rows.append({"n_per_arm": int(n), "sims": len(g), "successes": successes, "rate": successes / len(g),
                     "lower95": lower, "upper95": upper, "mean_probability": g["probability"].mean(),
                     "mean_effect": g["effect_mean"].mean(), "fits_with_divergences": int((g["divergences"] > 0).sum())})
    return pd.DataFrame(rows)


def plot_power(table: pd.DataFrame, title: str, what: str = "power"):
    """The success rate against participants per arm, with 95% Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    n = table["n_per_arm"].to_numpy()
    ax.errorbar(n, table["rate"], yerr=[table["rate"] - table["lower95"], table["upper95"] - table["rate"]],
                marker="o", capsize=4, color="C0", label=f"simulated {what} (95% interval)")
    ax.axhline(0.8, color="0.5", ls="--", lw=0.8, label="0.8")
    ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(int(v)) for v in n])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("participants per arm")
    ax.set_ylabel(f"{what} (share of simulated trials)")
    ax.set_title(title, fontsize=9)
    for x, y, sims in zip(n, table["rate"], table["sims"]):
        ax.annotate(f"{sims} trials", (x, y), textcoords="offset points", xytext=(6, -12), fontsize=7, color="0.3")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
