"""Reports a reviewer can read: one self-contained HTML page and a Markdown twin.

A report is built as a list of blocks (headings, paragraphs, tables, figures, verdict banners) and
rendered twice, so the HTML (figures embedded as base64) and the Markdown (figures linked) never
disagree. The diagnostics verdict of every fit comes first; a failing fit is shown in red on the
first screen. Observed-data tables come from cells of at least `min_cell` persons and never hold
participant ids.
"""

from __future__ import annotations

import base64
import functools
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bayes_trial.checks import diagnose as diagnose_mod
from bayes_trial.checks.calibration import calibration
from bayes_trial.checks import ppc as ppc_mod
from bayes_trial.checks.priors import REPORT_DRAWS, PriorCheck, fit_prior_check
from bayes_trial.core import parallel
from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import write_atomic
from bayes_trial.core.summaries import interval_texts
from bayes_trial.aggregate.published import response_posterior
from bayes_trial.estimands import attrition, query, sensitivity
from bayes_trial.modelling.frames import CONFOUNDED, missing_outcomes
from bayes_trial.plots import attrition as attrition_plots
from bayes_trial.plots import curves as curve_plots
from bayes_trial.plots import figures as figures_mod
from bayes_trial.plots import sensitivity as sensitivity_plots
from bayes_trial.sampling.fit import Fit, graph_priors


@dataclass
class Block:
    """One piece of a report (heading, paragraph, table, figure, verdict), rendered to Markdown and HTML."""
    kind: str  # "h1" | "h2" | "h3" | "p" | "table" | "figure" | "verdict" | "pre"
    text: str = ""
    table: pd.DataFrame | None = None
    path: Path | None = None
    passed: bool = True
    items: list[str] = field(default_factory=list)


def check_min_cell(min_cell: int) -> int:
    """`min_cell` itself, or a `SpecError` when it is below the disclosure floor."""
    if min_cell < query.MIN_CELL_FLOOR:
        raise SpecError(f"min_cell {min_cell} is below the disclosure floor of {query.MIN_CELL_FLOOR} persons")
    return min_cell


def data_summary(fit: Fit, min_cell: int = query.MIN_CELL) -> pd.DataFrame:
    """Persons and observed mean outcome by arm x wave x town; small cells shown as '<min_cell'."""
    by = [c for c in ("arm", "wave", "municipality") if c in fit.data]
    table = query.observed_means(fit, by, min_cell)
    table["n"] = [str(n) if n >= min_cell else f"<{min_cell}" for n in table["n"]]
    unit = fit.spec.outcome_unit
    table = table.rename(columns={"n": "persons", "mean": f"observed mean ({'%' if unit == 'pp' else unit})"})
    return table


def missing_outcome_blocks(fit: Fit, min_cell: int = query.MIN_CELL) -> list[Block]:
    """Rows left out for a missing outcome, per arm and wave, with small counts suppressed.

    A count is shown when it is 0 or at least `min_cell`; the number left out is also hidden when
    the persons who answered (total minus left out) would be a small cell.
    """
    table = missing_outcomes(fit)
    if table.empty:
        return []

    def shown(count: int) -> str:
        return str(count) if count == 0 or count >= min_cell else f"<{min_cell}"

    kept = table["n_total"] - table["n_dropped"]
    out = pd.DataFrame({"arm": table["arm"], "wave": ["" if w is None else str(w) for w in table["wave"]],
                        "left out": [shown(d) if shown(k) == str(k) or d == 0 else f"<{min_cell}"
                                     for d, k in zip(table["n_dropped"], kept)],
                        "rows": [shown(n) for n in table["n_total"]]})
    if not (out["wave"] != "").any():
        out = out.drop(columns="wave")
    if fit.prepared.missing_over_randomised:
        return [Block("table", f"Did not answer {fit.spec.outcome}, of everyone randomised (left out of the model; "
                               f"counts under {min_cell} suppressed)",
                      table=out.rename(columns={"left out": "did not answer", "rows": "randomised"}))]
    return [Block("table", f"Rows without {fit.spec.outcome}, left out of the model (counts under {min_cell} suppressed)",
                  table=out)]


