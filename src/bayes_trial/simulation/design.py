"""Trial designs: the TOML files the simulator draws from (``data/designs/README.md``).

A design fixes the towns, arms, sizes, consultants, response rates and the true parameters of
every outcome. :func:`validate_design` checks one (raw TOML content or an already normalised
design) and fills the defaults; :func:`load_design` reads a file or a bundled design by name.
Every problem raises :class:`bayes_trial.errors.SpecError` naming the file, the key and what was
expected.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import DESIGNS_DIR, resolve_bundled
from bayes_trial.families import registry

__all__ = ["load_design", "validate_design", "merge_designs", "bundled_designs", "MECHANISMS", "SURVEY_ID_COLUMNS",
           "REGISTER_COLUMNS"]

#: Survey-outcome scales the simulator draws: those of the registered families.
SCALES = tuple(family.simulator_scale for family in registry.families() if family.simulator_scale)
SURVEY_ID_COLUMNS = ("participant_id", "municipality", "arm", "consultant_id", "wave")
COVARIATE_COLUMNS = ("age", "stock")
REGISTER_COLUMNS = (
    "participant_id",
    "municipality",
    "arm",
    "consultant_id",
    "outflow_work",
    "months_to_outflow",
    "months_followed",
    "age",
    "stock",
)
_RESERVED = set(SURVEY_ID_COLUMNS) | set(COVARIATE_COLUMNS) | set(REGISTER_COLUMNS)
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

_DEFAULT_COVARIATES = {"stock_share": 0.5, "age_mean": 41.0, "age_sd": 11.0, "age_min": 18, "age_max": 66}
_DEFAULT_FOLLOW_UP = {"stock_months": 24, "inflow_months_min": 15, "inflow_months_max": 24}
_DEFAULT_TIMING = {"stock_hazard": 0.02, "stock_decay": 0.99, "inflow_hazard": 0.05, "inflow_decay": 0.96}
_NORMALISED_ORDER = ("name", "description", "control_arm", "arms", "waves", "covariates", "follow_up", "towns",
                     "response", "outflow", "outcomes")

#: Non-response mechanisms of ``[response] mechanism`` (see data/designs/README.md, "Non-response").
MECHANISMS = ("mcar", "mar", "mnar")
#: Keys of ``[response]`` besides the per-arm rates.
RESPONSE_SETTINGS = ("mechanism", "rate", "previous_score_slope", "depends_on", "delta")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


class _Checker:
    """Validation helpers that raise one-line SpecErrors naming the source and the key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, expected: str, value: Any = None, *, show_value: bool = True) -> None:
        got = f", got {value!r}" if show_value else ""
        raise SpecError(f"{self.source}: key '{key}': expected {expected}{got}")

    def table(self, value: Any, key: str, allowed: set[str] | list[str], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(key or "<top level>", "a table", value)
        for k in value:
            if k not in allowed:
                where = f"{key}.{k}" if key else str(k)
                raise SpecError(
                    f"{self.source}: key '{where}': unknown key (allowed here: {', '.join(sorted(allowed))})"
                )
        for k in required:
            if k not in value:
                where = f"{key}.{k}" if key else k
                raise SpecError(f"{self.source}: key '{where}': missing (required)")
        return value

    def string(self, value: Any, key: str, *, identifier: bool = False) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "a non-empty string", value)
        if identifier and not _NAME_RE.match(value):
            self.fail(key, "a name of letters, digits and '_' starting with a letter", value)
        return value

    def number(self, value: Any, key: str, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False, what: str | None = None) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value < hi if hi_open else value <= hi
        if not ok:
            if what is None:
                parts = []
                if lo is not None:
                    parts.append(f"{'>' if lo_open else '>='} {lo}")
                if hi is not None:
                    parts.append(f"{'<' if hi_open else '<='} {hi}")
                what = "a number" + (" " + " and ".join(parts) if parts else "")
            self.fail(key, what, value)
        return float(value)

    def integer(self, value: Any, key: str, *, lo: int | None = None, what: str | None = None) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and lo is not None:
            ok = value >= lo
        if not ok:
            if what is None:
                what = "an integer" if lo is None else (
                    "a positive integer" if lo == 1 else f"an integer >= {lo}")
            self.fail(key, what, value)
        return int(value)

    def rate(self, value: Any, key: str) -> float:
        return self.number(value, key, lo=0.0, hi=1.0, what="a rate between 0 and 1")

    def sd(self, value: Any, key: str) -> float:
        return self.number(value, key, lo=0.0, what="a standard deviation >= 0")

    def num_list(self, value: Any, key: str, length: int, *, item=None,
                 per: str = "one per wave after baseline") -> list[float]:
        if not isinstance(value, list) or len(value) != length:
            self.fail(key, f"a list of {length} number(s) ({per})", value)
        item = item or (lambda v, k: self.number(v, k))
        return [item(v, f"{key}[{i}]") for i, v in enumerate(value)]


