"""Simulate multi-site randomised social-assistance trials with known true parameters.

A *design* (TOML, see ``data/designs/README.md``; read and checked by
:mod:`bayes_trial.simulation.design`) fixes the towns, arms, sizes, consultants, response rates
and the true parameters of every outcome. :func:`simulate` draws one data set from it: a
long-format ``survey`` frame (one row per participant and responded wave), a ``register`` frame
(one row per randomised participant) and a ``truth`` dict with every true parameter, keyed as the
model-recovery checks expect.

The data-generating process mirrors the model formulas term by term:

* outflow  ``outflow_work ~ arm + (arm|municipality) + (1|municipality:consultant_id)``, logit;
* score    ``y ~ arm*wave + (1|participant_id) + (1|municipality:consultant_id)
             + (arm|municipality) + (1|municipality:wave)``, gaussian (rounded, clipped);
* ordinal  ``y ~ arm*wave + (1|participant_id) + (1|municipality:consultant_id)``, cumulative logit;
* count    ``y ~ arm*wave + (1|participant_id) + (1|municipality:consultant_id)``,
           negative binomial (PyMC ``NegativeBinomial(mu, alpha)``), log link.

``age`` and ``stock`` are covariates in the data only: they do not enter any linear predictor
(only the timing of outflow within the follow-up depends on ``stock``).

With an ``[outflow.hazard]`` table instead of ``outflow.probability``, outflow comes from a
discrete-time hazard with non-informative censoring at ``months_followed``: logit h(m) = logit of
the falling ``timing`` hazard (stock or inflow) + an arm effect that changes linearly from the
first to the last month of follow-up + town, town-by-arm and consultant effects. The truth then
holds each arm's cumulative outflow curve, averaged over all simulated persons (their own town,
consultant and stock), which is what a hazard model's g-computation estimates.

Survey non-response (``[response]``, see ``data/designs/README.md``): "mcar" (one rate), "mar" (the
default: arm x wave rates, optionally tilted by the person's observed score at the previous wave,
with an intercept per arm and wave solved so the expected rate is kept) or "mnar" (as "mar", and
non-responders' own scores at the waves they miss shifted by a per-arm delta: the pattern-mixture
form of response that depends on the unobserved current score). The full panel is simulated and
only responders' rows are kept; ``truth["attrition"]`` holds the realised non-response and the true
whole-arm contrasts.

All randomness comes from ``numpy.random.default_rng(seed)`` (and generators spawned from it),
so the same design and seed give identical frames and truth.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import write_atomic
from bayes_trial.simulation.design import validate_design

__all__ = ["Simulation", "simulate", "write_simulation", "read_simulation"]

_STR_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id")

NB_PARAMETERISATION = (
    "PyMC NegativeBinomial(mu, alpha): log(mu) = linear predictor, "
    "mean mu, variance mu + mu**2 / alpha"
)
ORDINAL_PARAMETERISATION = (
    "cumulative logit (PyMC OrderedLogistic / Bambi 'cumulative'): "
    "P(y <= lower + k) = logistic(cutpoints[k] - eta), eta = linear predictor without intercept"
)


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """One simulated data set: survey (long), register (one row per person), truth (JSON-able)."""

    survey: pd.DataFrame
    register: pd.DataFrame
    truth: dict

    def table(self, name: str) -> pd.DataFrame:
        """The table a spec names (its `table`): "survey", else the register."""
        return self.survey if name == "survey" else self.register


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _effect_matrices(o: dict, arms: list[str], waves: int) -> tuple[np.ndarray, np.ndarray]:
    """wave effect vector (W,) with 0 at baseline; arm-by-wave effect matrix (A, W), control row 0."""
    wave_eff = np.array([0.0] + list(o["wave_effects"]))
    arm_eff = np.zeros((len(arms), waves))
    for ai, a in enumerate(arms[1:], start=1):
        arm_eff[ai, 0] = o["baseline_arm_effects"][a]
        arm_eff[ai, 1:] = o["arm_effects"][a]
    return wave_eff, arm_eff


def _consultant_effect(effects: np.ndarray, consultant_index: np.ndarray) -> np.ndarray:
    """Each participant's consultant effect; index -1 (no consultant) gets 0."""
    return np.append(effects, 0.0)[consultant_index]