def counted_response(fit: Fit, min_cell: int = query.MIN_CELL) -> attrition.ResponseRates | None:
    """Response by arm x wave from the counts stored with a survey fit: a Beta posterior per cell.

    The saturated arm x wave model of `aggregate.published.response_posterior` (uniform prior).
    Cells where those who answered or those who did not are fewer than `min_cell` (but not none)
    are left out, with every differential that uses them. None when the fit stores no counts.
    """
    counts = attrition.response_counts(fit)
    if counts.empty:
        return None
    control = fit.spec.control_arm
    posterior = response_posterior(counts, control=control)
    shown = {(str(row.arm), str(row.wave)) for row in counts.itertuples()
             if row.n_net >= min_cell and attrition.publishable(int(row.n_completed), min_cell)
             and attrition.publishable(int(row.n_net - row.n_completed), min_cell)}
    cells = posterior.cells
    rates = cells[[(arm, str(wave)) in shown for arm, wave in zip(cells["arm"], cells["wave"])]]
    contrasts = posterior.contrasts.assign(arm=[c.removesuffix(f" - {control}") for c in posterior.contrasts["contrast"]])
    keep = [(arm, str(w)) in shown and (control, str(w)) in shown for arm, w in zip(contrasts["arm"], contrasts["wave"])]
    contrasts = contrasts[keep].assign(p_lt_0=lambda t: 1 - t["p_gt_0"])
    over = ("everyone randomised (survey padded with the register)" if fit.prepared.missing_over_randomised
            else "the survey file's rows only (who was randomised but never answered is unknown)")
    method = (f"Beta posterior per arm x wave from the counts stored with this fit, over {over}; "
              f"cells with under {min_cell} persons answering or not answering are left out")
    as_int = {"wave": lambda t: t["wave"].astype(int)}
    return attrition.ResponseRates(rates[["arm", "wave", "mean", "lower", "upper"]].assign(**as_int).reset_index(drop=True),
                                   contrasts[["wave", "contrast", "arm", "mean", "lower", "upper", "p_lt_0"]]
                                   .assign(**as_int).reset_index(drop=True), method)


def response_blocks(fit: Fit, figure_dir: Path, response_fit: Fit | None = None,
                    min_cell: int = query.MIN_CELL) -> list[Block]:
    """Who answered, beside a survey outcome: the MAR assumption, response by arm x wave, differentials.

    Response comes from `response_fit` (a fit of the response model) when given and fitted to the
    same arms, waves and towns, else from the response counts stored with `fit` (`counted_response`). A response-model fit shows its own rates.
    Nothing for register outcomes.
    """
    if attrition.is_response_fit(fit):
        response_fit = fit
    elif not attrition.has_survey_outcome(fit):
        return []
    elif response_fit is not None and not attrition.same_trial(fit, response_fit):
        response_fit = None  # another trial's response would be drawn as this one's
    line = attrition.mar_assumption(fit, query.waves(fit), min_cell=min_cell)
    blocks = [Block("h3", "Survey response and the missing-at-random assumption" if line else "Survey response")]
    if line:
        blocks.append(Block("p", line))
    response = attrition.response_rates(response_fit) if response_fit is not None else counted_response(fit, min_cell)
    if response is None or response.rates.empty:
        return blocks
    blocks.append(Block("p", f"Response: {response.method}."))
    figure = attrition_plots.plot_response(response.rates, response.differentials, control=fit.spec.control_arm,
                                           title=f"Survey response ({fit.spec.name})")
    name = f"{fit.spec.name}_response"
    blocks.append(Block("figure", "Survey response by arm and wave (left) and each arm minus control (right), "
                                  "90% intervals", path=figures_mod.save_figure(figure, figure_dir, name)[0]))
    table = response.differentials.copy()
    table["interval (90% ETI)"] = interval_texts(table["lower"], table["upper"])
    table = table[["wave", "contrast", "mean", "interval (90% ETI)", "p_lt_0"]].rename(
        columns={"mean": "mean (pp)", "p_lt_0": "P(differential < 0)"})
    blocks.append(Block("table", "Response differential, each arm minus control (pp)", table=_readable(table)))
    return blocks