def validate_design(design: dict, source: str | None = None, default_name: str | None = None) -> dict:
    """Check a design dict (raw TOML content or an already normalised design) and fill defaults.

    Returns a new, normalised dict with every key present (same layout as the TOML file), the
    control arm first in ``arms``. Idempotent: validating a normalised design returns an equal dict.
    Raises :class:`SpecError` naming ``source``, the offending key and what was expected.
    """
    if source is None:
        name_hint = design.get("name") if isinstance(design, dict) else None
        source = f"design {name_hint!r}" if name_hint else "design"
    c = _Checker(source)
    top_keys = {"name", "description", "control_arm", "arms", "waves", "covariates", "follow_up",
                "towns", "response", "outflow", "outcomes"}
    c.table(design, "", top_keys, required=("arms", "towns", "outflow"))
    out: dict[str, Any] = {}

    if "name" in design:
        out["name"] = c.string(design["name"], "name")
    elif default_name:
        out["name"] = default_name
    else:
        raise SpecError(f"{source}: key 'name': missing (required)")
    desc = design.get("description", "")
    if not isinstance(desc, str):
        c.fail("description", "a string", desc)
    out["description"] = desc

    control = c.string(design.get("control_arm", "control"), "control_arm", identifier=True)
    arms_raw = design["arms"]
    if not isinstance(arms_raw, list) or not arms_raw:
        c.fail("arms", "a non-empty list of arm names", arms_raw)
    arms = [c.string(a, f"arms[{i}]", identifier=True) for i, a in enumerate(arms_raw)]
    if len(set(arms)) != len(arms):
        c.fail("arms", "arm names without duplicates", arms_raw)
    if control not in arms:
        c.fail("control_arm", f"one of the arms {arms}", control)
    arms = [control] + [a for a in arms if a != control]
    treat = arms[1:]
    out["control_arm"] = control
    out["arms"] = arms

    waves = c.integer(design.get("waves", 3), "waves", lo=1, what="a number of survey waves >= 1")
    out["waves"] = waves

    # covariates -------------------------------------------------------------------------
    cov = dict(_DEFAULT_COVARIATES)
    cov.update(c.table(design.get("covariates", {}), "covariates", set(_DEFAULT_COVARIATES)))
    cov["stock_share"] = c.rate(cov["stock_share"], "covariates.stock_share")
    cov["age_mean"] = c.number(cov["age_mean"], "covariates.age_mean", lo=0)
    cov["age_sd"] = c.sd(cov["age_sd"], "covariates.age_sd")
    cov["age_min"] = c.integer(cov["age_min"], "covariates.age_min", lo=0)
    cov["age_max"] = c.integer(cov["age_max"], "covariates.age_max", lo=cov["age_min"],
                               what=f"an integer >= covariates.age_min ({cov['age_min']})")
    out["covariates"] = cov

    # follow-up --------------------------------------------------------------------------
    fu = dict(_DEFAULT_FOLLOW_UP)
    fu.update(c.table(design.get("follow_up", {}), "follow_up", set(_DEFAULT_FOLLOW_UP)))
    fu["stock_months"] = c.integer(fu["stock_months"], "follow_up.stock_months", lo=1)
    fu["inflow_months_min"] = c.integer(fu["inflow_months_min"], "follow_up.inflow_months_min", lo=1)
    fu["inflow_months_max"] = c.integer(
        fu["inflow_months_max"], "follow_up.inflow_months_max", lo=fu["inflow_months_min"],
        what=f"an integer >= follow_up.inflow_months_min ({fu['inflow_months_min']})")
    out["follow_up"] = fu

    # towns ------------------------------------------------------------------------------
    towns_raw = design["towns"]
    if not isinstance(towns_raw, list) or not towns_raw:
        c.fail("towns", "a non-empty list of town tables ([[towns]])", towns_raw)
    towns = []
    seen_names: set[str] = set()
    seen_prefix: set[str] = set()
    for ti, town in enumerate(towns_raw):
        key = f"towns[{ti}]"
        c.table(town, key, {"name", "id_prefix", "participants", "consultants", "shared_consultants"},
                required=("name", "participants", "consultants"))
        tname = c.string(town["name"], f"{key}.name")
        if tname in seen_names:
            c.fail(f"{key}.name", "a town name not used before", tname)
        seen_names.add(tname)
        prefix = town.get("id_prefix") or re.sub(r"[^A-Za-z0-9]", "", tname)
        prefix = c.string(prefix, f"{key}.id_prefix")
        if not re.match(r"^[A-Za-z0-9]+$", prefix):
            c.fail(f"{key}.id_prefix", "letters and digits only", prefix)
        if prefix in seen_prefix:
            c.fail(f"{key}.id_prefix", "an id prefix not used by another town (set id_prefix)", prefix)
        seen_prefix.add(prefix)

        parts_raw = town["participants"]
        c.table(parts_raw, f"{key}.participants", set(parts_raw) if isinstance(parts_raw, dict) else set())
        if not parts_raw:
            c.fail(f"{key}.participants", "a table with at least one arm", parts_raw)
        for a in parts_raw:
            if a not in arms:
                c.fail(f"{key}.participants.{a}", f"an arm listed in 'arms' {arms}", a)
        participants = {a: c.integer(parts_raw[a], f"{key}.participants.{a}", lo=1,
                                     what="a positive number of participants (omit the arm to leave it out)")
                        for a in arms if a in parts_raw}

        cons_raw = town["consultants"]
        c.table(cons_raw, f"{key}.consultants", set(cons_raw) if isinstance(cons_raw, dict) else set())
        for a in cons_raw:
            if a not in participants:
                c.fail(f"{key}.consultants.{a}",
                       f"an arm that has participants in this town {list(participants)}", a)
        for a in participants:
            if a not in cons_raw:
                raise SpecError(f"{source}: key '{key}.consultants.{a}': missing (give the number of "
                                f"consultants for every arm of the town, 0 for no caseworker contact)")
        consultants = {a: c.integer(cons_raw[a], f"{key}.consultants.{a}", lo=0,
                                    what="a number of consultants >= 0")
                       for a in participants}
        shared = c.integer(town.get("shared_consultants", 0), f"{key}.shared_consultants", lo=0,
                           what="a number of shared consultants >= 0")
        with_cons = [a for a in participants if consultants[a] > 0]
        if shared > 0:
            if len(with_cons) < 2:
                c.fail(f"{key}.shared_consultants",
                       "0 unless at least two arms of the town have consultants", shared)
            if shared > sum(consultants.values()):
                c.fail(f"{key}.shared_consultants",
                       f"at most the town's number of consultants ({sum(consultants.values())})", shared)
        towns.append({"name": tname, "id_prefix": prefix, "participants": participants,
                      "consultants": consultants, "shared_consultants": shared})
    out["towns"] = towns
    used_arms = {a for t in towns for a in t["participants"]}
    if control not in used_arms:
        c.fail("towns", f"at least one town with the control arm '{control}'", None, show_value=False)

    # outflow ----------------------------------------------------------------------------
    of_raw = c.table(design["outflow"], "outflow",
                     {"probability", "town_sd", "town_arm_sd", "consultant_sd", "timing", "hazard"},
                     required=() if "hazard" in design["outflow"] else ("probability",))
    outflow = {
        "town_sd": c.sd(of_raw.get("town_sd", 0.0), "outflow.town_sd"),
        "town_arm_sd": c.sd(of_raw.get("town_arm_sd", 0.0), "outflow.town_arm_sd"),
        "consultant_sd": c.sd(of_raw.get("consultant_sd", 0.0), "outflow.consultant_sd"),
    }
    if "hazard" in of_raw:
        if "probability" in of_raw:
            c.fail("outflow.probability", "no probability with outflow.hazard (the hazard sets outflow)",
                   None, show_value=False)
        hz = c.table(of_raw["hazard"], "outflow.hazard", {"arm_effects"}, required=("arm_effects",))
        effects_raw = c.table(hz["arm_effects"], "outflow.hazard.arm_effects", set(treat))
        outflow["hazard"] = {"arm_effects": {
            a: c.num_list(effects_raw.get(a, [0.0, 0.0]), f"outflow.hazard.arm_effects.{a}", 2,
                          per="effects on the logit monthly hazard in the first and last month of follow-up")
            for a in treat}}
    else:
        prob_raw = c.table(of_raw["probability"], "outflow.probability", set(arms), required=tuple(arms))
        outflow["probability"] = {
            a: c.number(prob_raw[a], f"outflow.probability.{a}", lo=0, hi=1, lo_open=True, hi_open=True,
                        what="a probability strictly between 0 and 1")
            for a in arms}
    timing = dict(_DEFAULT_TIMING)
    timing.update(c.table(of_raw.get("timing", {}), "outflow.timing", set(_DEFAULT_TIMING)))
    for k in ("stock_hazard", "inflow_hazard"):
        timing[k] = c.number(timing[k], f"outflow.timing.{k}", lo=0, hi=1, lo_open=True,
                             what="a monthly hazard in (0, 1]")
    for k in ("stock_decay", "inflow_decay"):
        timing[k] = c.number(timing[k], f"outflow.timing.{k}", lo=0, hi=1, lo_open=True,
                             what="a monthly decay factor in (0, 1] (falling hazard)")
    outflow["timing"] = timing
    out["outflow"] = outflow

    # outcomes ---------------------------------------------------------------------------
    outcomes_raw = design.get("outcomes", {})
    c.table(outcomes_raw, "outcomes", set(outcomes_raw) if isinstance(outcomes_raw, dict) else set())
    outcomes = {}
    for oname, spec in outcomes_raw.items():
        key = f"outcomes.{oname}"
        if not _NAME_RE.match(oname) or oname in _RESERVED:
            c.fail(key, "an outcome name of letters, digits and '_' that is not a data column name", oname)
        outcomes[oname] = _validate_outcome(c, spec, key, control, treat, waves)
    out["outcomes"] = outcomes
    # after the outcomes: the response settings may name a score outcome
    out["response"] = _validate_response(c, design.get("response"), arms, waves, outcomes)
    return {key: out[key] for key in _NORMALISED_ORDER}