def _baseline_hazards(timing: dict, months: np.ndarray) -> np.ndarray:
    """Monthly hazards h0 * decay**(m-1), row 0 for inflow, row 1 for stock (index by ``stock``)."""
    return np.minimum(np.stack([timing[f"{group}_hazard"] * timing[f"{group}_decay"] ** (months - 1)
                                for group in ("inflow", "stock")]), 1.0)


def _months_given_outflow(timing: dict, outflow_work: np.ndarray, stock: np.ndarray, followed: np.ndarray,
                          rs: np.random.Generator) -> np.ndarray:
    """Month of outflow, given outflow within the person's follow-up: falling monthly hazard
    h(m) = h0 * decay**(m-1); long spells (stock) leave later / more evenly than new inflow."""
    months_to = np.full(outflow_work.size, np.nan)
    leavers = np.flatnonzero(outflow_work == 1)
    if leavers.size:
        m = np.arange(1, int(followed.max()) + 1)
        h = _baseline_hazards(timing, m)
        pmf = h * np.concatenate([np.ones((2, 1)), np.cumprod(1.0 - h, axis=1)[:, :-1]], axis=1)
        f = pmf[stock[leavers]]
        f = np.where(m[None, :] <= followed[leavers, None], f, 0.0)
        cdf = np.cumsum(f, axis=1)
        cdf /= cdf[:, -1:]
        u = rs.random(leavers.size)
        month = 1 + (cdf < u[:, None]).sum(axis=1)
        months_to[leavers] = np.minimum(month, followed[leavers]).astype(float)
    return months_to


