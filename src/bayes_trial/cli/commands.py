"""The `bayes-trial` command: a thin layer over the Python API.

Every user error (bad data, spec, prior or fit file) is printed as one line on stderr with exit
code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from pathlib import Path

from bayes_trial.core.errors import BayesTrialError, DataError, SpecError
from bayes_trial.core.summaries import interval_texts

EXIT_USER_ERROR = 2


def _add_sampler_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampler (defaults from the spec's [sampler] table)")
    group.add_argument("--draws", type=int, help="posterior draws per chain")
    group.add_argument("--tune", type=int, help="tuning (warm-up) iterations per chain")
    group.add_argument("--chains", type=int, help="number of chains")
    group.add_argument("--seed", type=int, help="random seed (same data, spec and seed give the same numbers)")
    group.add_argument("--sampler", choices=("nutpie", "pymc"), help="NUTS implementation (default nutpie)")
    group.add_argument("--target-accept", type=float, dest="target_accept", help="target acceptance rate")


def _add_batch_options(parser: argparse.ArgumentParser, seed_help: str) -> None:
    parser.add_argument("--out", required=True, help="results folder (rerunning the same command resumes there)")
    parser.add_argument("--seed", type=int, default=1, help=seed_help)
    parser.add_argument("--scheduler", help="Dask scheduler tcp://HOST:PORT (default: a local cluster, a worker per core)")
    parser.add_argument("--workers", type=int, help="workers of the local cluster (default: one per core)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    group = parser.add_argument_group("sampler, per refit")
    group.add_argument("--draws", type=int, help="posterior draws per chain")
    group.add_argument("--tune", type=int, help="tuning iterations per chain")
    group.add_argument("--chains", type=int, help="number of chains")


def _sampler_settings(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ("draws", "tune", "chains", "seed", "sampler", "target_accept")}


def _table_in_folder(folder: Path, table: str) -> Path | None:
    candidates = sorted(p for p in folder.iterdir() if p.stem == table and p.is_file())
    return candidates[0] if candidates else None


def resolve_data_path(path: str | Path, table: str) -> Path:
    """A data file, or a folder holding `survey.*` / `register.*` (as written by `simulate`)."""
    path = Path(path)
    if path.is_dir():
        found = _table_in_folder(path, table)
        if found is None:
            raise DataError(f"{path}: folder has no {table}.csv/.parquet/.sav/.dta file")
        return found
    return path


NEEDS_REGISTER = "the response model needs everyone randomised: give a folder with register.csv or --register FILE"


def resolve_register_path(spec, data: str | Path, register: str | None) -> Path | None:
    """The register that lists everyone randomised, for a survey spec: --register, or register.* beside the survey.

    None for register specs, and for survey specs without one (the response model then cannot be fitted).
    """
    from bayes_trial.data.contract import RESPONDED

    if spec.table != "survey":
        return None
    found = Path(register) if register else _table_in_folder(Path(data), "register") if Path(data).is_dir() else None
    if found is None and spec.outcome == RESPONDED:
        raise DataError(NEEDS_REGISTER)
    return found


def _add_data_options(parser: argparse.ArgumentParser, register: bool = False) -> None:
    group = parser.add_argument_group("reading your own data (see data/README.md)")
    if register:
        group.add_argument("--register", metavar="FILE",
                           help="survey models: the register listing everyone randomised, so that non-response counts "
                                "over all of them (default: register.* in the --data folder, if any); the response "
                                "model needs it")
    group.add_argument("--columns", metavar="SOURCE=TARGET,...",
                       help="map your column names to the data contract's, e.g. "
                            "'klantnummer=participant_id,gemeente=municipality,groep=arm,consulent=consultant_id'")
    group.add_argument("--control", metavar="ARM",
                       help="the control arm as written in the data (default: the spec's control_arm), e.g. controle")


def with_control(spec, args: argparse.Namespace):
    """`spec` with the control arm given by --control, if any."""
    import dataclasses

    control = getattr(args, "control", None)
    return dataclasses.replace(spec, control_arm=control) if control else spec


def load_for_spec(spec, path: str | Path, columns: str | None = None, register: str | None = None):
    """Read and validate the table that `spec` models; `columns` is the text of --columns.

    A survey is padded with everyone randomised (`data.contract.with_nonresponse`) when a register is
    known: `register` (--register) or register.* in the `path` folder.
    """
    from bayes_trial.data import contract as data
    from bayes_trial.data.columns import parse_column_mapping

    mapping = parse_column_mapping(columns, "--columns") if columns else None
    register_path = resolve_register_path(spec, path, register)
    path = resolve_data_path(path, spec.table)
    return data.load_for_spec(spec, path, columns=mapping, where="--columns", register=register_path)


def print_missing(fit) -> None:
    """The rows each arm and wave lost for a missing outcome (nothing when none were lost)."""
    from bayes_trial.modelling.frames import missing_outcomes

    table = missing_outcomes(fit)
    if table.empty or not table["n_dropped"].any():
        return
    shown = table.assign(wave=["" if w is None else w for w in table["wave"]])
    if not any(shown["wave"] != ""):
        shown = shown.drop(columns="wave")
    if fit.prepared.missing_over_randomised:
        print(f"\nDid not answer {fit.spec.outcome} (no survey row, or the answer left empty), of everyone randomised "
              "(per arm and wave):")
        print(shown.rename(columns={"n_dropped": "did not answer", "n_total": "randomised"}).to_string(index=False))
        return
    print(f"\nRows without {fit.spec.outcome}, left out of the fit (per arm{' and wave' if 'wave' in shown else ''}):")
    print(shown.rename(columns={"n_dropped": "left out", "n_total": "rows"}).to_string(index=False))


def cmd_simulate(args: argparse.Namespace) -> int:
    """`bayes-trial simulate`: write a simulated trial (survey, register, truth) from a design."""
    from bayes_trial.simulation.design import load_design
    from bayes_trial.simulation.generate import simulate, write_simulation

    design = load_design(args.design)
    sim = simulate(design, seed=args.seed)
    paths = write_simulation(sim, args.out)
    print(f"simulated design {design['name']!r} with seed {args.seed}: "
          f"{len(sim.register)} participants, {len(sim.survey)} survey responses")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def print_estimands(fit) -> None:
    """Print a fit's answers: arm and wave effects and variance components, or its outflow curves."""
    from bayes_trial.estimands import query

    print(f"\n{fit.spec.name}: {fit.spec.description or fit.spec.outcome}")
    from bayes_trial.modelling.frames import CONFOUNDED

    for note in fit.prepared.notes:
        print(f"  {'WARNING' if note.startswith(CONFOUNDED) else 'note'}: {note}")
    if fit.family.over_time:
        from bayes_trial.estimands.curves import format_outflow

        print(format_outflow(fit))
        return
    print("\nArm effects against control (outcome scale, 90% equal-tailed intervals):")
    print(query.format_table(query.effects(fit), "contrast"))
    time_effects = query.wave_effects(fit)
    if not time_effects.empty:
        print("\nWave effects (change from baseline in the control arm):")
        print(query.format_table(time_effects, "contrast"))
    components = query.variance_components(fit)
    if not components.empty:
        print("\nGroup-level standard deviations (link scale) and consultant share of variance:")
        print(query.format_table(components, "parameter"))


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit, store, then the diagnostics verdict (with its reasons when failing) before the estimates.

    Exit 0 whenever the fit is stored; with --strict, 1 if it fails its diagnostics (as `diagnose`).
    """
    _without_dask_arrays(("dask",))
    from bayes_trial.checks.diagnose import diagnose
    from bayes_trial.checks.records import record_checks
    from bayes_trial.modelling.spec import load_priors_file, load_spec, parse_prior_assignment
    from bayes_trial.sampling.fit import sample, save, storage_note

    spec = load_spec(args.spec)
    priors = load_priors_file(args.priors) if args.priors else {}
    priors.update(dict(parse_prior_assignment(text) for text in args.prior))
    spec = with_control(spec.with_priors(priors).with_sampler(**_sampler_settings(args)), args)
    frame = load_for_spec(spec, args.data, args.columns, args.register)
    fit = sample(spec, frame, progress=not args.quiet)
    diagnosis = diagnose(fit)
    record_checks(fit, diagnosis)
    path = save(fit, args.out)
    _print_verdict(f"\n{fit.spec.name} ({path})", diagnosis)
    if not diagnosis.passed:
        print(f"Do not use these estimates: refit with more --draws/--tune (or a higher --target-accept); "
              f"details: bayes-trial diagnose {path}")
    print_estimands(fit)
    print_missing(fit)
    note = storage_note(fit)
    if note:
        print(f"\n{note}")
    print(f"\nfit stored in {path} (diagnostics {diagnosis.verdict.upper()})")
    return 1 if args.strict and not diagnosis.passed else 0


def _parse_rope(text: str | None, unit: str | None = None) -> tuple[float, float] | None:
    """LOW,HIGH on the outcome scale; a unit written with them must be the outcome's `unit`."""
    if text is None:
        return None
    from bayes_trial.estimands.query import parse_threshold

    parts = text.split(",")
    if len(parts) != 2:
        example = "-0.02,0.02 or -2pp,2pp" if unit in (None, "pp") else f"-0.5,0.5 (in {unit})"
        raise BayesTrialError(f"--rope {text!r}: expected LOW,HIGH on the outcome scale, e.g. {example}")
    return tuple(sorted(parse_threshold(part, f"--rope {text!r}", unit) for part in parts))