def _validate_response(c: _Checker, raw: Any, arms: list[str], waves: int, outcomes: dict) -> dict:
    """Normalise ``[response]``: per-arm rates (one per wave) and the non-response mechanism.

    The result holds every arm's rates plus every key of :data:`RESPONSE_SETTINGS`: ``rate`` is
    None except under "mcar" (where every arm's rates are set to it); ``depends_on`` is None
    without a previous-score slope; ``delta`` is ``{score outcome: {arm: shift}}`` (empty unless
    "mnar"), written either that way or as ``{arm: shift}`` for every score outcome.
    """
    clash = sorted(set(arms) & set(RESPONSE_SETTINGS))
    if raw is not None and clash:
        c.fail("response", f"arm names other than the response settings {', '.join(RESPONSE_SETTINGS)}", clash)
    raw = {} if raw is None else c.table(raw, "response", set(arms) | set(RESPONSE_SETTINGS))
    # a normalised design spells out the settings it does not use (None, no delta): read those as absent
    raw = {k: v for k, v in raw.items() if not (k in RESPONSE_SETTINGS and (v is None or v == {}))}
    mechanism = raw.get("mechanism", "mar")
    if mechanism not in MECHANISMS:
        c.fail("response.mechanism", f"one of {', '.join(MECHANISMS)}", mechanism)
    missing = [a for a in arms if a not in raw]
    if 0 < len(missing) < len(arms):
        raise SpecError(f"{c.source}: key 'response.{missing[0]}': missing (give rates for every arm or for none)")
    rates = {a: (c.num_list(raw[a], f"response.{a}", waves, item=c.rate, per="one rate per wave, baseline first")
                 if a in raw else [1.0] * waves) for a in arms}

    for key, allowed in (("rate", ("mcar",)), ("previous_score_slope", ("mar", "mnar")),
                         ("depends_on", ("mar", "mnar")), ("delta", ("mnar",))):
        if key in raw and mechanism not in allowed and raw[key] != 0:
            c.fail(f"response.{key}", f"no {key} with mechanism = {mechanism!r} (only with "
                   f"{' or '.join(repr(m) for m in allowed)})", None, show_value=False)
    rate = None
    if mechanism == "mcar":
        default = sum(sum(v) for v in rates.values()) / (len(arms) * waves)
        rate = c.rate(raw.get("rate", default), "response.rate")
        rates = {a: [rate] * waves for a in arms}

    scores = [name for name, o in outcomes.items() if o["scale"] == "score"]
    slope = c.number(raw.get("previous_score_slope", 0.0), "response.previous_score_slope")
    depends_on = None
    if slope != 0.0 or "depends_on" in raw:
        if not scores:
            c.fail("response.previous_score_slope", "a design with a score outcome to depend on", None,
                   show_value=False)
        depends_on = raw.get("depends_on", scores[0])
        if depends_on not in scores:
            c.fail("response.depends_on", f"a score outcome of the design ({', '.join(scores)})", depends_on)

    delta: dict[str, dict[str, float]] = {}
    if "delta" in raw:
        delta_raw = c.table(raw["delta"], "response.delta", set(raw["delta"]) if isinstance(raw["delta"], dict)
                            else set())
        per_outcome = delta_raw and all(isinstance(v, dict) for v in delta_raw.values())
        for name, per_arm in (delta_raw.items() if per_outcome else [(None, delta_raw)]):
            key = "response.delta" if name is None else f"response.delta.{name}"
            if name is not None and name not in scores:
                c.fail(key, f"a score outcome of the design ({', '.join(scores) or 'none'}): delta shifts scores",
                       name)
            if name is None and not scores:
                c.fail(key, "a design with a score outcome (delta shifts scores)", None, show_value=False)
            c.table(per_arm, key, set(arms))
            shifts = {a: c.number(per_arm.get(a, 0.0), f"{key}.{a}") for a in arms}
            for target in ([name] if name is not None else scores):
                delta[target] = shifts
    return {**rates, "mechanism": mechanism, "rate": rate, "previous_score_slope": slope,
            "depends_on": depends_on, "delta": delta}


