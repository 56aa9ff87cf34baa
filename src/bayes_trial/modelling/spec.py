"""Model specifications: the TOML files in `models/` that a methodologist edits.

A spec names the outcome, the data table it lives in, a Bambi formula, the family, priors per
term and sampler settings. Specs round-trip through plain dicts so that a stored fit carries its
full spec and can be refitted without the original file.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import MODELS_DIR, resolve_bundled
from bayes_trial.data.contract import BASELINE_SCORE, CONTRACT_COLUMNS, NO_BASELINE, RESPONDED
from bayes_trial.families import registry

TABLES = ("survey", "register")
SAMPLERS = ("nutpie", "pymc")

# Positional parameter names, in the order PyMC documents them, for the prior shorthand
# "Normal(0, 0.5)". Scale-like parameters must be positive.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "Normal": ("mu", "sigma"),
    "StudentT": ("nu", "mu", "sigma"),
    "Cauchy": ("alpha", "beta"),
    "Logistic": ("mu", "s"),
    "HalfNormal": ("sigma",),
    "HalfStudentT": ("nu", "sigma"),
    "HalfCauchy": ("beta",),
    "Exponential": ("lam",),
    "Gamma": ("alpha", "beta"),
    "InverseGamma": ("alpha", "beta"),
    "LogNormal": ("mu", "sigma"),
    "Uniform": ("lower", "upper"),
    "Beta": ("alpha", "beta"),
}
POSITIVE_PARAMS = {"sigma", "beta", "lam", "alpha", "nu", "s"}
# Distributions with support on the positive half-line: the only ones allowed for standard deviations.
POSITIVE_DISTRIBUTIONS = {
    "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma", "InverseGamma", "LogNormal",
}
# Parameters that are standard deviations or dispersions: every group term `expr|factor` and these.
POSITIVE_TERMS = {"sigma", "alpha"}
# A prior written as `auto` (or left unset) is scaled to the outcome when the data are known
# (`autoprior.resolve`); it is kept as this placeholder in a spec.
AUTO = "auto"
# Group effects sampled as themselves or as SD x standard normal offset (`modelling.parametrisation`).
CENTRED, NONCENTRED = "centred", "noncentred"
PARAMETRISATIONS = (AUTO, CENTRED, NONCENTRED)
SAMPLER_DEFAULTS = {"sampler": "nutpie", "draws": 1000, "tune": 1000, "chains": 4, "target_accept": 0.9, "seed": 2024}


@dataclass(frozen=True)
class Prior:
    """One prior: a PyMC distribution name and its parameters."""

    dist: str
    params: dict[str, float]

    def __str__(self) -> str:
        if self.dist == AUTO:
            return AUTO
        args = ", ".join(f"{k}={_number_text(v)}" for k, v in self.params.items())
        return f"{self.dist}({args})"


def _number_text(value: float) -> str:
    """The shortest text that reads back as the same number: a stored spec must refit identically."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


@dataclass(frozen=True)
class ModelSpec:
    """A model specification (`models/*.toml`): outcome, table, formula, family, priors and sampler settings."""
    name: str
    outcome: str
    table: str
    formula: str
    family: str
    control_arm: str = "control"
    description: str = ""
    bounds: tuple[float | None, float | None] = (None, None)
    priors: dict[str, Prior] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=lambda: dict(SAMPLER_DEFAULTS))
    aggregate: bool = True
    unit: str = ""
    #: Effect size (outcome unit) that the prior should make unlikely; None: the family's default (`priors`).
    implausible_effect: float | None = None
    #: Response model only: the survey score whose wave-0 value enters later waves as `baseline_score`
    #: (with `no_baseline` for persons without one); "" for none.
    baseline: str = ""
    #: "noncentred" (the default), "centred" or "auto" for every group term, or {term: one of those}
    #: (others non-centred). `auto` is not the default: on outflow at 10x participants it left R-hat at
    #: 1.027 against 1.006 all non-centred (benchmarks/RESULTS.md, section `parametrisation`).
    parametrisation: str | dict[str, str] = NONCENTRED

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.baseline:
            # Left out when unset, so that specs stored before the setting existed still compare equal.
            del out["baseline"]
        if self.parametrisation == NONCENTRED:
            # Left out at the default, so that specs stored before the setting existed still compare equal.
            del out["parametrisation"]
        out["priors"] = {term: str(prior) for term, prior in self.priors.items()}
        out["bounds"] = list(self.bounds)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_priors(self, priors: dict[str, Prior]) -> ModelSpec:
        return dataclasses.replace(self, priors={**self.priors, **priors})

    def with_sampler(self, **settings: Any) -> ModelSpec:
        given = {k: v for k, v in settings.items() if v is not None}
        return dataclasses.replace(self, sampler=_check_sampler({**self.sampler, **given}, self.name))

    @property
    def outcome_unit(self) -> str:
        """Unit of effects on the outcome scale, as printed beside numbers."""
        if self.unit:
            return self.unit
        return registry.get(self.family).unit