def _whole_numbers(text: str, option: str, example: str) -> list[int]:
    """Comma-separated whole numbers given to `option`."""
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise SpecError(f"{option} {text!r}: expected comma-separated whole numbers, e.g. {example}") from None


def _json_records(table) -> list[dict]:
    """Table rows for JSON, with null where a town has no answer (NaN is not JSON)."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in table.to_dict(orient="records")]


def _answer_wave_line(fit, args: argparse.Namespace, table) -> str | None:
    """Which survey wave the answer is for, when the user did not choose one."""
    if args.wave is not None or args.by == "wave" or "wave" not in table or table.empty:
        return None
    answered = sorted({int(w) for w in table["wave"].dropna()})
    from bayes_trial.estimands.query import wave_label

    named = ", ".join(map(wave_label, answered))
    return (f"answered at wave {named}, the last wave; choose another with --wave, e.g. --wave t1"
            if answered else None)


def _without_dask_arrays(names: tuple[str, ...] = ("dask", "sparse")) -> None:
    """Keep dask and sparse (those in `names`) out of a process that answers from stored draws (unless already in it).

    xarray checks new arrays against dask's and sparse's array types, and with those installed the
    check imports dask.array, sparse and through it numba and SciPy: 1.3 s of a query's start on a
    loaded 2-core machine, for arrays that no answer makes. Marked absent (and xarray's record of
    what is installed cleared), xarray skips them as if they were not installed. A fit keeps out
    dask alone (numba loads sparse when it compiles): dask.array, and dask.distributed that writing
    the fit file imports to look for a scheduler.
    """
    for name in names:
        sys.modules.setdefault(name, None)
    _forget_installed_modules()


def _with_dask_arrays() -> None:
    """Undo `_without_dask_arrays`: before sampling (Bambi imports sparse), and when a command returns."""
    for name in ("dask", "sparse"):
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    _forget_installed_modules()


def _forget_installed_modules() -> None:
    from xarray.namedarray import utils

    getattr(utils.module_available, "cache_clear", lambda: None)()  # an xarray without the cache looks afresh


def cmd_query(args: argparse.Namespace) -> int:
    """`bayes-trial query`: the posterior probability of a hypothesis, per wave, month or town."""
    _without_dask_arrays()
    from bayes_trial.checks import diagnose
    from bayes_trial.estimands import query
    from bayes_trial.sampling.fit import load

    fit = load(args.fit)
    diagnosis = diagnose.verdict(fit)
    if args.strict and not diagnosis.passed:
        raise BayesTrialError(f"{args.fit}: diagnostics FAIL ({'; '.join(diagnosis.failed)}); --strict refuses to answer")
    if fit.family.over_time:
        return _query_hazard(fit, args, diagnosis)
    if args.month:
        raise BayesTrialError(f"{args.fit}: --month needs a discrete-time hazard fit (this is a {fit.spec.family} model)")
    if not args.expression:
        raise BayesTrialError("query: give an EXPRESSION such as 'intensive - control > 0'")
    table = query.hypothesis(fit, args.expression, by=args.by, wave=args.wave, municipality=args.municipality,
                             rope=_parse_rope(args.rope, fit.spec.outcome_unit), interval=args.interval)
    verdict = "PASS" if diagnosis.passed else "FAIL"
    wave_line = _answer_wave_line(fit, args, table)
    from bayes_trial.estimands.attrition import mar_assumption

    answered = sorted({int(w) for w in table["wave"].dropna()}) if "wave" in table else []
    assumption = mar_assumption(fit, answered) if answered else None
    if args.json:
        import json

        print(json.dumps({"fit": str(args.fit), "diagnostics": verdict, "diagnostic_messages": list(diagnosis.failed),
                          **({"note": wave_line} if wave_line else {}),
                          **({"missing_at_random": assumption} if assumption else {}), "results": _json_records(table)},
                         indent=2, default=str))
        return 0
    print(f"{fit.spec.name}: {args.expression}   [diagnostics {verdict}]")
    if not diagnosis.passed:
        print("WARNING: this fit FAILED its convergence diagnostics; do not rely on these numbers:")
        for message in diagnosis.failed:
            print(f"  - {message}")
    if wave_line:
        print(wave_line)
    print(_format_answers(table, args.interval))
    if assumption:
        print(assumption)
    return 0


def _format_answers(table, interval: float) -> str:
    """The query table for the terminal: '—' where a town has no answer, its note after the numbers."""
    import pandas as pd

    def number(value, spec: str) -> str:
        return "—" if pd.isna(value) else format(value, spec)

    shown = table.copy()
    shown[f"{interval:.0%} ETI"] = interval_texts(shown.pop("lower"), shown.pop("upper"))
    shown["mean"] = [number(m, "+.2f") for m in shown["mean"]]
    for column in ("p_hypothesis", "p_rope"):
        if column in shown:
            shown[column] = [number(p, ".3f") for p in shown[column]]
    notes = shown.pop("note") if "note" in shown else None
    shown = shown.drop(columns=["hypothesis", "interval"]).rename(columns={"p_hypothesis": "P(hypothesis)", "p_rope": "P(in ROPE)"})
    if notes is not None and notes.astype(bool).any():
        shown["note"] = notes
    return shown.to_string(index=False)


def _print_verdict(name: str, diagnosis) -> None:
    print(f"{name}   [diagnostics {'PASS' if diagnosis.passed else 'FAIL'}]")
    if not diagnosis.passed:
        print("WARNING: this fit FAILED its convergence diagnostics; do not rely on these numbers:")
        for message in diagnosis.failed:
            print(f"  - {message}")


def _query_hazard(fit, args: argparse.Namespace, diagnosis) -> int:
    from bayes_trial.estimands import curves as hazard

    months = args.month or [12, 16, 24]
    if args.wave is not None:
        raise BayesTrialError(f"{args.fit}: --wave applies to survey models; this hazard fit answers by month (--month)")
    if args.rope is not None:
        raise BayesTrialError(f"{args.fit}: --rope is not available for hazard fits")
    curves = hazard.outflow_curves(fit, by=args.by, municipality=args.municipality)
    note = hazard.new_town_note(fit, args.by)
    if args.expression:
        table = hazard.contrast_hypothesis(fit, args.expression, months, curves=curves, interval=args.interval)
        if args.json:
            import json

            print(json.dumps({"fit": str(args.fit), "diagnostics": diagnosis.verdict.upper(),
                              **({"note": note} if note else {}), "results": _json_records(table)}, indent=2,
                             default=str))
            return 0
        _print_verdict(f"{fit.spec.name}: {args.expression}", diagnosis)
        if note:
            print(f"note: {note}")
        print(_format_answers(table, args.interval))
        return 0
    if args.json:
        import json

        results = {name: function(fit, **({"months": months} if name != "median_time" else {}), curves=curves,
                                  interval=args.interval).to_dict(orient="records")
                   for name, function in (("cumulative_incidence", hazard.cumulative_incidence),
                                          ("contrasts", hazard.contrasts_at), ("median_time", hazard.median_time))}
        print(json.dumps({"fit": str(args.fit), "diagnostics": diagnosis.verdict.upper(), **({"note": note} if note else {}),
                          **results}, indent=2, default=str))
        return 0
    _print_verdict(fit.spec.name, diagnosis)
    print(hazard.format_outflow(fit, months, by=args.by, municipality=args.municipality, interval=args.interval))
    return 0


def cmd_what_if(args: argparse.Namespace) -> int:
    """`bayes-trial what-if`: a stored fit's answers under other priors, re-weighted (or refitted when k-hat is high)."""
    _without_dask_arrays()
    from bayes_trial.estimands.whatif import what_if
    from bayes_trial.modelling.spec import load_priors_file, parse_prior_assignment
    from bayes_trial.sampling.fit import load

    priors = load_priors_file(args.priors) if args.priors else {}
    priors.update(dict(parse_prior_assignment(text) for text in args.prior))
    if not priors:
        raise BayesTrialError("what-if: give a new prior, e.g. --prior 'arm=Normal(0, 0.25)'")
    fit = load(args.fit)
    settings = {"khat_threshold": args.khat_threshold, "interval": args.interval, "progress": not args.quiet}
    table = what_if(fit, priors, args.hypotheses or None, refit_if_needed=False, **settings)
    if not args.no_refit and table["khat"].iloc[0] > args.khat_threshold:
        _with_dask_arrays()
        table = what_if(fit, priors, args.hypotheses or None, refit_if_needed=True, **settings)
    old = fit.used_spec.priors
    print(f"{fit.spec.name}: what if " + "; ".join(f"{term} ~ {prior} (fitted with {old[term]})"
                                                    for term, prior in priors.items()))
    print(_what_if_method_line(table.iloc[0], args.khat_threshold))
    print(_format_what_if(table, args.interval))
    return 0