def _validate_outcome(c: _Checker, spec: Any, key: str, control: str, treat: list[str], waves: int) -> dict:
    if not isinstance(spec, dict):
        c.fail(key, "a table", spec)
    scale = spec.get("scale")
    if scale not in SCALES:
        if "scale" not in spec:
            raise SpecError(f"{c.source}: key '{key}.scale': missing (required: one of {', '.join(SCALES)})")
        c.fail(f"{key}.scale", f"one of {', '.join(SCALES)}", scale)
    common = {"scale", "wave_effects", "arm_effects", "baseline_arm_effects", "consultant_sd",
              "participant_sd", "lower", "upper"}
    if scale == "score":
        allowed = common | {"intercept", "town_sd", "town_arm_sd", "town_wave_sd", "residual_sd", "decimals"}
        required = ("intercept", "residual_sd")
    elif scale == "ordinal":
        allowed = common | {"cutpoints"}
        required = ("cutpoints",)
    else:
        allowed = common | {"intercept", "alpha"}
        required = ("intercept", "alpha")
    c.table(spec, key, allowed, required=required)
    n_eff = waves - 1
    o: dict[str, Any] = {"scale": scale}

    if scale == "score":
        o["lower"] = c.number(spec.get("lower", 0.0), f"{key}.lower")
        o["upper"] = c.number(spec.get("upper", 10.0), f"{key}.upper", lo=o["lower"], lo_open=True,
                              what=f"a number > {key}.lower ({o['lower']})")
        o["decimals"] = c.integer(spec.get("decimals", 1), f"{key}.decimals", lo=0)
        o["intercept"] = c.number(spec["intercept"], f"{key}.intercept")
    elif scale == "ordinal":
        cuts = spec["cutpoints"]
        if not isinstance(cuts, list) or not cuts:
            c.fail(f"{key}.cutpoints", "a non-empty list of increasing numbers", cuts)
        cuts = [c.number(v, f"{key}.cutpoints[{i}]") for i, v in enumerate(cuts)]
        if any(b <= a for a, b in zip(cuts, cuts[1:])):
            c.fail(f"{key}.cutpoints", "strictly increasing numbers", cuts)
        lower = c.integer(spec.get("lower", 1), f"{key}.lower")
        upper = spec.get("upper", lower + len(cuts))
        if upper != lower + len(cuts) or isinstance(upper, bool):
            c.fail(f"{key}.upper", f"lower + number of cutpoints = {lower + len(cuts)} (or leave it out)", upper)
        o["lower"], o["upper"] = lower, int(upper)
        o["cutpoints"] = cuts
    else:
        if spec.get("lower", 0) != 0 or isinstance(spec.get("lower", 0), bool):
            c.fail(f"{key}.lower", "0 for a count (or leave it out)", spec.get("lower"))
        if spec.get("upper") is not None:
            c.fail(f"{key}.upper", "no upper bound for a count (leave it out)", spec.get("upper"))
        o["lower"], o["upper"] = 0, None
        o["intercept"] = c.number(spec["intercept"], f"{key}.intercept")
        o["alpha"] = c.number(spec["alpha"], f"{key}.alpha", lo=0, lo_open=True,
                              what="a dispersion alpha > 0")

    o["wave_effects"] = c.num_list(spec.get("wave_effects", [0.0] * n_eff), f"{key}.wave_effects", n_eff)
    for sub in ("arm_effects", "baseline_arm_effects"):
        if isinstance(spec.get(sub), dict) and control in spec[sub]:
            c.fail(f"{key}.{sub}.{control}",
                   f"no entry for the control arm (effects are differences from '{control}')", None,
                   show_value=False)
    ae_raw = spec.get("arm_effects", {})
    c.table(ae_raw, f"{key}.arm_effects", set(treat))
    o["arm_effects"] = {a: c.num_list(ae_raw.get(a, [0.0] * n_eff), f"{key}.arm_effects.{a}", n_eff)
                        for a in treat}
    be_raw = spec.get("baseline_arm_effects", {})
    c.table(be_raw, f"{key}.baseline_arm_effects", set(treat))
    o["baseline_arm_effects"] = {a: c.number(be_raw.get(a, 0.0), f"{key}.baseline_arm_effects.{a}")
                                 for a in treat}
    if scale == "score":
        for k in ("town_sd", "town_arm_sd", "town_wave_sd"):
            o[k] = c.sd(spec.get(k, 0.0), f"{key}.{k}")
    o["consultant_sd"] = c.sd(spec.get("consultant_sd", 0.0), f"{key}.consultant_sd")
    o["participant_sd"] = c.sd(spec.get("participant_sd", 0.0), f"{key}.participant_sd")
    if scale == "score":
        o["residual_sd"] = c.sd(spec["residual_sd"], f"{key}.residual_sd")
    return o