def _format_number(value) -> str:
    if isinstance(value, float):
        return "—" if pd.isna(value) else f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.2f}"
    return str(value)


def _readable(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(_format_number) if not table.empty else table


def _estimand_table(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    shown["interval (90% ETI)"] = interval_texts(shown["lower"], shown["upper"])
    if "note" in shown:
        shown["note"] = shown["note"].fillna("")
    if "wave" in shown and shown["wave"].isna().all():
        shown = shown.drop(columns="wave")
    keep = [c for c in ("contrast", "hypothesis", "municipality", "wave", "month", "arm", "unit", "mean", "interval (90% ETI)",
                        "p_gt_0", "p_hypothesis", "p_rope", "note") if c in shown]
    return shown[keep].rename(columns={"p_gt_0": "P(effect > 0)", "p_hypothesis": "P(hypothesis)", "p_rope": "P(in ROPE)"})


def _effect_blocks(fit: Fit, figure_dir: Path, queries: list[dict] | None, min_cell: int) -> list[Block]:
    blocks = [Block("h3", "Effects on the outcome scale")]
    blocks += [Block("p", f"Warning: {note}") for note in fit.prepared.notes if note.startswith(CONFOUNDED)]
    blocks.append(Block("table", "Each arm against control (g-computation over the observed participants)",
                        table=_readable(_estimand_table(query.effects(fit)))))
    wave_effects = query.wave_effects(fit)
    if not wave_effects.empty:
        blocks.append(Block("table", "Time: change from baseline in the control arm",
                            table=_readable(_estimand_table(wave_effects))))
    blocks.append(Block("table", "Group-level standard deviations (link scale) and consultant share of variance",
                        table=_readable(query.variance_components(fit))))
    for spec in queries or []:
        table = query.hypothesis(fit, spec["expression"], by=spec.get("by"), wave=spec.get("wave"),
                                 municipality=spec.get("municipality"), rope=spec.get("rope"))
        blocks.append(Block("table", f"Query: {spec['expression']}" + (f" by {spec['by']}" if spec.get("by") else ""),
                            table=_readable(_estimand_table(table))))
    blocks.append(Block("h3", "Figures"))
    expressions = [q["expression"] for q in queries or [] if not q.get("by")] or None
    for fig_name, paths in figures_mod.report_figures(fit, figure_dir, expressions, min_cell=min_cell).items():
        blocks.append(Block("figure", fig_name.replace("_", " "), path=paths[0]))
    return blocks


def _hazard_blocks(fit: Fit, figure_dir: Path, min_cell: int) -> list[Block]:
    from bayes_trial.estimands import curves as hazard

    curves = hazard.outflow_curves(fit)
    blocks = [Block("h3", "Outflow to work over time"),
              Block("table", "Percentage who left for work by month, per arm",
                    table=_readable(_estimand_table(hazard.cumulative_incidence(fit, [12, 16, 24], curves=curves)))),
              Block("table", "Each arm against control, percentage points by month",
                    table=_readable(_estimand_table(hazard.contrasts_at(fit, [12, 16, 24], curves=curves)))),
              Block("table", "Months until half have left (inf: not reached within follow-up)",
                    table=_readable(hazard.median_time(fit, curves=curves))),
              Block("table", "Group-level standard deviations (link scale)", table=_readable(query.variance_components(fit))),
              Block("h3", "Figures")]
    for name, figure in ((f"{fit.spec.name}_curves", curve_plots.plot_cumulative_incidence(fit, min_cell=min_cell)),
                         (f"{fit.spec.name}_contrast_over_time", curve_plots.plot_outflow_contrast(fit))):
        blocks.append(Block("figure", "Survey response by arm and wave (left) and each arm minus control (right), "
                                  "90% intervals", path=figures_mod.save_figure(figure, figure_dir, name)[0]))
    return blocks


def section_title(fit: Fit, label: str | None = None) -> str:
    """`label` (the fit's file name) and its spec name, or the spec name alone when they are the same."""
    name = fit.spec.name
    return name if not label or label == name else f"{label} ({name})"


def prior_check_text(check: PriorCheck | str) -> str:
    """The prior-check verdict in one line, or why there is none."""
    return check if isinstance(check, str) else check.verdict.format()


def sbc_flag(fit: Fit) -> str:
    """"; simulation-based calibration FAIL ..." when the fit's family failed SBC on record, else nothing."""
    record = calibration(fit.spec.family)
    return f"; {record.format()}" if record.status == "FAIL" else ""


def fit_blocks(fit: Fit, figure_dir: Path, *, queries: list[dict] | None = None, min_cell: int = query.MIN_CELL,
               diagnosis: diagnose_mod.Diagnosis | None = None, label: str | None = None,
               prior_check: PriorCheck | str | None = None, response_fit: Fit | None = None) -> list[Block]:
    """The report section of one fit, titled with `label` (e.g. its file name) and spec name.

    A survey-outcome section states the missing-at-random assumption and shows response by arm x
    wave, from `response_fit` (a response-model fit) when given (`response_blocks`).

    Its figures go to figure_dir/NAME/, NAME made of the label (else the spec name) in letters, digits,
    `-` and `_`, so each section needs a distinct label.
    """
    diagnosis = diagnosis or diagnose_mod.diagnose(fit, with_sensitivity=True)
    prior_check = prior_check or fit_prior_check(fit)
    title = section_title(fit, label)
    figure_dir = Path(figure_dir) / (re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_") if label else fit.spec.name)
    blocks = [Block("h2", f"{title}: {fit.spec.description or fit.spec.outcome}")]
    blocks.append(Block("verdict", f"Diagnostics {'PASS' if diagnosis.passed else 'FAIL'}: {title}",
                        passed=diagnosis.passed, items=list(diagnosis.failed)))
    blocks.append(Block("p", prior_check_text(prior_check)[0].upper() + prior_check_text(prior_check)[1:]
                        + f" ({REPORT_DRAWS} prior draws on this fit's rows, with the priors it used)"))
    record = calibration(fit.spec.family).format()
    blocks.append(Block("p", record[0].upper() + record[1:] + " (`data/validation/sbc/`)"))
    blocks.append(Block("h3", "Model"))
    blocks.append(Block("pre", f"formula: {fit.prepared.formula}\nfamily: {fit.prepared.family}\n"
                               f"control arm: {fit.spec.control_arm}\nsampler: {fit.info.get('sampler', '')}"))
    blocks += [Block("p", note) for note in fit.prepared.notes]
    priors = graph_priors(fit)
    priors["how"] = priors["term"].map(fit.prior_reasons).fillna("")
    blocks.append(Block("table", "Priors as they reached the PyMC model", table=priors))
    blocks.append(Block("h3", "Data (observed; cells under %d persons suppressed)" % min_cell))
    blocks.append(Block("table", "", table=_readable(data_summary(fit, min_cell))))
    blocks += missing_outcome_blocks(fit, min_cell)
    blocks += response_blocks(fit, figure_dir, response_fit, min_cell)
    blocks += (_hazard_blocks(fit, figure_dir, min_cell) if fit.family.over_time
               else _effect_blocks(fit, figure_dir, queries, min_cell))
    blocks.append(Block("h3", "Posterior predictive checks"))
    for path, summary in ppc_mod.plot_ppc(fit, figure_dir, min_cell=min_cell):
        if path.suffix == ".png":
            blocks.append(Block("figure", summary, path=path))
    blocks.append(Block("h3", "Convergence diagnostics"))
    blocks.append(Block("pre", diagnosis.format()))
    if diagnosis.sensitivity is not None and not diagnosis.sensitivity.empty:
        blocks.append(Block("table", "Power-scaling sensitivity to prior and likelihood (psens; >= 0.05 is sensitive)",
                            table=_readable(diagnosis.sensitivity)))
    for path in diagnose_mod.plot_diagnostics(fit, figure_dir, diagnosis=diagnosis):
        if path.suffix == ".png":
            blocks.append(Block("figure", path.stem.replace("_", " "), path=path))
    blocks.append(Block("h3", "Software and seeds"))
    blocks.append(Block("pre", f"data hash: {fit.info.get('data_hash', '')}\nversions: {fit.info.get('versions', '')}\n"
                               f"created: {fit.info.get('created', '')}"))
    return blocks


def published_blocks(analysis) -> list[Block]:
    """A report section from `published.published_oss_analysis`: findings in words, tables, figures."""
    blocks = [Block("h2", "What the published Oss numbers support")]
    blocks += [Block("p", sentence) for sentence in analysis.sentences]
    blocks.append(Block("h3", "How these numbers were computed"))
    blocks += [Block("p", line) for line in analysis.methods]
    for name, table in analysis.tables.items():
        blocks.append(Block("table", name.replace("_", " "), table=_readable(table)))
    for name, paths in analysis.figures.items():
        blocks += [Block("figure", name.replace("_", " "), path=path) for path in paths if path.suffix == ".png"]
    return blocks


def sensitivity_blocks(analyses: list, figure_dir: Path, min_cell: int = query.MIN_CELL) -> list[Block]:
    """A report section with one part per delta-adjusted sensitivity analysis (`estimands.sensitivity`).

    Each part: the method line (shares missing, small counts hidden), warnings, the tipping point
    in words, the grid (thinned to about 21 rows) and the tipping-point figure.
    """
    if not analyses:
        return []
    blocks = [Block("h2", "Sensitivity to survey answers missing not at random"),
              Block("p", "The survey effects above assume that answers are missing at random (MAR): the model fills "
                         "in a non-responder's outcome from responders like them. Here the non-responders' imputed "
                         "outcomes are shifted by delta (a pattern-mixture, delta-adjusted analysis as in ICH E9(R1) "
                         "and R's rbmi, without refitting) to find how large a departure from MAR would change "
                         "the conclusion: the tipping point.")]
    for number, result in enumerate(analyses, start=1):
        blocks.append(Block("h3", f"{result.model}: {result.hypothesis} at wave {result.wave}"))
        blocks.append(Block("p", result.method_line(min_cell)))
        blocks += [Block("p", f"Warning: {warning}") for warning in result.warnings]
        sentence = result.sentence()
        blocks.append(Block("p", f"{sentence[0].upper()}{sentence[1:]}."))
        mar = result.mar
        blocks.append(Block("p", f"Missing at random (delta = 0): mean {mar['mean']:+.2f} {result.unit}, "
                                 f"{result.interval:.0%} interval {interval_texts([mar['lower']], [mar['upper']])[0]}, "
                                 f"P({result.hypothesis}) = {mar['p_hypothesis']:.3f}."))
        shown = sensitivity.thinned(result.grid, result.tipping_point)
        table = shown.assign(interval=interval_texts(shown["lower"], shown["upper"]),
                             tips=["tips" if t else "" for t in shown["tips"]]).drop(columns=["lower", "upper"])
        blocks.append(Block("table", f"Delta grid ({len(result.grid)} points, delta in {result.scale}; "
                                     f"{result.interval:.0%} intervals)", table=_readable(table)))
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{result.model}_{number}").strip("_")
        path = figures_mod.save_figure(sensitivity_plots.plot_delta_adjusted(result), Path(figure_dir) / "sensitivity",
                                       name)[0]
        blocks.append(Block("figure", f"sensitivity of {result.hypothesis} (wave {result.wave}) to delta", path=path))
    return blocks


def section_labels(fits: list[Fit], labels: list[str] | None = None) -> list[str]:
    """One distinct label per fit: the given labels (file names) or the spec names, numbered where repeated."""
    labels = list(labels) if labels is not None else [fit.spec.name for fit in fits]
    if len(labels) != len(fits):
        raise ValueError(f"{len(labels)} labels for {len(fits)} fits")
    seen: dict[str, int] = {}
    distinct = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        distinct.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return distinct


@dataclass
class FitSection:
    """One fit's part of a report: its line in the verdicts on the first screen and its section."""
    verdict: Block
    blocks: list[Block]


def fit_section(fit: Fit, figure_dir: Path, *, label: str, queries: list[dict] | None = None,
                min_cell: int = query.MIN_CELL, response_fit: Fit | None = None) -> FitSection:
    """Diagnose `fit`, check its priors, and build its verdict line and its section (`fit_blocks`)."""
    diagnosis = diagnose_mod.diagnose(fit, with_sensitivity=True)
    check = fit_prior_check(fit)
    verdict = Block("verdict", f"{section_title(fit, label)}: diagnostics {'PASS' if diagnosis.passed else 'FAIL'}"
                               f"; {prior_check_text(check)}{sbc_flag(fit)}",
                    passed=diagnosis.passed, items=list(diagnosis.failed))
    return FitSection(verdict, fit_blocks(fit, figure_dir, queries=queries, min_cell=min_cell, diagnosis=diagnosis,
                                          label=label, prior_check=check, response_fit=response_fit))


def _section_of(labelled: tuple[Fit, str], *, queries: dict[str, list[dict]], **options) -> FitSection:
    fit, label = labelled
    return fit_section(fit, label=label, queries=queries.get(fit.spec.name), **options)


def report_blocks(fits: list[Fit], figure_dir: Path, *, title: str = "bayes-trial report",
                  queries: dict[str, list[dict]] | None = None, min_cell: int = query.MIN_CELL,
                  extra: list[Block] | None = None, labels: list[str] | None = None,
                  jobs: int | None = None) -> list[Block]:
    """A whole report: title, every fit's verdict on the first screen, then one section per fit.

    Each fit is its own section with its own verdict, even when several fits share a spec name
    (e.g. two runs of `outflow` with different draws). `labels` name the sections, typically the fit
    files' names; by default the spec names, numbered where repeated. `queries` are keyed by spec name.
    The sections are built in up to `jobs` processes at once (default: one per available core;
    `core.parallel.map_forked`), with the same result as one after the other.
    """
    check_min_cell(min_cell)
    labels = section_labels(fits, labels)
    if parallel.worker_count(len(fits), jobs) > 1:
        for fit in fits:
            fit.idata  # noqa: B018  (read into memory once here, not from the same file by each worker)
    # Survey sections take response from a response-model fit among `fits`, when there is one.
    response_fit = next((fit for fit in fits if attrition.is_response_fit(fit)), None)
    build = functools.partial(_section_of, figure_dir=figure_dir, queries=queries or {}, min_cell=min_cell,
                              response_fit=response_fit)
    sections = parallel.map_forked(build, list(zip(fits, labels)), jobs)
    blocks = [Block("h1", title), *(section.verdict for section in sections)]
    for section in sections:
        blocks += section.blocks
    return blocks + list(extra or [])


def _md_table(table: pd.DataFrame) -> str:
    if table is None or table.empty:
        return "(none)"
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(cell, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_markdown(blocks: list[Block], relative_to: Path) -> str:
    """The report as Markdown, figure paths relative to `relative_to`."""
    out = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            out.append("#" * int(block.kind[1]) + " " + block.text)
        elif block.kind == "p":
            out.append(block.text)
        elif block.kind == "pre":
            out.append("```\n" + block.text + "\n```")
        elif block.kind == "table":
            out.append((f"**{block.text}**\n\n" if block.text else "") + _md_table(block.table))
        elif block.kind == "figure":
            out.append(f"![{block.text}]({os.path.relpath(block.path, relative_to)})\n\n*{block.text}*")
        elif block.kind == "verdict":
            mark = "✅" if block.passed else "❌ **FAILING FIT — do not use these estimates**"
            out.append(f"> {mark} {block.text}" + "".join(f"\n> - {item}" for item in block.items))
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.verdict{padding:.6em 1em;margin:.5em 0;border-radius:6px;font-weight:600}
.pass{background:#e6f4ea;border:2px solid #1e8e3e}.fail{background:#fce8e6;border:2px solid #d93025;color:#a50e0e}
.verdict ul{font-weight:normal;margin:.3em 0}
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-size:.9em;color:#555}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def render_html(blocks: list[Block]) -> str:
    """The report as one self-contained HTML page (figures embedded)."""
    title = next((b.text for b in blocks if b.kind == "h1"), "bayes-trial report")
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            out.append(f"<{block.kind}>{html.escape(block.text)}</{block.kind}>")
        elif block.kind == "p":
            out.append(f"<p>{html.escape(block.text)}</p>")
        elif block.kind == "pre":
            out.append(f"<pre>{html.escape(block.text)}</pre>")
        elif block.kind == "table":
            caption = f"<caption>{html.escape(block.text)}</caption>" if block.text else ""
            table = block.table if block.table is not None and not block.table.empty else pd.DataFrame({"": ["(none)"]})
            out.append(table.to_html(index=False, border=0, escape=True).replace("<thead>", caption + "<thead>", 1))
        elif block.kind == "figure":
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(block.text)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(block.text)}</figcaption></figure>")
        elif block.kind == "verdict":
            status = "pass" if block.passed else "fail"
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
            warning = "" if block.passed else " — do not use these estimates"
            out.append(f"<div class='verdict {status}'>{html.escape(block.text)}{warning}<ul>{items}</ul></div>")
    # Lets a headless browser (and the tests) see that the page ran without errors and drew its figures.
    out.append("<script>window.addEventListener('error',()=>{document.body.dataset.errors=(+document.body.dataset.errors||0)+1});"
               "window.addEventListener('load',()=>{const imgs=[...document.images];"
               "document.body.dataset.imagesLoaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
               "document.body.dataset.images=imgs.length;});</script>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(blocks: list[Block], out_dir: str | os.PathLike, name: str = "report") -> dict[str, Path]:
    """Write NAME.html (self-contained) and NAME.md into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / f"{name}.html", "md": out_dir / f"{name}.md"}
    page, markdown = render_html(blocks), render_markdown(blocks, out_dir)
    write_atomic(paths["html"], lambda handle: handle.write(page))
    write_atomic(paths["md"], lambda handle: handle.write(markdown))
    return paths


def report(fits: list[Fit], out_dir: str | os.PathLike, *, title: str = "bayes-trial report",
           queries: dict[str, list[dict]] | None = None, min_cell: int = query.MIN_CELL,
           extra: list[Block] | None = None, labels: list[str] | None = None, jobs: int | None = None) -> dict[str, Path]:
    """Build and write the report of `fits` (and `extra` sections) into `out_dir` (figures in out_dir/figures).

    One section per fit, titled by `labels` (e.g. the fit files' names) and spec name, built in up to
    `jobs` processes at once (default: one per available core); see `report_blocks`.
    """
    out_dir = Path(out_dir)
    blocks = report_blocks(fits, out_dir / "figures", title=title, queries=queries, min_cell=min_cell, extra=extra,
                           labels=labels, jobs=jobs)
    return write_report(blocks, out_dir)