def _what_if_method_line(row, threshold: float) -> str:
    """How the new answers were made, and why (one line)."""
    weights = f"ESS of the weights {row['ess']:.0f} of {row['draws']} draws"
    if row["method"] == "refit":
        return (f"Pareto k-hat {row['khat']:.2f} > {threshold:g}: the stored draws cannot represent the new "
                f"posterior, so the model was refitted with the new priors ({row['seconds']:.1f} s; {weights})")
    if row["method"] == "unchanged":
        return "the prior is unchanged where the draws lie: the new answers are the fitted ones"
    verdict = "reliable" if row["khat"] <= threshold else "NOT reliable (refit with the new prior to be sure)"
    return (f"re-weighted the stored draws (PSIS): Pareto k-hat {row['khat']:.2f}, {verdict}; {weights}; "
            f"{row['seconds']:.2f} s")


def _format_what_if(table, interval: float) -> str:
    """Old and new answers side by side for the terminal."""
    shown = table[["hypothesis", *(["wave"] if "wave" in table else []), "unit"]].copy()
    for when in ("old", "new"):
        label = "fitted" if when == "old" else "what-if"
        shown[f"P {label}"] = [f"{p:.3f}" for p in table[f"p_{when}"]]
        shown[f"mean {label}"] = [f"{m:+.2f}" for m in table[f"mean_{when}"]]
        shown[f"{interval:.0%} ETI {label}"] = interval_texts(table[f"lower_{when}"], table[f"upper_{when}"])
    return shown.to_string(index=False)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """`bayes-trial sensitivity`: how far survey non-response may depart from MAR before a conclusion tips."""
    _without_dask_arrays()
    from bayes_trial.checks import diagnose
    from bayes_trial.estimands.sensitivity import delta_adjusted, parse_delta_option, thinned
    from bayes_trial.sampling.fit import load

    if not args.delta:
        raise BayesTrialError("sensitivity: give at least one --delta, e.g. --delta control=-2:2")
    deltas: dict[str, str] = {}
    for text in args.delta:
        arm, spec = parse_delta_option(text)
        if arm in deltas:
            raise BayesTrialError(f"--delta {text!r}: arm {arm!r} has a --delta already")
        deltas[arm] = spec
    fit = load(args.fit)
    result = delta_adjusted(fit, args.expression, deltas=deltas, wave=args.wave, threshold=args.threshold,
                            interval=args.interval)
    diagnosis = diagnose.verdict(fit)
    files = _write_sensitivity(result, args.out) if args.out else []
    if args.json:
        import json
        from dataclasses import asdict

        point = result.tipping_point
        print(json.dumps({"fit": str(args.fit), "diagnostics": "PASS" if diagnosis.passed else "FAIL",
                          "diagnostic_messages": list(diagnosis.failed), "hypothesis": result.hypothesis, "wave": result.wave,
                          "delta_scale": result.scale, "method": result.method_line(), "warnings": list(result.warnings),
                          "mar": result.mar, "tipping_point": asdict(point) if point else None,
                          "sentence": result.sentence(), "grid": _json_records(result.grid),
                          "files": [str(f) for f in files]}, indent=2, default=str))
        return 0
    _print_verdict(f"{fit.spec.name}: {result.hypothesis} at wave {result.wave}", diagnosis)
    print(result.method_line())
    for warning in result.warnings:
        print(f"WARNING: {warning}")
    mar = result.mar
    print(f"Missing at random (delta = 0): mean {mar['mean']:+.2f} {result.unit}, {result.interval:.0%} ETI "
          f"{interval_texts([mar['lower']], [mar['upper']])[0]}, P = {mar['p_hypothesis']:.3f}")
    shown = thinned(result.grid, result.tipping_point)
    print(f"\nDelta grid ({len(result.grid)} points{'' if len(shown) == len(result.grid) else f', {len(shown)} shown'}; "
          f"delta in {result.scale}):")
    print(_format_sensitivity(shown, result.interval))
    print(f"\n{result.sentence()[0].upper()}{result.sentence()[1:]}.")
    for path in files:
        print(f"  {path}")
    return 0