_PRIOR_RE = re.compile(r"^\s*([A-Za-z]+)\s*\((.*)\)\s*$")


def parse_prior(text: str | dict, where: str = "prior") -> Prior:
    """Parse `Normal(0, 0.5)`, `Normal(mu=0, sigma=0.5)`, a TOML table `{dist="Normal", mu=0, sigma=0.5}`, or `auto`."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return Prior(AUTO, {})
    if isinstance(text, dict):
        params = {k: v for k, v in text.items() if k != "dist"}
        return _check_prior(str(text.get("dist", "")), params, where)
    match = _PRIOR_RE.match(str(text))
    if not match:
        raise SpecError(f"{where}: cannot read prior {text!r}; expected e.g. 'Normal(0, 0.5)', 'HalfNormal(sigma=0.3)' or 'auto'")
    dist, args = match.groups()
    if dist not in DISTRIBUTIONS:
        raise SpecError(f"{where}: unknown distribution {dist!r}; valid: {', '.join(DISTRIBUTIONS)}")
    try:
        call = ast.parse(f"f({args})", mode="eval").body
        positional = [ast.literal_eval(a) for a in call.args]
        keywords = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise SpecError(f"{where}: cannot read the parameters of prior {text!r} ({exc.__class__.__name__})") from None
    names = DISTRIBUTIONS[dist]
    if None in keywords:  # f(**{...})
        raise SpecError(f"{where}: cannot read the parameters of prior {text!r}; write them as NAME=VALUE")
    if len(positional) > len(names):
        raise SpecError(f"{where}: {dist} takes ({', '.join(names)}); got {len(positional)} values in {text!r}")
    twice = [name for name in names[:len(positional)] if name in keywords]
    if twice:
        raise SpecError(f"{where}: {dist} parameter {twice[0]} is given twice in {text!r}")
    params = dict(zip(names, positional)) | keywords
    return _check_prior(dist, params, where)


def _check_prior(dist: str, params: dict[str, Any], where: str) -> Prior:
    if dist not in DISTRIBUTIONS:
        raise SpecError(f"{where}: unknown distribution {dist!r}; valid: {', '.join(DISTRIBUTIONS)}")
    expected = DISTRIBUTIONS[dist]
    unknown = sorted(set(params) - set(expected))
    missing = [p for p in expected if p not in params]
    if unknown or missing:
        raise SpecError(f"{where}: {dist} takes ({', '.join(expected)}); "
                        + (f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"))
    values: dict[str, float] = {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{where}: {dist} parameter {key} must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer with hundreds of digits
            number = math.inf
        if not math.isfinite(number):
            raise SpecError(f"{where}: {dist} parameter {key} must be a finite number, got {value!r:.40}")
        # Cauchy's alpha is its location, not a scale.
        if key in POSITIVE_PARAMS and (dist, key) != ("Cauchy", "alpha") and not number > 0:
            raise SpecError(f"{where}: {dist} parameter {key} must be > 0, got {value!r}")
        values[key] = number
    if dist == "Uniform" and not values["lower"] < values["upper"]:
        raise SpecError(f"{where}: Uniform needs lower < upper, got {values['lower']:g}, {values['upper']:g}")
    return Prior(dist, values)


def check_prior_for_term(term: str, prior: Prior, where: str = "prior") -> None:
    """Refuse priors that PyMC would accept but that cannot be sampled for this kind of term.

    A standard deviation with a prior that puts mass below zero, or ordinal thresholds under one
    shared distribution (they must stay ordered), give a model whose log density is -inf at the
    start: the sampler would fail without saying why.
    """
    if prior.dist == AUTO:
        return
    if term == "threshold":
        raise SpecError(f"{where}: the ordinal thresholds keep Bambi's default prior (normal around evenly spaced "
                        f"cut-points, kept in order); a single {prior.dist} prior cannot keep them ordered")
    positive = prior.dist in POSITIVE_DISTRIBUTIONS or prior.dist == "Beta" or (
        prior.dist == "Uniform" and prior.params["lower"] >= 0)
    if ("|" in term or term in POSITIVE_TERMS) and not positive:
        raise SpecError(f"{where}: {term!r} is a standard deviation or dispersion, so its prior must be positive; "
                        f"got {prior}; valid: {', '.join(sorted(POSITIVE_DISTRIBUTIONS))}, Beta, Uniform(lower >= 0)")


def parse_prior_assignment(text: str) -> tuple[str, Prior]:
    """`arm=Normal(0, 0.5)` or `1|consultant_id=HalfNormal(0.3)` from the command line."""
    term, sep, prior = text.partition("=")
    if not sep or not term.strip():
        raise SpecError(f"--prior {text!r}: expected TERM=DISTRIBUTION(...), e.g. 'arm=Normal(0, 0.5)'")
    return term.strip(), parse_prior(prior, where=f"--prior {term.strip()}")


def _check_sampler(settings: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(SAMPLER_DEFAULTS))
    if unknown:
        raise SpecError(f"{where}: unknown sampler setting(s) {', '.join(unknown)}; valid: {', '.join(SAMPLER_DEFAULTS)}")
    out = {**SAMPLER_DEFAULTS, **settings}
    if out["sampler"] not in SAMPLERS:
        raise SpecError(f"{where}: sampler must be one of {', '.join(SAMPLERS)}, got {out['sampler']!r}")
    for key in ("draws", "tune", "chains"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < (1 if key != "tune" else 0):
            raise SpecError(f"{where}: sampler {key} must be a positive integer, got {out[key]!r}")
    if not isinstance(out["seed"], int) or isinstance(out["seed"], bool) or out["seed"] < 0:
        raise SpecError(f"{where}: sampler seed must be a non-negative integer, got {out['seed']!r}")
    target = out["target_accept"]
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0.5 <= target < 1:
        raise SpecError(f"{where}: target_accept must be in [0.5, 1), got {out['target_accept']!r}")
    return out


def spec_from_dict(raw: dict[str, Any], where: str = "spec") -> ModelSpec:
    """Validate a parsed spec (from TOML or a stored fit) and build a ModelSpec."""
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    for key in ("name", "outcome", "table", "formula", "family"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise SpecError(f"{where}: key '{key}' is missing or empty")
    if raw["family"] not in registry.names():
        raise SpecError(f"{where}: unknown family {raw['family']!r}; registered families: {', '.join(registry.names())}")
    if raw["table"] not in TABLES:
        raise SpecError(f"{where}: table must be one of {', '.join(TABLES)}, got {raw['table']!r}")
    if "~" not in raw["formula"]:
        raise SpecError(f"{where}: formula {raw['formula']!r} has no '~' (expected 'outcome ~ terms')")
    lhs = raw["formula"].split("~", 1)[0].strip()
    if lhs != raw["outcome"]:
        raise SpecError(f"{where}: formula's left side {lhs!r} differs from outcome {raw['outcome']!r}")
    for key in ("control_arm", "description", "unit"):
        if not isinstance(raw.get(key, ""), str):
            raise SpecError(f"{where}: '{key}' must be text, got {raw[key]!r}")
    if not isinstance(raw.get("aggregate", True), bool):
        raise SpecError(f"{where}: 'aggregate' must be true or false, got {raw['aggregate']!r}")
    bounds = raw.get("bounds", (None, None))
    bounds = tuple(bounds) if isinstance(bounds, list | tuple) else (bounds,)
    if len(bounds) != 2 or any(b is not None and (isinstance(b, bool) or not isinstance(b, int | float) or math.isnan(b))
                               for b in bounds):
        raise SpecError(f"{where}: bounds must be [lower, upper] numbers, got {raw.get('bounds')!r}")
    if None not in bounds and not bounds[0] < bounds[1]:
        raise SpecError(f"{where}: bounds must have lower < upper, got {list(bounds)}")
    implausible = raw.get("implausible_effect")
    if implausible is not None and (isinstance(implausible, bool) or not isinstance(implausible, int | float)
                                    or not math.isfinite(implausible) or implausible <= 0):
        raise SpecError(f"{where}: implausible_effect must be a positive number (outcome unit), got {implausible!r}")
    baseline = _check_baseline(raw, where)
    parametrisation = check_parametrisation(raw.get("parametrisation", NONCENTRED), where)
    priors_raw = raw.get("priors", {})
    if not isinstance(priors_raw, dict):
        raise SpecError(f"{where}: [priors] must be a table of TERM = \"Distribution(...)\"")
    priors = {term: parse_prior(value, where=f"{where}: prior for {term!r}") for term, value in priors_raw.items()}
    if not isinstance(raw.get("sampler", {}), dict):
        raise SpecError(f"{where}: [sampler] must be a table of {', '.join(SAMPLER_DEFAULTS)}, got {raw['sampler']!r}")
    sampler = _check_sampler(dict(raw.get("sampler", {})), where)
    return ModelSpec(
        name=raw["name"], outcome=raw["outcome"], table=raw["table"], formula=raw["formula"],
        family=raw["family"], control_arm=str(raw.get("control_arm", "control")),
        description=str(raw.get("description", "")), bounds=bounds, priors=priors, sampler=sampler,
        aggregate=bool(raw.get("aggregate", True)), unit=str(raw.get("unit", "")),
        implausible_effect=None if implausible is None else float(implausible), baseline=baseline,
        parametrisation=parametrisation,
    )


def check_parametrisation(value: Any, where: str) -> str | dict[str, str]:
    """The `parametrisation` setting: one of PARAMETRISATIONS, or a table of group term = one of them."""
    valid = ", ".join(PARAMETRISATIONS)
    if isinstance(value, dict):
        for term, choice in value.items():
            if "|" not in term:
                raise SpecError(f"{where}: parametrisation is for group terms (`expr|factor`), got {term!r}")
            if choice not in PARAMETRISATIONS:
                raise SpecError(f"{where}: parametrisation of {term!r} must be one of {valid}, got {choice!r}")
        return dict(value)
    if value not in PARAMETRISATIONS:
        raise SpecError(f"{where}: parametrisation must be one of {valid} (or a table of group term = one of them), "
                        f"got {value!r}")
    return value


def _check_baseline(raw: dict[str, Any], where: str) -> str:
    """The `baseline` setting: a survey score column for the response model, whose formula uses it."""
    baseline = raw.get("baseline", "")
    if not isinstance(baseline, str):
        raise SpecError(f"{where}: 'baseline' must be the name of a survey score column, got {baseline!r}")
    baseline = baseline.strip()
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", raw["formula"].split("~", 1)[1]))
    if not baseline:
        used = [c for c in (BASELINE_SCORE, NO_BASELINE) if c in names]
        if used:
            raise SpecError(f"{where}: the formula uses {', '.join(used)}, which only a 'baseline' setting makes "
                            "(e.g. baseline = \"wellbeing\")")
        return ""
    # The answers (`estimands.query`) average each wave over the rows of that wave, which are
    # everyone randomised only in the padded survey of the response model.
    if raw["outcome"] != RESPONDED:
        raise SpecError(f"{where}: 'baseline' is for the response model (outcome {RESPONDED!r}); "
                        f"model outcome is {raw['outcome']!r}")
    if baseline in (*CONTRACT_COLUMNS, RESPONDED, BASELINE_SCORE, NO_BASELINE):
        raise SpecError(f"{where}: baseline {baseline!r} is not a score: expected a survey outcome column such as "
                        "'wellbeing'")
    if BASELINE_SCORE not in names:
        raise SpecError(f"{where}: baseline {baseline!r} is set but the formula does not use {BASELINE_SCORE}; "
                        f"add '+ {BASELINE_SCORE} + {NO_BASELINE}'")
    return baseline


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid files become a one-line SpecError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:  # a folder, no permission, ...
        raise SpecError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def bundled_specs() -> list[str]:
    """Names of the specs shipped in `models/`."""
    return sorted(path.stem for path in MODELS_DIR.glob("*.toml"))


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """Read a spec file; a bare name such as `outflow` means the bundled `models/outflow.toml`."""
    path = resolve_bundled(name_or_path, MODELS_DIR)
    if not path.exists():
        raise SpecError(f"{name_or_path}: no such model spec file (bundled specs: {', '.join(bundled_specs())})")
    raw = read_toml(path)
    return spec_from_dict(raw, where=str(path))


def spec_from_json(text: str) -> ModelSpec:
    """The spec stored in a fit file (JSON), validated as a spec file would be."""
    return spec_from_dict(json.loads(text), where="stored spec")


def load_priors_file(path: str | Path) -> dict[str, Prior]:
    """A separate priors file: a TOML table of TERM = "Distribution(...)" (optionally under [priors])."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such priors file")
    raw = read_toml(path)
    raw = raw.get("priors", raw)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: [priors] must be a table of TERM = \"Distribution(...)\"")
    return {term: parse_prior(value, where=f"{path}: prior for {term!r}") for term, value in raw.items()}