def _hazard_outflow(hazard: dict, timing: dict, arms: list[str], arm_idx: np.ndarray, stock: np.ndarray,
                    followed: np.ndarray, person_effect: np.ndarray, town_arm_effect: np.ndarray,
                    rs: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Outflow month by month from a discrete-time hazard, censored at ``followed``.

    ``town_arm_effect`` is (persons, arms): each person's town-by-arm effect for every arm, so
    that the true curves can give every person each arm in turn.
    """
    months = np.arange(1, int(followed.max()) + 1)
    base = np.clip(_baseline_hazards(timing, months), 1e-12, 1 - 1e-12)
    base_logit = np.log(base / (1 - base))[stock]
    arm_eff = np.zeros((len(arms), months.size))
    for ai, arm in enumerate(arms[1:], start=1):
        first, last = hazard["arm_effects"][arm]
        arm_eff[ai] = first + (last - first) * (months - 1) / max(months.size - 1, 1)

    def hazards(arm_of_person: np.ndarray) -> np.ndarray:
        rows = np.arange(arm_of_person.size)
        return _expit(base_logit + arm_eff[arm_of_person] + person_effect[:, None]
                      + town_arm_effect[rows, arm_of_person][:, None])

    leave = (rs.random((arm_idx.size, months.size)) < hazards(arm_idx)) & (months[None, :] <= followed[:, None])
    outflow_work = leave.any(axis=1).astype(np.int64)
    months_to = np.where(outflow_work == 1, leave.argmax(axis=1) + 1.0, np.nan)
    curves = {arm: (1 - np.cumprod(1 - hazards(np.full(arm_idx.size, ai)), axis=1)).mean(axis=0).tolist()
              for ai, arm in enumerate(arms)}
    truth = {"arm_effects": {a: list(v) for a, v in hazard["arm_effects"].items()},
             "months": months.tolist(), "cumulative_incidence": curves}
    return outflow_work, months_to, truth


def simulate(design: dict, seed: int, *, layout_seed: int | None = None) -> Simulation:
    """Draw one data set from a design (as returned by :func:`load_design`, or a raw design dict).

    `layout_seed` fixes the layout (who is in which arm and with which consultant, covariates,
    follow-up) independently of `seed`, which then draws only effects and outcomes: trials of one
    layout fit the same compiled model. By default the layout comes from `seed` as well.
    """
    for name, value in (("seed", seed), ("layout_seed", seed if layout_seed is None else layout_seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise SpecError(f"{name}: expected a non-negative integer, got {value!r}")
    seed = int(seed)
    d = validate_design(design)
    arms = d["arms"]
    control = d["control_arm"]
    W = d["waves"]
    A = len(arms)
    T = len(d["towns"])
    arm_pos = {a: i for i, a in enumerate(arms)}
    outcomes = d["outcomes"]

    root = np.random.default_rng(seed)
    rs_struct, rs_outflow, rs_timing, rs_response, *rs_outcomes = root.spawn(4 + len(outcomes))
    if layout_seed is not None:
        rs_struct = np.random.default_rng(int(layout_seed)).spawn(4 + len(outcomes))[0]

    # ---- structure: participants, consultants, covariates ---------------------------------
    pid, town_idx, arm_idx, cons_idx, stock, age, followed = [], [], [], [], [], [], []
    cons_ids: list[str] = []
    n_randomised: dict[str, dict[str, int]] = {}
    n_consultants: dict[str, dict[str, int]] = {}
    cov, fu = d["covariates"], d["follow_up"]
    for ti, town in enumerate(d["towns"]):
        t_arms = list(town["participants"])
        n_t = sum(town["participants"].values())
        labels = np.repeat([arm_pos[a] for a in t_arms], [town["participants"][a] for a in t_arms])
        labels = rs_struct.permutation(labels)
        width = max(4, len(str(n_t)))
        pid.extend(f"{town['id_prefix']}-{i:0{width}d}" for i in range(1, n_t + 1))
        town_idx.append(np.full(n_t, ti))
        arm_idx.append(labels)

        # consultants: numbered within the town, arm by arm; the first `shared` in interleaved
        # order (arm1 #1, arm2 #1, ..., arm1 #2, ...) serve every arm of the town with consultants.
        home: dict[str, list[int]] = {}
        n_total_t = sum(town["consultants"].values())
        cwidth = max(2, len(str(n_total_t)))
        k_t = 0
        for a in t_arms:
            home[a] = []
            for _ in range(town["consultants"][a]):
                k_t += 1
                home[a].append(len(cons_ids))
                cons_ids.append(f"{town['id_prefix']}-c{k_t:0{cwidth}d}")
        with_cons = [a for a in t_arms if home[a]]
        interleaved = [home[a][j] for j in range(max((len(v) for v in home.values()), default=0))
                       for a in with_cons if j < len(home[a])]
        shared = set(interleaved[: town["shared_consultants"]])
        pool = {a: sorted(set(home[a]) | (shared if home[a] else set())) for a in t_arms}
        ci = np.full(n_t, -1)
        for a in t_arms:
            if pool[a]:
                members = labels == arm_pos[a]
                ci[members] = np.asarray(pool[a])[rs_struct.integers(len(pool[a]), size=int(members.sum()))]
        cons_idx.append(ci)
        n_randomised[town["name"]] = dict(town["participants"])
        n_consultants[town["name"]] = {a: len(pool[a]) for a in t_arms}

        st = rs_struct.random(n_t) < cov["stock_share"]
        ag = np.clip(np.rint(rs_struct.normal(cov["age_mean"], cov["age_sd"], n_t)),
                     cov["age_min"], cov["age_max"]).astype(np.int64)
        fm = np.where(st, fu["stock_months"],
                      rs_struct.integers(fu["inflow_months_min"], fu["inflow_months_max"] + 1, size=n_t))
        stock.append(st.astype(np.int64))
        age.append(ag)
        followed.append(fm.astype(np.int64))

    town_idx = np.concatenate(town_idx)
    arm_idx = np.concatenate(arm_idx).astype(np.int64)
    cons_idx = np.concatenate(cons_idx).astype(np.int64)
    stock = np.concatenate(stock)
    age = np.concatenate(age)
    followed = np.concatenate(followed)
    n = len(pid)
    C = len(cons_ids)
    town_names = np.array([t["name"] for t in d["towns"]], dtype=object)
    arm_names = np.array(arms, dtype=object)
    cons_names = np.array(cons_ids + [None], dtype=object)  # index -1 -> None
    consultant_col = cons_names[cons_idx]

    # ---- outflow to work ----------------------------------------------------------------
    of = d["outflow"]
    town_int = rs_outflow.normal(0.0, of["town_sd"], T)
    town_arm = rs_outflow.normal(0.0, of["town_arm_sd"], (T, A))
    town_arm[:, 0] = 0.0
    cons_eff = rs_outflow.normal(0.0, of["consultant_sd"], C)
    person_effect = town_int[town_idx] + _consultant_effect(cons_eff, cons_idx)
    hazard_truth = None
    if "hazard" in of:
        outflow_work, months_to, hazard_truth = _hazard_outflow(
            of["hazard"], of["timing"], arms, arm_idx, stock, followed, person_effect, town_arm[town_idx],
            rs_timing)
    else:
        log_odds = np.array([_logit(of["probability"][a]) for a in arms])
        eta = log_odds[arm_idx] + person_effect + town_arm[town_idx, arm_idx]
        outflow_work = (rs_outflow.random(n) < _expit(eta)).astype(np.int64)
        months_to = _months_given_outflow(of["timing"], outflow_work, stock, followed, rs_timing)

    # ---- survey outcomes (full panel, then keep responders) -------------------------------
    panel: dict[str, np.ndarray] = {}
    truth_outcomes: dict[str, dict] = {}
    for (oname, o), rs in zip(outcomes.items(), rs_outcomes):
        wave_eff, arm_eff = _effect_matrices(o, arms, W)
        cons = rs.normal(0.0, o["consultant_sd"], C)
        part = rs.normal(0.0, o["participant_sd"], n)
        lin = (wave_eff[None, :] + arm_eff[arm_idx]
               + _consultant_effect(cons, cons_idx)[:, None] + part[:, None])
        if o["scale"] == "score":
            t_int = rs.normal(0.0, o["town_sd"], T)
            t_arm = rs.normal(0.0, o["town_arm_sd"], (T, A))
            t_arm[:, 0] = 0.0
            t_wave = rs.normal(0.0, o["town_wave_sd"], (T, W))
            resid = rs.normal(0.0, o["residual_sd"], (n, W))
            y = (o["intercept"] + lin + t_int[town_idx][:, None] + t_arm[town_idx, arm_idx][:, None]
                 + t_wave[town_idx] + resid)
            y = np.clip(np.round(y, o["decimals"]), o["lower"], o["upper"]) + 0.0
        elif o["scale"] == "ordinal":
            latent = lin + rs.logistic(0.0, 1.0, (n, W))
            cuts = np.asarray(o["cutpoints"])
            y = (o["lower"] + (latent[:, :, None] > cuts[None, None, :]).sum(axis=2)).astype(np.int64)
        else:
            mu = np.exp(o["intercept"] + lin)
            alpha = o["alpha"]
            y = rs.negative_binomial(alpha, alpha / (alpha + mu)).astype(np.int64)
        panel[oname] = y
        truth_outcomes[oname] = _outcome_truth(o, arms, W)

    # ---- response (after the panel: MAR response may depend on the previous wave's score; the
    # outcome streams are separate generators, so this order changes no draw) ---------------------
    responded, intercept_shift = _draw_response(d["response"], arms, arm_idx, panel,
                                                rs_response.random((n, W)))
    complete_panel = dict(panel)
    for oname, shifts in d["response"]["delta"].items():
        complete_panel[oname] = _shift_nonresponders(panel[oname], outcomes[oname], shifts, arms, arm_idx, responded)
    panel = complete_panel

    # ---- frames ------------------------------------------------------------------------------
    pid_arr = np.array(pid, dtype=object)
    rows, waves_r = np.nonzero(responded)  # row-major: participant order, then wave
    survey = pd.DataFrame({
        "participant_id": pd.array(pid_arr[rows], dtype="str"),
        "municipality": pd.array(town_names[town_idx[rows]], dtype="str"),
        "arm": pd.array(arm_names[arm_idx[rows]], dtype="str"),
        "consultant_id": pd.array(consultant_col[rows], dtype="str"),
        "wave": waves_r.astype(np.int64),
    })
    for oname, y in panel.items():
        survey[oname] = y[rows, waves_r]
    survey["age"] = age[rows]
    survey["stock"] = stock[rows]

    register = pd.DataFrame({
        "participant_id": pd.array(pid_arr, dtype="str"),
        "municipality": pd.array(town_names[town_idx], dtype="str"),
        "arm": pd.array(arm_names[arm_idx], dtype="str"),
        "consultant_id": pd.array(consultant_col, dtype="str"),
        "outflow_work": outflow_work,
        "months_to_outflow": months_to,
        "months_followed": followed,
        "age": age,
        "stock": stock,
    })

    truth = {
        "design": d["name"],
        "seed": seed,
        "control_arm": control,
        "arms": list(arms),
        "municipalities": [t["name"] for t in d["towns"]],
        "n_randomised": n_randomised,
        "n_consultants": n_consultants,
        "outflow": {
            **({"hazard": hazard_truth} if hazard_truth else {
                "probability": {a: float(of["probability"][a]) for a in arms},
                "log_odds": {a: float(log_odds[i]) for i, a in enumerate(arms)},
                "log_odds_ratio": {a: float(log_odds[i] - log_odds[0]) for i, a in enumerate(arms) if i > 0},
            }),
            "town_sd": of["town_sd"],
            "town_arm_sd": of["town_arm_sd"],
            "consultant_sd": of["consultant_sd"],
        },
        "outcomes": truth_outcomes,
        "attrition": _attrition_truth(d, arm_idx, panel, responded, intercept_shift),
    }
    return Simulation(survey=survey, register=register, truth=truth)


def _draw_response(response: dict, arms: list[str], arm_idx: np.ndarray, panel: dict[str, np.ndarray],
                   uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Who answers which wave: ``uniforms`` (persons, waves) below each person's response probability.

    Without a previous-score slope the probability is the arm x wave rate (mcar: one rate). With
    a slope s, at wave w >= 1 the log odds are logit(rate) + shift[arm, w] + s * z, where z is the
    person's ``depends_on`` score at wave w-1 in SDs of that wave's scores over all persons, and 0
    for persons who did not answer wave w-1 (response depends only on what was observed: MAR).
    ``shift`` is solved per arm and wave so that the arm's mean probability is still its rate.
    Returns the (persons, waves) response indicator and ``shift`` (arms, waves).
    """
    rates = np.array([response[a] for a in arms])
    shift = np.zeros(rates.shape)
    slope = response["previous_score_slope"]
    if slope == 0.0:
        return uniforms < rates[arm_idx], shift
    score = panel[response["depends_on"]]
    responded = np.zeros(uniforms.shape, dtype=bool)
    responded[:, 0] = uniforms[:, 0] < rates[arm_idx, 0]
    for w in range(1, uniforms.shape[1]):
        previous = score[:, w - 1]
        z = (previous - previous.mean()) / (previous.std() or 1.0)
        tilt = slope * np.where(responded[:, w - 1], z, 0.0)
        probability = np.empty(arm_idx.size)
        for ai in range(len(arms)):
            members = arm_idx == ai
            probability[members], shift[ai, w] = _calibrated_probabilities(rates[ai, w], tilt[members])
        responded[:, w] = uniforms[:, w] < probability
    return responded, shift


def _calibrated_probabilities(rate: float, tilt: np.ndarray) -> tuple[np.ndarray, float]:
    """expit(logit(rate) + shift + tilt) with the shift (bisection) that makes their mean ``rate``."""
    if rate in (0.0, 1.0) or tilt.size == 0:
        return np.full(tilt.size, rate), 0.0
    base = _logit(rate)
    low, high = -40.0, 40.0
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if _expit(base + middle + tilt).mean() < rate else (low, middle)
    shift = (low + high) / 2
    return _expit(base + shift + tilt), shift


def _shift_nonresponders(y: np.ndarray, o: dict, shifts: dict[str, float], arms: list[str], arm_idx: np.ndarray,
                         responded: np.ndarray) -> np.ndarray:
    """MNAR as a pattern mixture: each non-responder's own score at a missed wave moves by the
    arm's delta, then is rounded and clipped to the outcome's bounds like every simulated score."""
    delta = np.array([shifts[a] for a in arms])[arm_idx][:, None]
    shifted = np.clip(np.round(y + delta, o["decimals"]), o["lower"], o["upper"]) + 0.0
    return np.where(responded, y, shifted)


def _cell_means(values: np.ndarray, arm_idx: np.ndarray, arms: list[str], keep: np.ndarray | None = None
                ) -> np.ndarray:
    """(arms, waves) means of ``values`` (persons, waves) over the arm's persons (where ``keep``); NaN if none."""
    keep = np.ones(values.shape, dtype=bool) if keep is None else keep
    out = np.full((len(arms), values.shape[1]), np.nan)
    for ai in range(len(arms)):
        members = keep & (arm_idx == ai)[:, None]
        count = members.sum(axis=0)
        out[ai] = np.where(count > 0, (values * members).sum(axis=0) / np.maximum(count, 1), np.nan)
    return out


def _by_arm_wave(matrix: np.ndarray, arms: list[str], skip_control: bool = False) -> dict:
    return {a: {str(w): (None if np.isnan(v) else float(v)) for w, v in enumerate(matrix[ai])}
            for ai, a in enumerate(arms) if ai > 0 or not skip_control}


ATTRITION_NOTE = (
    "nonresponse_share[arm][wave] = share of the arm's randomised persons without survey answers at that wave "
    "(unit non-response: the same for every outcome). For score outcomes: true_contrast = the design's arm effect "
    "at that wave + delta[arm] * nonresponse_share[arm] - delta[control] * nonresponse_share[control] (the "
    "arm-minus-control difference in mean score over all randomised persons that the design implies, given the "
    "realised non-response; exact up to rounding and clipping to the bounds); complete_panel_contrast = the same "
    "difference in this data set's full panel (every randomised person's score, non-responders shifted by delta), "
    "which adds the finite-sample draws of the random effects; complete_case_contrast = the difference among "
    "responders only (what the survey file shows). mnar shifts a non-responder's score at the waves they miss by "
    "delta[arm] (pattern-mixture form of response that depends on the unobserved current score); shifted scores "
    "are rounded and clipped to the outcome's bounds like all simulated scores."
)


def _attrition_truth(d: dict, arm_idx: np.ndarray, panel: dict[str, np.ndarray], responded: np.ndarray,
                     intercept_shift: np.ndarray) -> dict:
    """truth["attrition"]: the response settings and, per outcome, realised non-response and true contrasts."""
    arms, W, response = d["arms"], d["waves"], d["response"]
    share = 1.0 - _cell_means(responded.astype(float), arm_idx, arms)
    outcomes = {}
    for oname, o in d["outcomes"].items():
        entry: dict[str, Any] = {"nonresponse_share": _by_arm_wave(share, arms)}
        if o["scale"] == "score":
            _, arm_eff = _effect_matrices(o, arms, W)
            delta = np.array([response["delta"].get(oname, {}).get(a, 0.0) for a in arms])[:, None]
            true = arm_eff + delta * share - delta[0] * share[0]
            full = _cell_means(panel[oname], arm_idx, arms)
            observed = _cell_means(panel[oname], arm_idx, arms, keep=responded)
            entry.update({
                "true_contrast": _by_arm_wave(true, arms, skip_control=True),
                "complete_panel_contrast": _by_arm_wave(full - full[0], arms, skip_control=True),
                "complete_case_contrast": _by_arm_wave(observed - observed[0], arms, skip_control=True),
            })
        outcomes[oname] = entry
    return {
        "response_rate": {a: {str(w): float(response[a][w]) for w in range(W)} for a in arms},
        "mechanism": response["mechanism"],
        "rate": response["rate"],
        "previous_score_slope": response["previous_score_slope"],
        "depends_on": response["depends_on"],
        "response_intercept_shift": _by_arm_wave(intercept_shift, arms),
        "delta": {name: dict(shifts) for name, shifts in response["delta"].items()},
        "scores_clipped_to_bounds": True,
        "nonresponse_share": _by_arm_wave(share, arms),
        "outcomes": outcomes,
        "note": ATTRITION_NOTE,
    }


def _outcome_truth(o: dict, arms: list[str], waves: int) -> dict:
    t: dict[str, Any] = {"scale": o["scale"], "lower": o["lower"], "upper": o["upper"]}
    if o["scale"] in ("score", "count"):
        t["intercept"] = o["intercept"]
    if o["scale"] == "ordinal":
        t["cutpoints"] = list(o["cutpoints"])
        t["parameterisation"] = ORDINAL_PARAMETERISATION
    if o["scale"] == "count":
        t["alpha"] = o["alpha"]
        t["parameterisation"] = NB_PARAMETERISATION
    if o["scale"] == "score":
        t["decimals"] = o["decimals"]
    t["wave_effects"] = {str(w): float(o["wave_effects"][w - 1]) for w in range(1, waves)}
    t["arm_effects"] = {
        a: {"0": float(o["baseline_arm_effects"][a]),
            **{str(w): float(o["arm_effects"][a][w - 1]) for w in range(1, waves)}}
        for a in arms[1:]
    }
    if o["scale"] == "score":
        t["town_sd"] = o["town_sd"]
        t["town_arm_sd"] = o["town_arm_sd"]
        t["town_wave_sd"] = o["town_wave_sd"]
    t["consultant_sd"] = o["consultant_sd"]
    t["participant_sd"] = o["participant_sd"]
    if o["scale"] == "score":
        t["residual_sd"] = o["residual_sd"]
    return t


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_simulation(sim: Simulation, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write survey.csv, register.csv and truth.json into ``out_dir`` (created); atomic per file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"survey": out / "survey.csv", "register": out / "register.csv", "truth": out / "truth.json"}
    write_atomic(paths["survey"], lambda fh: sim.survey.to_csv(fh, index=False, lineterminator="\n"))
    write_atomic(paths["register"], lambda fh: sim.register.to_csv(fh, index=False, lineterminator="\n"))
    write_atomic(paths["truth"], lambda fh: fh.write(json.dumps(sim.truth, indent=2, ensure_ascii=False) + "\n"))
    return paths


def read_simulation(out_dir: str | os.PathLike) -> Simulation:
    """Read back what :func:`write_simulation` wrote, with the same column dtypes."""
    out = Path(out_dir)
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    str_dtypes = {c: "str" for c in _STR_COLUMNS}
    survey = pd.read_csv(out / "survey.csv", dtype=str_dtypes, keep_default_na=False, na_values=[""])
    register = pd.read_csv(out / "register.csv", dtype=str_dtypes, keep_default_na=False, na_values=[""])
    for name, o in truth.get("outcomes", {}).items():
        if name in survey and o.get("scale") in ("ordinal", "count"):
            survey[name] = survey[name].astype(np.int64)
        elif name in survey:
            survey[name] = survey[name].astype(np.float64)
    register["months_to_outflow"] = register["months_to_outflow"].astype(np.float64)
    return Simulation(survey=survey, register=register, truth=truth)