def _write_sensitivity(result, out: str) -> list[Path]:
    """The grid as sensitivity.csv and the figure as sensitivity.png/.svg in `out`."""
    from bayes_trial.plots.figures import save_figure
    from bayes_trial.plots.sensitivity import plot_delta_adjusted

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "sensitivity.csv"
    result.grid.assign(hypothesis=result.hypothesis, wave=result.wave, unit=result.unit,
                       delta_scale=result.scale).to_csv(table, index=False)
    return [table, *save_figure(plot_delta_adjusted(result), folder, "sensitivity")]


def _format_sensitivity(grid, interval: float) -> str:
    """Grid rows for the terminal: deltas, mean, interval, P(hypothesis) and where the conclusion tips."""
    shown = grid[[c for c in grid.columns if c.startswith("delta_")]].map(lambda v: "0" if v == 0 else f"{v:+g}")
    shown["mean"] = [f"{m:+.2f}" for m in grid["mean"]]
    shown[f"{interval:.0%} ETI"] = interval_texts(grid["lower"], grid["upper"])
    shown["P(hypothesis)"] = [f"{p:.3f}" for p in grid["p_hypothesis"]]
    shown["tips"] = ["tips" if t else "" for t in grid["tips"]]
    return shown.to_string(index=False)


def cmd_diagnose(args: argparse.Namespace) -> int:
    """`bayes-trial diagnose`: the convergence verdict of a stored fit (exit 1 on FAIL)."""
    if not args.plots and not args.sensitivity:  # those need ArviZ, PyMC and what they bring
        _without_dask_arrays()
    from bayes_trial.checks import diagnose
    from bayes_trial.sampling.fit import load

    fit = load(args.fit)
    diagnosis = diagnose.diagnose(fit, with_sensitivity=args.sensitivity, worst=args.worst)
    if args.json:
        print(diagnosis.to_json())
    else:
        print(diagnosis.format())
        if args.plots:
            for path in diagnose.plot_diagnostics(fit, args.plots, diagnosis=diagnosis):
                print(f"  figure: {path}")
    return 0 if diagnosis.passed else 1


