"""What simulation-based calibration, recovery and power share: runs of many fits to simulated trials.

A spec or design given by name is loaded (:func:`as_spec`, :func:`as_design`); each fit takes the
simulated table its spec models (:func:`model_frame`); the posterior is read as one array per
scalar parameter (:func:`parameter_draws`, labels such as ``arm[intensive]``) with the sampler's
diagnostics; the tables and figures a run leaves are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_trial.core.paths import write_atomic
from bayes_trial.modelling.spec import ModelSpec, load_spec
from bayes_trial.simulation.design import load_design, validate_design

__all__ = ["as_spec", "as_design", "interval_coverage", "model_frame", "parameter_draws", "population_parameters",
           "sampling_diagnostics", "save_figure", "true_values", "write_csv"]


def as_spec(spec: ModelSpec | str) -> ModelSpec:
    """`spec` itself, or the spec of that name or path."""
    return spec if isinstance(spec, ModelSpec) else load_spec(spec)


def as_design(design: dict | str | os.PathLike) -> dict:
    """`design` validated, or the design of that name or path loaded."""
    return validate_design(design) if isinstance(design, dict) else load_design(design)


def model_frame(spec: ModelSpec, sim) -> pd.DataFrame:
    """The table of a simulated trial that `spec` models: its survey or its register."""
    return sim.table(spec.table)


def element_labels(name: str, dims: tuple[str, ...], coords: dict[str, Any], shape: tuple[int, ...]):
    """(label, index) per scalar element of a variable: `arm[intensive]`, `arm:wave[intensive, 1]`, `sigma`."""
    if not shape:
        yield name, ()
        return
    for index in np.ndindex(*shape):
        levels = [str(list(coords[d])[i]) if d in coords else str(i) for d, i in zip(dims, index)]
        yield f"{name}[{', '.join(levels)}]", index


def parameter_draws(posterior, names: list[str]) -> dict[str, np.ndarray]:
    """Draws of every scalar element of the named posterior variables, chains concatenated in order."""
    out = {}
    for name in names:
        values = posterior[name]
        extra = tuple(d for d in values.dims if d not in ("chain", "draw"))
        array = values.transpose("chain", "draw", *extra).to_numpy()
        array = array.reshape(-1, *array.shape[2:])
        coords = {d: values[d].to_numpy() for d in extra}
        for label, index in element_labels(name, extra, coords, array.shape[1:]):
            out[label] = array[(slice(None), *index)]
    return out


def population_parameters(posterior) -> list[str]:
    """Posterior variables that are not per-level group effects (one value per town, consultant ...)."""
    return [n for n in posterior.data_vars if not any(d.endswith("__factor_dim") for d in posterior[n].dims)]


def sampling_diagnostics(idata, names: list[str]) -> dict[str, float]:
    """Divergences, the smallest bulk ESS and the largest R-hat over the named posterior variables."""
    import arviz as az

    posterior = idata.posterior[names]
    return {
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "min_ess_bulk": float(az.ess(posterior).to_array().min()),
        "max_rhat": float(az.rhat(posterior).to_array().max()) if posterior.sizes["chain"] > 1 else float("nan"),
    }


def true_values(spec: ModelSpec, truth: dict, labels: list[str]) -> dict[str, float]:
    """The simulator's true value of each posterior label it defines (keys as in `parameter_draws`).

    Bambi's `arm*wave` has `arm` at baseline and `arm:wave` as the change from it, while the
    design states the arm's total effect at each wave; thresholds are the design's cutpoints.
    """
    if spec.table == "register":
        o = truth["outflow"]
        simple = {"Intercept": o["log_odds"][truth["control_arm"]], "1|municipality_sigma": o["town_sd"],
                  "1|municipality:consultant_id_sigma": o["consultant_sd"]}
        by_arm = {"arm": o["log_odds_ratio"], "arm|municipality_sigma": {a: o["town_arm_sd"] for a in o["log_odds_ratio"]}}
    else:
        o = truth["outcomes"][spec.outcome]
        simple = {"Intercept": o.get("intercept"), "sigma": o.get("residual_sd"), "alpha": o.get("alpha"),
                  "1|participant_id_sigma": o["participant_sd"], "1|municipality:consultant_id_sigma": o["consultant_sd"],
                  "1|municipality_sigma": o.get("town_sd"), "1|municipality:wave_sigma": o.get("town_wave_sd")}
        effects = o["arm_effects"]
        by_arm = {"arm": {a: e["0"] for a, e in effects.items()},
                  "arm|municipality_sigma": {a: o.get("town_arm_sd") for a in effects},
                  "wave": o["wave_effects"],
                  "threshold": {str(k): c for k, c in enumerate(o.get("cutpoints", []))},
                  "arm:wave": {f"{a}, {w}": e[w] - e["0"] for a, e in effects.items() for w in e if w != "0"}}
    out = {}
    for label in labels:
        name, _, level = label.partition("[")
        value = simple.get(name) if not level else by_arm.get(name, {}).get(level.rstrip("]"))
        if value is not None:
            out[label] = float(value)
    return out


def save_figure(fig, out: Path, stem: str) -> dict[str, Path]:
    """`figures.save_figure`, keyed for a result's `files`: STEM_png, STEM_svg."""
    from bayes_trial.plots.figures import save_figure as save

    return dict(zip((f"{stem}_png", f"{stem}_svg"), save(fig, out, stem)))


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """`table` as CSV at `path` (six significant digits), written atomically; returns `path`."""
    return write_atomic(path, lambda handle: table.to_csv(handle, index=False, float_format="%.6g", lineterminator="\n"))


def interval_coverage(estimates: pd.DataFrame, level: float) -> dict[str, float]:
    """How often the intervals of `estimates` (columns truth, mean, low, high, covered) held the truth.

    sims, coverage, `coverage_se` (sqrt(p (1 - p) / n) at the observed coverage p, floored at the SE
    of a calibrated interval, p = `level`, so that 30 of 30 covered does not read as certainty),
    mean bias with its SE, and mean interval width.
    """
    n = len(estimates)
    covered = float(estimates["covered"].astype(bool).mean())
    error = estimates["mean"] - estimates["truth"]
    return {"sims": n, "coverage": covered, "coverage_se": float(np.sqrt(max(covered * (1 - covered), level * (1 - level)) / n)),
            "bias": float(error.mean()), "bias_se": float(error.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "mean_width": float((estimates["high"] - estimates["low"]).mean())}

