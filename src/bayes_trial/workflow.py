"""End-to-end analyses described in a TOML file: data source, model specs, queries, report.

    name = "oss_demo"
    title = "Oss experiment (simulated): outflow and wellbeing"
    out = "results/oss_demo"          # relative to the workflow file's project
    min_cell = 10

    [data]
    design = "oss"                    # simulate a bundled design ...
    seed = 1
    # survey = "path/survey.csv"      # ... or read files
    # register = "path/register.csv"

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

`run` fits each model unless a stored fit with the same spec (priors and sampler seed included) and
the same data hash already exists, then writes query tables, figures and the report.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import data as data_mod
from . import fit as fit_mod
from . import query, report
from .errors import FitFileError, SpecError
from .paths import PROJECT_ROOT, WORKFLOWS_DIR
from .simulate import load_design, simulate
from .spec import ModelSpec, load_spec, parse_prior, read_toml

SAMPLER_KEYS = ("draws", "tune", "chains", "seed", "sampler", "target_accept")
QUERY_KEYS = {"model", "expression", "by", "wave", "municipality", "rope"}


@dataclass
class Workflow:
    name: str
    title: str
    out: Path
    data: dict[str, Any]
    models: list[ModelSpec]
    queries: dict[str, list[dict]] = field(default_factory=dict)
    min_cell: int = query.MIN_CELL
    source: Path | None = None
    published: str | None = None


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (base / candidate)


def load_workflow(path: str | os.PathLike) -> Workflow:
    """Read and check a workflow TOML file (a bundled name like "oss_demo" also works)."""
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
        models.append(spec.with_priors(priors).with_sampler(**{k: entry[k] for k in SAMPLER_KEYS if k in entry}))
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
    min_cell = report.check_min_cell(int(raw.get("min_cell", query.MIN_CELL)))
    return Workflow(name=raw.get("name", path.stem), title=raw.get("title", path.stem), out=_resolve(raw.get("out", f"results/{path.stem}"), base),
                    data=data, models=models, queries=queries, min_cell=min_cell, source=path,
                    published=published)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_tables(workflow: Workflow) -> dict[str, pd.DataFrame]:
    """The workflow's survey and register tables: simulated from a design, or read and validated."""
    source = workflow.data
    if "design" in source:
        design = load_design(source["design"])
        sim = simulate(design, seed=int(source.get("seed", 1)))
        return {"survey": sim.survey, "register": sim.register}
    base = workflow.source.parent if workflow.source else Path.cwd()
    tables = {}
    if "survey" in source:
        tables["survey"] = data_mod.load_survey(_resolve(source["survey"], base))
    if "register" in source:
        tables["register"] = data_mod.load_register(_resolve(source["register"], base))
    return tables


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
    fit_mod.save(fit, path)
    return fit, False


def run(workflow: Workflow | str | os.PathLike, *, progress: bool = True) -> dict[str, Path]:
    """Fit (or reuse) every model, answer the queries and write the report; returns the output paths."""
    if not isinstance(workflow, Workflow):
        workflow = load_workflow(workflow)
    started = time.perf_counter()
    tables = load_tables(workflow) if workflow.models else {}
    fits = []
    for spec in workflow.models:
        if spec.table not in tables:
            raise SpecError(f"{workflow.source}: model {spec.name!r} needs a {spec.table} table, but [data] has none")
        path = workflow.out / "fits" / f"{spec.name}.nc"
        fit, reused = fit_or_reuse(spec, tables[spec.table], path, progress=progress)
        if progress:
            _say(f"{spec.name}: {'unchanged since the last run, reusing' if reused else 'fitted and stored in'} {path}")
        fits.append(fit)
    query_tables = [query.hypothesis(fit, q["expression"], by=q.get("by"), wave=q.get("wave"),
                                     municipality=q.get("municipality"), rope=q.get("rope")).assign(model=fit.spec.name)
                    for fit in fits for q in workflow.queries.get(fit.spec.name, [])]
    outputs = {}
    if query_tables:
        outputs["queries"] = workflow.out / "queries.csv"
        pd.concat(query_tables, ignore_index=True).to_csv(outputs["queries"], index=False)
    if progress:
        _say("writing figures and report ...")
    extra = []
    if workflow.published == "oss":
        from .published import published_oss_analysis

        extra = report.published_blocks(published_oss_analysis(workflow.out / "published"))
    outputs.update(report.report(fits, workflow.out, title=workflow.title, queries=workflow.queries,
                                 min_cell=workflow.min_cell, extra=extra))
    if progress:
        _say(f"done in {time.perf_counter() - started:.0f} s; report: {outputs['html']}")
    return outputs