def bundled_designs() -> list[str]:
    """Names of the designs shipped in ``data/designs/``."""
    return sorted(p.stem for p in DESIGNS_DIR.glob("*.toml"))


def load_design(name_or_path: str | os.PathLike) -> dict:
    """Read, validate and normalise a design: a path to a TOML file or a bundled name ("oss").

    A design may start from another one with ``extends = "oss"`` (a bundled name, or a path
    relative to the extending file): its tables are merged into the base design's key by key
    (:func:`merge_designs`), and it keeps its own name (its ``name`` or its file name).
    """
    path = resolve_bundled(name_or_path, DESIGNS_DIR)
    if not path.is_file():
        raise SpecError(
            f"design {str(name_or_path)!r}: no such file and no bundled design of that name "
            f"(bundled: {', '.join(bundled_designs()) or 'none'})")
    return validate_design(_read_extended(path, ()), source=str(path), default_name=path.stem)


def with_arms(design: dict, arms: int) -> dict:
    """`design` with `arms` arms: its control arm and treatment arms `arm1`, `arm2`, ..., each a copy of its last one.

    Every per-arm setting (participants and consultants per town, outflow, response rates, effects) of a
    new treatment arm is that of the design's last treatment arm; the control arm keeps its own. Meant
    for simulated trials of any number of arms from one design (as for compiling a spec for each).
    """
    design = validate_design(design)
    if arms < 2:
        raise SpecError(f"design {design['name']!r}: {arms} arms asked for; a trial has at least 2")
    control, *treatments = design["arms"]
    if not treatments:
        raise SpecError(f"design {design['name']!r}: no treatment arm to copy")
    copied = {control: control, **{f"arm{i}": treatments[-1] for i in range(1, arms)}}

    def rearm(value):
        if isinstance(value, list):
            return [rearm(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {key: rearm(v) for key, v in value.items() if key not in design["arms"]}
        if len(out) < len(value):  # a per-arm table
            out.update({new: rearm(value[old]) for new, old in copied.items() if old in value})
        return out

    return validate_design({**rearm({k: v for k, v in design.items() if k != "arms"}), "arms": list(copied),
                            "name": f"{design['name']}_{arms}_arms"})


def merge_designs(base: dict, variant: dict) -> dict:
    """Deep merge of raw design tables: a table of ``variant`` is merged into the same table of
    ``base`` key by key; any other value (number, string, list, list of tables such as
    ``[[towns]]``) replaces the base's. Neither argument is changed."""
    merged = dict(base)
    for key, value in variant.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_designs(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise SpecError(f"{path}: not a valid TOML file: {msg}") from None


def _read_extended(path: Path, chain: tuple[Path, ...]) -> dict:
    """The raw content of a design file with its ``extends`` chain merged in (base first)."""
    raw = _read_toml(path)
    if "extends" not in raw:
        return raw
    base_name = raw.pop("extends")
    if not isinstance(base_name, str) or not base_name.strip():
        raise SpecError(f"{path}: key 'extends': expected the name or path of another design, got {base_name!r}")
    beside = path.parent / base_name
    beside = beside if beside.suffix else beside.with_suffix(".toml")
    base_path = beside if beside.is_file() else resolve_bundled(base_name, DESIGNS_DIR)
    if not base_path.is_file():
        raise SpecError(f"{path}: key 'extends': no design file {base_name!r} beside it and no bundled design of "
                        f"that name (bundled: {', '.join(bundled_designs()) or 'none'})")
    here = (*chain, path.resolve())
    if base_path.resolve() in here:
        raise SpecError(f"{path}: key 'extends': {base_name!r} extends this design again (a cycle)")
    base = _read_extended(base_path, here)
    base.pop("name", None)  # a variant is a design of its own
    return merge_designs(base, raw)
