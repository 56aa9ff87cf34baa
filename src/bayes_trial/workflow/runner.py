"""End-to-end analyses described in a TOML file: data source, model specs, queries, report.

    name = "oss_demo"
    title = "Oss experiment (simulated): outflow and wellbeing"
    out = "results/oss_demo"          # relative to the workflow file's project
    min_cell = 10

    [data]
    design = "oss"                    # simulate a bundled design ...
    seed = 1
    # survey = "path/survey.sav"      # ... or read files (relative to the workflow file)
    # register = "path/register.csv"
    # control_arm = "controle"        # the control arm as written in the data (all models)
    # [data.columns]                  # your column names -> the data contract's (data/README.md)
    # klantnummer = "participant_id"
    # gemeente = "municipality"

    [[models]]
    spec = "outflow"                  # models/outflow.toml, or a path
    draws = 500                       # optional sampler overrides
    priors = { arm = "Normal(0, 0.5)" }   # optional prior overrides

    [published]                       # optional: a section on the printed Oss numbers
    analysis = "oss"

    [[queries]]
    model = "outflow"
    expression = "intensive - control > 0"
    by = "municipality"               # optional: municipality | wave
    rope = [-0.02, 0.02]              # optional

    [[sensitivity]]                   # survey answers missing not at random (estimands.sensitivity)
    model = "wellbeing"
    expression = "intensive - control > 0"
    delta = { control = "-2:2" }      # per arm: LOW:HIGH, LOW:HIGH:STEP or VALUE
    wave = 2                          # optional: default the last wave
    threshold = 0.9                   # optional: P(hypothesis) below this tips the conclusion

`run` fits each model unless a stored fit with the same spec (priors and sampler seed included) and
the same data hash already exists, then writes query tables, sensitivity grids, figures and the report.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bayes_trial.data import contract as data_mod
from bayes_trial.data.columns import check_column_mapping
from bayes_trial.sampling import fit as fit_mod
from bayes_trial.checks import diagnose, records
from bayes_trial.core.summaries import MIN_CELL
from bayes_trial.estimands import answers, sensitivity
from bayes_trial.report import document as report
from bayes_trial.core.progress import say
from bayes_trial.core.errors import FitFileError, SpecError
from bayes_trial.core.paths import PROJECT_ROOT, WORKFLOWS_DIR
from bayes_trial.simulation.design import load_design
from bayes_trial.simulation.generate import simulate
from bayes_trial.modelling.spec import ModelSpec, load_spec, parse_prior, read_toml

SAMPLER_KEYS = ("draws", "tune", "chains", "seed", "sampler", "target_accept")
DATA_KEYS = ("design", "seed", "survey", "register", "control_arm", "columns")
QUERY_KEYS = {"model", "expression", "by", "wave", "municipality", "rope"}
SENSITIVITY_KEYS = ("model", "expression", "delta", "wave", "threshold", "interval")


@dataclass
class Workflow:
    """A parsed workflow file: data, models, queries and report settings."""
    name: str
    title: str
    out: Path
    data: dict[str, Any]
    models: list[ModelSpec]
    queries: dict[str, list[dict]] = field(default_factory=dict)
    sensitivity: list[dict] = field(default_factory=list)
    min_cell: int = MIN_CELL
    source: Path | None = None
    published: str | None = None


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (base / candidate)


def load_workflow(path: str | os.PathLike, *, columns: dict[str, str] | None = None,
                  control_arm: str | None = None) -> Workflow:
    """Read and check a workflow TOML file (a bundled name like "oss_demo" also works).

    `columns` and `control_arm` (the command line's --columns and --control) take the place of the
    workflow's ``[data.columns]`` and ``[data] control_arm``. A control arm, given either way,
    replaces every model spec's ``control_arm``.
    """
    path = Path(path)
    if not path.exists() and (WORKFLOWS_DIR / f"{path.name}.toml").exists():
        path = WORKFLOWS_DIR / f"{path.name}.toml"
    if not path.exists():
        raise SpecError(f"{path}: no such workflow file")
    raw = read_toml(path)
    base = PROJECT_ROOT if path.resolve().is_relative_to(PROJECT_ROOT) else path.parent
    published = raw.get("published", {}).get("analysis")
    if published not in (None, "oss"):
        raise SpecError(f"{path}: [published] analysis {published!r} is unknown (expected 'oss')")
    data = raw.get("data", {})
    if raw.get("models") and (not isinstance(data, dict) or not ({"design", "survey", "register"} & data.keys())):
        raise SpecError(f"{path}: [data] must name a simulated 'design' or 'survey'/'register' files")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: [data] must be a table, got {data!r}")
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise SpecError(f"{path}: [data] has unknown key(s) {', '.join(unknown)}; valid: {', '.join(DATA_KEYS)}")
    data = dict(data)
    if columns:
        data["columns"] = columns
    if control_arm:
        data["control_arm"] = control_arm
    if "control_arm" in data and (not isinstance(data["control_arm"], str) or not data["control_arm"].strip()):
        raise SpecError(f"{path}: [data] control_arm must be the control arm's name as text, got {data['control_arm']!r}")
    models = []
    for i, entry in enumerate(raw.get("models", [])):
        if "spec" not in entry:
            raise SpecError(f"{path}: [[models]] entry {i + 1} has no 'spec'")
        spec = load_spec(entry["spec"])
        unknown = set(entry) - {"spec", "priors", *SAMPLER_KEYS}
        if unknown:
            raise SpecError(f"{path}: [[models]] {entry['spec']!r} has unknown keys {sorted(unknown)} "
                            f"(expected spec, priors, {', '.join(SAMPLER_KEYS)})")
        priors = {term: parse_prior(text, f"{path}: prior for {term!r}") for term, text in entry.get("priors", {}).items()}
        if "control_arm" in data:
            spec = dataclasses.replace(spec, control_arm=data["control_arm"])
        models.append(spec.with_priors(priors).with_sampler(**{k: entry[k] for k in SAMPLER_KEYS if k in entry}))
    if data.get("columns"):
        data["columns"] = check_column_mapping(
            data["columns"], where="--columns" if columns else f"{path}: [data.columns]",
            targets=[c for spec in models for c in data_mod.model_columns(spec)] or data_mod.CONTRACT_COLUMNS)
    if not models and not published:
        raise SpecError(f"{path}: nothing to do (no [[models]] to fit and no [published] analysis)")
    names = [spec.name for spec in models]
    queries: dict[str, list[dict]] = {}
    for entry in raw.get("queries", []):
        unknown = set(entry) - QUERY_KEYS
        if unknown or "expression" not in entry or entry.get("model") not in names:
            raise SpecError(f"{path}: each [[queries]] needs 'model' (one of {', '.join(names)}) and 'expression'"
                            + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
        if "rope" in entry:
            entry = {**entry, "rope": tuple(entry["rope"])}
        queries.setdefault(entry["model"], []).append(entry)
    analyses = [check_sensitivity_block(entry, i + 1, models, path) for i, entry in enumerate(raw.get("sensitivity", []))]
    min_cell = report.check_min_cell(int(raw.get("min_cell", MIN_CELL)))
    return Workflow(name=raw.get("name", path.stem), title=raw.get("title", path.stem), out=_resolve(raw.get("out", f"results/{path.stem}"), base),
                    data=data, models=models, queries=queries, sensitivity=analyses, min_cell=min_cell, source=path,
                    published=published)


def check_sensitivity_block(entry: dict, number: int, models: list[ModelSpec], path: Path) -> dict:
    """A ``[[sensitivity]]`` block with its keys checked (one-line errors); arms are checked when it runs."""
    where = f"{path}: [[sensitivity]] {number}"
    if not isinstance(entry, dict):
        raise SpecError(f"{where} must be a table")
    unknown = sorted(set(entry) - set(SENSITIVITY_KEYS))
    if unknown:
        raise SpecError(f"{where} has unknown key(s) {', '.join(unknown)}; valid: {', '.join(SENSITIVITY_KEYS)}")
    specs = {spec.name: spec for spec in models}
    if entry.get("model") not in specs:
        raise SpecError(f"{where} needs 'model' (one of {', '.join(specs) or 'no models'}), got {entry.get('model')!r}")
    spec = specs[entry["model"]]
    if spec.table != "survey":
        raise SpecError(f"{where}: delta adjustment is for survey outcomes; {spec.name} models {spec.outcome} "
                        f"from the {spec.table}")
    if not isinstance(entry.get("expression"), str) or not entry["expression"].strip():
        raise SpecError(f"{where} needs 'expression', e.g. \"intensive - control > 0\"")
    deltas = entry.get("delta")
    if not isinstance(deltas, dict) or not deltas:
        raise SpecError(f"{where} needs 'delta', a table of arm ranges, e.g. delta = {{ control = \"-2:2\" }}")
    for arm, spec in deltas.items():
        sensitivity.delta_values(spec, f"{where}: delta {arm} = {spec!r}")
    for key in ("threshold", "interval"):
        value = entry.get(key, 0.5)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise SpecError(f"{where}: {key} must be a number between 0 and 1, got {value!r}")
    return dict(entry)


def load_tables(workflow: Workflow) -> dict[str, pd.DataFrame]:
    """The workflow's survey and register tables: simulated from a design, or read and validated
    (with ``[data.columns]`` and ``control_arm``; outcome ranges are checked per model by
    :func:`model_frames`)."""
    source = workflow.data
    if "design" in source:
        design = load_design(source["design"])
        sim = simulate(design, seed=int(source.get("seed", 1)))
        return {"survey": sim.survey, "register": sim.register}
    kwargs = {"columns": source.get("columns") or None, "control_arm": source.get("control_arm", "control")}
    tables = {}
    if "survey" in source:
        tables["survey"] = data_mod.load_survey(_data_path(workflow, "survey"), **kwargs)
    if "register" in source:
        tables["register"] = data_mod.load_register(_data_path(workflow, "register"), **kwargs)
    return tables


def _data_path(workflow: Workflow, table: str) -> Path:
    return _resolve(workflow.data[table], workflow.source.parent if workflow.source else Path.cwd())


def model_frames(workflow: Workflow) -> dict[str, pd.DataFrame]:
    """The validated table of each model, by model name.

    Simulated tables are shared; a file is validated for each model with that model's outcome
    range and control arm (a spec's own ``control_arm`` counts, unless ``[data]`` overrides it).
    With a register, a survey model's table has a row for every randomised person at every wave
    (`data.contract.with_nonresponse`), so that its missing outcomes count non-response over everyone
    randomised; the response model (`models/response.toml`) needs that.
    """
    for spec in workflow.models:
        if spec.outcome == data_mod.RESPONDED and "register" not in workflow.data and "design" not in workflow.data:
            raise SpecError(f"{workflow.source}: model {spec.name!r} needs everyone randomised: "
                            "give [data] register (the register file) beside survey")
    if "design" in workflow.data:
        tables = load_tables(workflow)
        padded = data_mod.with_nonresponse(tables["survey"], tables["register"])
        return {spec.name: padded if spec.table == "survey" else tables[spec.table] for spec in workflow.models}
    frames = {}
    for spec in workflow.models:
        if spec.table in workflow.data:
            frames[spec.name] = data_mod.load_for_spec(
                spec, _data_path(workflow, spec.table), columns=workflow.data.get("columns") or None,
                where=f"{workflow.source}: [data.columns]", targets=list((workflow.data.get("columns") or {}).values()),
                register=_data_path(workflow, "register") if "register" in workflow.data else None)
    return frames


def fit_or_reuse(spec: ModelSpec, frame: pd.DataFrame, path: Path, *, progress: bool = True) -> tuple[fit_mod.Fit, bool]:
    """A stored fit when its spec (priors, sampler and seed included) and data hash match; else a new fit."""
    frame_hash = data_mod.data_hash(frame)
    if path.exists():
        try:
            stored = fit_mod.load(path)
        except FitFileError:
            stored = None
        if stored is not None and stored.info.get("spec") == spec.to_json() and stored.info.get("data_hash") == frame_hash:
            return stored, True
    fit = fit_mod.sample(spec, frame, progress=progress)
    records.record_checks(fit, diagnose.diagnose(fit))
    fit_mod.save(fit, path)
    return fit, False


def run(workflow: Workflow | str | os.PathLike, *, progress: bool = True) -> dict[str, Path]:
    """Fit (or reuse) every model, answer the queries and write the report; returns the output paths."""
    if not isinstance(workflow, Workflow):
        workflow = load_workflow(workflow)
    started = time.perf_counter()
    frames = model_frames(workflow) if workflow.models else {}
    fits = []
    for spec in workflow.models:
        if spec.name not in frames:
            raise SpecError(f"{workflow.source}: model {spec.name!r} needs a {spec.table} table, but [data] has none")
        path = workflow.out / "fits" / f"{spec.name}.nc"
        fit, reused = fit_or_reuse(spec, frames[spec.name], path, progress=progress)
        if progress:
            say(f"{spec.name}: {'unchanged since the last run, reusing' if reused else 'fitted and stored in'} {path}")
        fits.append(fit)
    query_tables = [answers.hypothesis(fit, q["expression"], by=q.get("by"), wave=q.get("wave"),
                                       municipality=q.get("municipality"), rope=q.get("rope")).assign(model=fit.spec.name)
                    for fit in fits for q in workflow.queries.get(fit.spec.name, [])]
    by_name = {fit.spec.name: fit for fit in fits}
    analyses = [sensitivity.delta_adjusted(by_name[block["model"]], block["expression"], deltas=block["delta"],
                                           wave=block.get("wave"),
                                           **{k: block[k] for k in ("threshold", "interval") if k in block})
                for block in workflow.sensitivity]
    outputs = {}
    if query_tables:
        outputs["queries"] = workflow.out / "queries.csv"
        pd.concat(query_tables, ignore_index=True).to_csv(outputs["queries"], index=False)
    if analyses:
        outputs["sensitivity"] = workflow.out / "sensitivity.csv"
        pd.concat([a.grid.assign(model=a.model, hypothesis=a.hypothesis, wave=a.wave, unit=a.unit, delta_scale=a.scale)
                   for a in analyses], ignore_index=True).to_csv(outputs["sensitivity"], index=False)
    if progress:
        say("writing figures and report ...")
    extra = []
    if workflow.published == "oss":
        from bayes_trial.aggregate.published import published_oss_analysis

        extra = report.published_blocks(published_oss_analysis(workflow.out / "published"))
    extra = report.sensitivity_blocks(analyses, workflow.out / "figures", workflow.min_cell) + extra
    outputs.update(report.report(fits, workflow.out, title=workflow.title, queries=workflow.queries,
                                 min_cell=workflow.min_cell, extra=extra))
    if progress:
        say(f"done in {time.perf_counter() - started:.0f} s; report: {outputs['html']}")
    return outputs