def cmd_ppc(args: argparse.Namespace) -> int:
    """`bayes-trial ppc`: posterior predictive checks of a stored fit, with figures."""
    from bayes_trial.checks import ppc
    from bayes_trial.sampling.fit import load

    fit = load(args.fit)
    predictive = ppc.posterior_predictive(fit, max_draws=args.draws)
    for line in ppc.summarise(fit, predictive, min_cell=args.min_cell):
        print(line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ppc.test_statistics(fit, predictive, min_cell=args.min_cell).to_csv(out / "ppc_statistics.csv", index=False)
    for path, summary in ppc.plot_ppc(fit, out, predictive, min_cell=args.min_cell):
        print(f"  {path}: {summary}")
    print(f"  {out / 'ppc_statistics.csv'}")
    return 0


def _spec_with_priors(args: argparse.Namespace):
    from bayes_trial.modelling.spec import load_priors_file, load_spec, parse_prior_assignment

    spec = load_spec(args.spec)
    priors = load_priors_file(args.priors) if args.priors else {}
    priors.update(dict(parse_prior_assignment(text) for text in args.prior))
    return with_control(spec.with_priors(priors), args)


def cmd_priors(args: argparse.Namespace) -> int:
    """`bayes-trial priors`: the priors of a spec, resolved on data when given."""
    from bayes_trial.checks.priors import format_prior_table, prior_table

    spec = _spec_with_priors(args)
    frame = load_for_spec(spec, args.data, args.columns, args.register) if args.data else None
    print(format_prior_table(prior_table(spec, frame)))
    if frame is None:
        print("(auto priors are scaled to the outcome: give --data to see their values and why)")
        return 0
    from bayes_trial.modelling.frames import prepare
    from bayes_trial.modelling.parametrisation import choose

    for choice in choose(spec, prepare(spec, frame)).values():
        print(f"group effects {choice.term}: {choice.parametrisation} ({choice.set_by}: {choice.reason})")
    return 0


def cmd_prior_check(args: argparse.Namespace) -> int:
    """The check's tables, then its verdict; exit 0 PASS, 1 FAIL (as `diagnose`)."""
    from bayes_trial.checks.priors import format_prior_check, plot_prior_check, prior_check

    spec = _spec_with_priors(args)
    frame = load_for_spec(spec, args.data, args.columns, args.register)
    result = prior_check(spec, frame, draws=args.draws, seed=args.seed, implausible=args.implausible)
    print(format_prior_check(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / f"prior_check_{spec.name}.csv"
    result.summary.to_csv(table, index=False)
    for path in [*plot_prior_check(result, out), table]:
        print(f"  {path}")
    print(f"\n{spec.name}: {result.verdict.format()}")
    return 0 if result.verdict.passed else 1


def cmd_compare(args: argparse.Namespace) -> int:
    """`bayes-trial compare`: LOO (or leave-one-town-out) comparison of stored fits."""
    from bayes_trial.checks.compare import compare, format_comparison, load_fits, plot_compare

    if len(args.fits) < 2:
        raise BayesTrialError("compare needs at least two fit files")
    comparison = compare(load_fits(args.fits), lomo=args.lomo, progress=not args.quiet,
                         **{k: v for k, v in _sampler_settings(args).items() if v is not None})
    print(format_comparison(comparison))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"estimands": comparison.estimands, "spec_diff": comparison.spec_diff, "loo": comparison.loo}
    if comparison.lomo is not None:
        tables["lomo"] = comparison.lomo
    for name, table in tables.items():
        table.reset_index(drop=table.index.name is None).to_csv(out / f"{name}.csv", index=False)
        print(f"  {out / name}.csv")
    for path in plot_compare(comparison, out):
        print(f"  {path}")
    return 0


def cmd_pool(args: argparse.Namespace) -> int:
    """`bayes-trial pool`: partial pooling of published town estimates or counts."""
    from bayes_trial.data.readers import read_table
    from bayes_trial.aggregate.pooling import format_pooling_summary, plot_forest, pool, pool_counts, pooling_summary

    table = read_table(args.file)
    prior = "flat" if args.flat else {name: text for name, text in (item.split("=", 1) for item in args.prior)} or None
    settings = {k: getattr(args, k) for k in ("draws", "tune", "chains", "seed")}
    if {"estimate", "se"} <= set(table.columns):
        idata = pool(table, prior=prior, unit=args.unit, **settings)
    elif args.control_arm is None:
        raise BayesTrialError(f"{args.file}: counts per arm need --control-arm (columns: {', '.join(map(str, table.columns))})")
    else:
        idata = pool_counts(table, args.control_arm, prior=prior, **settings)
    summary = pooling_summary(idata, prob=args.prob)
    print(format_pooling_summary(summary))
    if args.plot:
        for path in plot_forest(summary, args.plot):
            print(f"  {path}")
    return 0


def cmd_published_oss(args: argparse.Namespace) -> int:
    """`bayes-trial published-oss`: the analysis of the printed Oss numbers."""
    from bayes_trial.aggregate.published import format_analysis, published_oss_analysis

    result = published_oss_analysis(args.out, seed=args.seed)
    print(format_analysis(result))
    if args.out:
        path = Path(args.out) / "published_oss.md"
        path.write_text(result.to_markdown(), encoding="utf-8")
        print(f"\nwritten: {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`bayes-trial report`: the report of stored fits, one section per file."""
    from bayes_trial.sampling.fit import load
    from bayes_trial.report.document import report

    fits = [load(path) for path in args.fits]
    # Sections are titled by file name, or by the path as given where two files share a name.
    names = [Path(path).name for path in args.fits]
    labels = [name if names.count(name) == 1 else str(path) for path, name in zip(args.fits, names)]
    paths = report(fits, args.out, title=args.title, min_cell=args.min_cell, labels=labels, jobs=args.jobs)
    print(f"report written: {paths['html']} and {paths['md']}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """`bayes-trial cache info|clear|warm`: the compiled models kept between processes."""
    from bayes_trial.core import compile_dir

    if args.action == "warm":
        import time

        from bayes_trial.sampling.warm import DEFAULT_ARMS, warm_cache

        started = time.perf_counter()
        arms = tuple(_whole_numbers(args.arms, "--arms", "2,3,4,5")) if args.arms else DEFAULT_ARMS
        done = warm_cache(args.spec or None, arms, progress=not args.quiet)
        compiled = sum(row.outcome == "compiled" for row in done)
        print(f"{compiled} compiled, {sum(row.arms is not None for row in done) - compiled} already compiled, "
              f"{sum(row.arms is None for row in done)} specs skipped, in {time.perf_counter() - started:.0f} s; "
              f"under {compile_dir.compile_dir()}")
        return 0
    if args.action == "clear":
        freed = compile_dir.clear_cache(all_stacks=args.all)
        print(f"removed {freed / 1e6:.1f} MB of compiled models under {compile_dir.cache_root()}")
        return 0
    print(f"compiled models: {compile_dir.cache_root()} (this stack: {compile_dir.stack_name()})")
    rows = compile_dir.cache_info()
    for row in rows:
        print(f"  {row['stack']}{' (current)' if row['current'] else ''}: {row['files']} files, {row['bytes'] / 1e6:.1f} MB")
    if not rows:
        print("  empty: the first fit of each model structure compiles it")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`bayes-trial run`: a workflow file end to end."""
    from bayes_trial.data.columns import parse_column_mapping
    from bayes_trial.workflow.runner import load_workflow, run

    columns = parse_column_mapping(args.columns, "--columns") if args.columns else None
    paths = run(load_workflow(args.workflow, columns=columns, control_arm=args.control), progress=not args.quiet)
    print(f"report: {paths['html']}")
    return 0


def _print_table(title: str, table, failed: dict[str, str], files: dict) -> None:
    print(title)
    print(table.to_string(index=False) if len(table) else "(no completed fits)")
    for key, error in failed.items():
        print(f"failed {key}: {error}", file=sys.stderr)
    if files:
        print("written: " + ", ".join(str(path) for path in files.values()))


def _batch_settings(args: argparse.Namespace) -> dict:
    return {"scheduler": args.scheduler, "n_workers": args.workers, "progress": not args.quiet,
            **{k: getattr(args, k) for k in ("draws", "tune", "chains")}}


def cmd_sbc(args: argparse.Namespace) -> int:
    """`bayes-trial sbc`: simulation-based calibration of a spec on the batch engine."""
    from bayes_trial.batch.sbc import sbc

    result = sbc(args.spec, args.design, sims=args.sims, out=args.out, seed=args.seed, refit=args.refit,
                 **_batch_settings(args))
    _print_table(f"SBC of {args.spec} on design {args.design}: {len(result.fits)} fits, {len(result.failed)} failed "
                 "(chi-square test of uniform ranks; in_band: rank ECDF inside the simultaneous 95% band; "
                 "in_adjusted_band: inside the band adjusted for the number of parameters, which decides a failed run)",
                 result.summary, result.failed, result.files)
    return 0


def cmd_recovery(args: argparse.Namespace) -> int:
    """`bayes-trial recovery`: recovery of known values over simulated trials."""
    from bayes_trial.batch.recovery import recovery

    result = recovery(args.spec, args.design, sims=args.sims, out=args.out, seed=args.seed,
                      reference=not args.no_reference, **_batch_settings(args))
    _print_table(f"Recovery of {args.spec} on design {args.design}: {len(result.failed)} failed fits",
                 result.coverage, result.failed, result.files)
    if not args.no_reference and len(result.reference):
        print("\nAgainst the frequentist reference (statsmodels MixedLM / GLM):")
        print(result.reference.to_string(index=False))
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    """`bayes-trial power`: the share of simulated trials whose answer reaches the threshold."""
    from bayes_trial.batch.power import power

    sizes = _whole_numbers(args.n_per_arm, "--n-per-arm", "50,100,200")
    result = power(args.design, n_per_arm=sizes, target=args.target, threshold=args.threshold, sims=args.sims,
                   spec=args.spec, out=args.out, seed=args.seed, wave=args.wave, effect_sd=args.effect_sd,
                   **_batch_settings(args))
    what = "assurance" if args.effect_sd else "power"
    _print_table(f"{what.capitalize()} of P({args.target}) >= {args.threshold:g} on design {args.design} "
                 f"(model {args.spec}; 95% Wilson intervals)", result.table, result.failed, result.files)
    return 0


def _wave_argument(text: str) -> int:
    from bayes_trial.data.contract import wave_number

    try:
        return wave_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a wave (expected e.g. 2, t2 or T2)") from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every argument error as one line `bayes-trial: error: ...` (exit 2), no usage dump."""

    def error(self, message: str):
        command = self.prog.removeprefix("bayes-trial").strip()
        where = f"{command}: " if command else ""
        hint = f"see 'bayes-trial {command} --help'" if command else "see 'bayes-trial --help'"
        self.exit(EXIT_USER_ERROR, f"bayes-trial: error: {where}{' '.join(message.split())} ({hint})\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `bayes-trial` command."""
    parser = ArgumentParser(
        prog="bayes-trial",
        description="Bayesian hierarchical models for multi-site randomised social-policy trials.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="simulate a trial with known true parameters")
    p.add_argument("--design", required=True, help="design name (data/designs/NAME.toml) or path to a design TOML")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", required=True, help="folder for survey.csv, register.csv and truth.json")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("fit", help="fit a model spec to trial data, store the posterior, print the diagnostics verdict "
                                   "and the estimates")
    p.add_argument("spec", help="model spec name (models/NAME.toml) or path")
    p.add_argument("--data", required=True, help="data file, or a folder with survey.csv / register.csv")
    p.add_argument("--out", required=True, help="where to store the fit (netCDF, e.g. fits/outflow.nc)")
    p.add_argument("--prior", action="append", default=[], metavar="TERM=DIST",
                   help="override a prior, e.g. 'arm=Normal(0, 0.5)' or '1|municipality:consultant_id=HalfNormal(0.3)'")
    p.add_argument("--priors", help="TOML file of priors (TERM = \"Distribution(...)\") applied over the spec's")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when the fit fails its convergence diagnostics (it is stored all the same); "
                        "without it the exit code is 0 for every stored fit and the verdict is printed")
    _add_data_options(p, register=True)
    _add_sampler_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("query", help="posterior probability of a hypothesis about arms, on the outcome scale")
    p.add_argument("fit", help="stored fit (.nc)")
    p.add_argument("expression", nargs="?",
                   help="e.g. 'intensive - control > 0' or \"'eigen regie' - controle > 2pp\" (arm labels with "
                        "spaces in quotes or with underscores; thresholds in the outcome's unit)")
    p.add_argument("--month", type=int, action="append", default=[],
                   help="hazard fits: month(s) to answer at (default 12, 16, 24)")
    p.add_argument("--by", choices=("municipality", "wave"),
                   help="one answer per town (plus a new town) or per wave; a town gets answers only for arms it ran")
    p.add_argument("--wave", help="survey wave to answer at, as in the data (2, t2 or T2; default: the last, and the "
                                  "output says which)")
    p.add_argument("--municipality", help="one town, or 'new' for a town drawn from the fitted town distribution "
                                          "(needs a fit with two or more towns)")
    p.add_argument("--rope", help="region of practical equivalence LOW,HIGH on the outcome scale (write --rope=-2pp,2pp)")
    p.add_argument("--interval", type=float, default=0.9, help="equal-tailed interval width (default 0.9)")
    p.add_argument("--strict", action="store_true", help="refuse to answer from a fit that fails its diagnostics")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("what-if", help="a stored fit's answers under other priors, by re-weighting its draws "
                                       "(PSIS; refits when Pareto k-hat is too high)")
    p.add_argument("fit", help="stored fit (.nc)")
    p.add_argument("hypotheses", nargs="*", metavar="HYPOTHESIS",
                   help="as `query` reads them, e.g. 'intensive - control > 2pp' (default: each arm - control > 0)")
    p.add_argument("--prior", action="append", default=[], metavar="TERM=DIST",
                   help="new prior, e.g. 'arm=Normal(0, 0.25)' or '1|municipality=HalfNormal(0.3)' (repeatable)")
    p.add_argument("--priors", help="TOML file of new priors (TERM = \"Distribution(...)\")")
    p.add_argument("--khat-threshold", type=float, default=0.7, dest="khat_threshold",
                   help="refit when Pareto k-hat exceeds this (default 0.7)")
    p.add_argument("--no-refit", action="store_true", dest="no_refit",
                   help="never refit: re-weighted answers whatever k-hat is (it is printed)")
    p.add_argument("--interval", type=float, default=0.9, help="equal-tailed interval width (default 0.9)")
    p.add_argument("--quiet", action="store_true", help="no progress output during a refit")
    p.set_defaults(func=cmd_what_if, trailing="hypotheses")

    p = sub.add_parser("sensitivity", help="survey answers missing not at random: delta-adjusted (pattern-mixture) "
                                           "answers over a grid of shifts, and the tipping point")
    p.add_argument("fit", help="stored fit of a survey outcome (.nc)")
    p.add_argument("expression", help="as `query` reads it, e.g. 'intensive - control > 0'")
    p.add_argument("--delta", action="append", default=[], metavar="ARM=LOW:HIGH[:STEP]",
                   help="shift of ARM's non-responders' imputed outcomes: a range LOW:HIGH (step (HIGH-LOW)/20, "
                        "rounded), LOW:HIGH:STEP or one VALUE; score points for scores, link scale otherwise "
                        "(repeat for more arms: a product grid)")
    p.add_argument("--wave", help="survey wave (2, t2 or T2; default the last)")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="the conclusion tips when P(hypothesis) falls below this (default 0.9)")
    p.add_argument("--interval", type=float, default=0.9,
                   help="equal-tailed interval width (default 0.9); the conclusion also tips when it includes "
                        "the hypothesis' threshold")
    p.add_argument("--out", help="folder for sensitivity.csv and the figure sensitivity.png/.svg")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("diagnose", help="convergence diagnostics verdict (exit 0 pass, 1 fail)")
    p.add_argument("fit", help="stored fit (.nc)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plots", help="folder for rank, trace and energy plots of the worst parameters")
    p.add_argument("--sensitivity", action="store_true", help="add power-scaling prior/likelihood sensitivity")
    p.add_argument("--worst", type=int, default=5, help="how many worst parameters to name (default 5)")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("ppc", help="posterior predictive checks suited to the outcome's family")
    p.add_argument("fit", help="stored fit (.nc)")
    p.add_argument("--out", required=True, help="folder for figures and ppc_statistics.csv")
    p.add_argument("--draws", type=int, default=1000, help="posterior draws used for predictions (default 1000)")
    p.add_argument("--min-cell", type=int, default=10, dest="min_cell", help="suppress groups with fewer persons")
    p.set_defaults(func=cmd_ppc)

    for name, func, help_text in (("priors", cmd_priors, "every prior a spec uses; with --data, what each auto prior "
                                                          "became and why"),
                                  ("prior-check", cmd_prior_check, "prior predictive check on the outcome scale with a "
                                                                   "PASS/FAIL verdict (exit 1 on FAIL)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("spec", help="model spec name or path")
        p.add_argument("--data", required=name == "prior-check", help="data file or folder")
        p.add_argument("--prior", action="append", default=[], metavar="TERM=DIST", help="override a prior")
        p.add_argument("--priors", help="TOML file of priors")
        if name == "prior-check":
            p.add_argument("--out", required=True, help="folder for figures and the summary table")
            p.add_argument("--draws", type=int, default=500, help="prior draws (default 500)")
            p.add_argument("--seed", type=int, help="random seed")
            p.add_argument("--implausible", type=float, metavar="SIZE",
                           help="effect size (outcome unit: pp for binary) the prior should make unlikely; "
                                "default the spec's implausible_effect, else 30 pp, 30%% of a score's range, 2 SDs")
        _add_data_options(p, register=True)
        p.set_defaults(func=func)

    p = sub.add_parser("compare", help="compare fits: estimands, spec differences, PSIS-LOO, leave-one-town-out")
    p.add_argument("fits", nargs="+", help="two or more stored fits (.nc)")
    p.add_argument("--out", required=True, help="folder for tables and the overlay figure")
    p.add_argument("--lomo", action="store_true", help="leave-one-municipality-out cross-validation (refits)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_sampler_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("pool", help="pool reported town effects (estimate, se) or counts per arm across towns")
    p.add_argument("file", help="CSV with group, estimate, se  or  group, arm, n, events")
    p.add_argument("--prior", action="append", default=[], metavar="PARAM=DIST", help="e.g. tau=HalfNormal(5)")
    p.add_argument("--flat", action="store_true", help="flat priors (as in BDA's eight schools)")
    p.add_argument("--control-arm", "--control", dest="control_arm", help="control arm label for counts per arm")
    p.add_argument("--unit", default="", help="unit of the estimates, for printing")
    p.add_argument("--prob", type=float, default=0.9, help="interval width (default 0.9)")
    p.add_argument("--plot", help="path for the forest plot (PNG and SVG)")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_pool)

    p = sub.add_parser("published-oss", help="Bayesian re-analysis of the printed Oss (and Nijmegen) numbers")
    p.add_argument("--out", help="folder for tables, figures and published_oss.md")
    p.add_argument("--seed", type=int, default=2024)
    p.set_defaults(func=cmd_published_oss)

    p = sub.add_parser("report", help="HTML + Markdown report of one or more stored fits")
    p.add_argument("fits", nargs="+", help="stored fits (.nc); one section per file, each with its own verdict")
    p.add_argument("--out", required=True, help="folder for report.html, report.md and figures/")
    p.add_argument("--title", default="bayes-trial report")
    p.add_argument("--min-cell", type=int, default=10, dest="min_cell",
                   help="suppress observed cells with fewer persons (default 10, never below 5)")
    p.add_argument("--jobs", type=int, help="fits reported on at once, one process each (default: one per core)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("cache", help="compiled models kept between processes: where, how large; clear them; "
                                     "compile the bundled specs beforehand (warm)")
    p.add_argument("action", choices=("info", "clear", "warm"))
    p.add_argument("--all", action="store_true", help="clear: also the caches of other Python/PyTensor/numba/nutpie versions")
    p.add_argument("--arms", help="warm: comma-separated numbers of arms to compile for (default 2,3,4,5)")
    p.add_argument("--spec", action="append",
                   help="warm: a spec name or file (repeatable; default every bundled spec whose compiled model "
                        "serves any data layout)")
    p.add_argument("--quiet", action="store_true", help="warm: no progress output")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("run", help="run a workflow (workflows/NAME.toml): data, fits, queries, report")
    p.add_argument("workflow", help="workflow TOML file or bundled name (e.g. oss_demo)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_data_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sbc", help="simulation-based calibration: prior draws, simulated data, refits, rank plots")
    p.add_argument("spec", help="model spec name or path")
    p.add_argument("--design", required=True, help="design whose trial layout is simulated (name or TOML path)")
    p.add_argument("--sims", type=int, default=200, help="prior draws / refits (default 200)")
    p.add_argument("--refit", choices=("compiled", "fit"), default="compiled",
                   help="one compiled model per worker (default), or every refit through `fit` (fast paths included)")
    _add_batch_options(p, seed_help="seed of the layout and the prior draws (default 1)")
    p.set_defaults(func=cmd_sbc)

    p = sub.add_parser("recovery", help="fit many simulated trials: bias, 50%%/90%% coverage, MixedLM/GLM reference")
    p.add_argument("spec", help="model spec name or path")
    p.add_argument("--design", required=True, help="design name or TOML path (its parameters are the truth)")
    p.add_argument("--sims", type=int, default=50, help="simulated trials (default 50)")
    p.add_argument("--no-reference", action="store_true", dest="no_reference", help="skip the statsmodels reference fits")
    _add_batch_options(p, seed_help="seed of the first simulated trial (default 1)")
    p.set_defaults(func=cmd_recovery)

    p = sub.add_parser("power", help="power / assurance of the next trial by simulation and refitting")
    p.add_argument("--design", required=True, help="design name or TOML path")
    p.add_argument("--spec", default="outflow", help="model spec fitted to each simulated trial (default outflow)")
    p.add_argument("--n-per-arm", dest="n_per_arm", default="50,100,200,400", help="sizes, e.g. 50,100,200,400")
    p.add_argument("--target", default="intensive - control > 0",
                   help="contrast as `query` reads it, e.g. 'intensive - control > 2pp' (default '... > 0')")
    p.add_argument("--threshold", type=float, default=0.95, help="decision: P(target) >= this (default 0.95)")
    p.add_argument("--sims", type=int, default=100, help="simulated trials per size (default 100)")
    p.add_argument("--wave", type=_wave_argument, help="survey outcomes: wave of the decision, 2, t2 or T2 (default the last)")
    p.add_argument("--effect-sd", type=float, default=0.0, dest="effect_sd",
                   help="assurance: SD of the true effects around the design's (link scale; default 0 = power)")
    _add_batch_options(p, seed_help="simulation seed (default 1)")
    p.set_defaults(func=cmd_power)
    return parser


def _looks_like_option(value: str) -> bool:
    """`--x`, `-x` (but not a hypothesis such as "-intensive + control > 0", which has spaces)."""
    return value.startswith("-") and " " not in value


def run() -> None:
    """`bayes-trial` as a process: `main`, then exit with its status without tearing the interpreter down.

    After a command that loaded PyMC, PyTensor, numba and nutpie, Python's teardown of their modules
    and some 400,000 objects took 0.75 s of a 5.6 s refit, after the answer was printed and the fit
    written. Every command closes the files it writes before returning, so the process ends right
    after the exit handlers (registered later than this one, they run before it), logging and the
    standard streams are flushed.
    """
    status = [1]  # an exception escaping `main` (its traceback already printed) exits 1, as Python would

    def exit_now() -> None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status[0])

    atexit.register(exit_now)
    try:
        status[0] = main()
    except SystemExit as stop:  # argparse: --help, usage errors
        status[0] = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        raise
    raise SystemExit(status[0])


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit code 2, never a traceback."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse gives a `nargs="*"` positional its values at the first positional it meets, so the
    # hypotheses after `what-if FIT --prior ...` come back unrecognised: they are the command's
    # trailing values. Anything else unrecognised (or option-like) is the usual one-line error.
    trailing = getattr(args, "trailing", None)
    if extra and (trailing is None or any(_looks_like_option(value) for value in extra)):
        parser.parse_args(argv)
    if extra:
        getattr(args, trailing).extend(extra)
    try:
        return args.func(args)
    except BayesTrialError as exc:
        print(f"bayes-trial: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("bayes-trial: interrupted; stored files are left as they were", file=sys.stderr)
        return 130
    finally:
        _with_dask_arrays()  # `main` called in a longer-lived process (a notebook, tests) leaves dask importable

