"""The `bayes-trial` command: a thin layer over the Python API.

Every user error (bad data, spec, prior or fit file) is printed as one line on stderr with exit
code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import BayesTrialError, DataError

EXIT_USER_ERROR = 2


def _add_sampler_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampler (defaults from the spec's [sampler] table)")
    group.add_argument("--draws", type=int, help="posterior draws per chain")
    group.add_argument("--tune", type=int, help="tuning (warm-up) iterations per chain")
    group.add_argument("--chains", type=int, help="number of chains")
    group.add_argument("--seed", type=int, help="random seed (same data, spec and seed give the same numbers)")
    group.add_argument("--sampler", choices=("nutpie", "pymc"), help="NUTS implementation (default nutpie)")
    group.add_argument("--target-accept", type=float, dest="target_accept", help="target acceptance rate")


def _sampler_settings(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ("draws", "tune", "chains", "seed", "sampler", "target_accept")}


def resolve_data_path(path: str | Path, table: str) -> Path:
    """A data file, or a folder holding `survey.*` / `register.*` (as written by `simulate`)."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.stem == table and p.is_file())
        if not candidates:
            raise DataError(f"{path}: folder has no {table}.csv/.parquet/.sav/.dta file")
        return candidates[0]
    return path


def load_for_spec(spec, path: str | Path):
    """Read and validate the table that `spec` models."""
    from . import data

    path = resolve_data_path(path, spec.table)
    if spec.table == "survey":
        return data.load_survey(path, outcomes={spec.outcome: tuple(spec.bounds)}, control_arm=spec.control_arm)
    return data.load_register(path, control_arm=spec.control_arm)


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import load_design, simulate, write_simulation

    design = load_design(args.design)
    sim = simulate(design, seed=args.seed)
    paths = write_simulation(sim, args.out)
    print(f"simulated design {design['name']!r} with seed {args.seed}: "
          f"{len(sim.register)} participants, {len(sim.survey)} survey responses")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def print_estimands(fit) -> None:
    from . import query

    print(f"\n{fit.spec.name}: {fit.spec.description or fit.spec.outcome}")
    for note in fit.prepared.notes:
        print(f"  note: {note}")
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
    from .fit import sample, save
    from .spec import load_priors_file, load_spec, parse_prior_assignment

    spec = load_spec(args.spec)
    priors = load_priors_file(args.priors) if args.priors else {}
    priors.update(dict(parse_prior_assignment(text) for text in args.prior))
    spec = spec.with_priors(priors).with_sampler(**_sampler_settings(args))
    frame = load_for_spec(spec, args.data)
    fit = sample(spec, frame, progress=not args.quiet)
    path = save(fit, args.out)
    print_estimands(fit)
    print(f"\nfit stored in {path}")
    return 0


def _parse_rope(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    from .query import _parse_threshold

    parts = text.split(",")
    if len(parts) != 2:
        raise BayesTrialError(f"--rope {text!r}: expected LOW,HIGH on the outcome scale, e.g. -0.02,0.02 or -2pp,2pp")
    return tuple(sorted(_parse_threshold(part, f"--rope {text}") for part in parts))


def cmd_query(args: argparse.Namespace) -> int:
    from . import diagnose, query
    from .fit import load

    fit = load(args.fit)
    diagnosis = diagnose.diagnose(fit)
    if args.strict and not diagnosis.passed:
        raise BayesTrialError(f"{args.fit}: diagnostics FAIL ({'; '.join(diagnosis.messages)}); --strict refuses to answer")
    table = query.hypothesis(fit, args.expression, by=args.by, wave=args.wave, municipality=args.municipality,
                             rope=_parse_rope(args.rope), interval=args.interval)
    verdict = "PASS" if diagnosis.passed else "FAIL"
    if args.json:
        import json

        print(json.dumps({"fit": str(args.fit), "diagnostics": verdict, "diagnostic_messages": list(diagnosis.messages),
                          "results": table.to_dict(orient="records")}, indent=2, default=str))
        return 0
    print(f"{fit.spec.name}: {args.expression}   [diagnostics {verdict}]")
    if not diagnosis.passed:
        print("WARNING: this fit FAILED its convergence diagnostics; do not rely on these numbers:")
        for message in diagnosis.messages:
            print(f"  - {message}")
    shown = table.copy()
    width = f"{args.interval:.0%}"
    shown[f"{width} ETI"] = [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in zip(shown.pop("lower"), shown.pop("upper"))]
    shown["mean"] = [f"{m:+.2f}" for m in shown["mean"]]
    for column in ("p_hypothesis", "p_rope"):
        if column in shown:
            shown[column] = [f"{p:.3f}" for p in shown[column]]
    shown = shown.drop(columns=["hypothesis", "interval"]).rename(columns={"p_hypothesis": "P(hypothesis)", "p_rope": "P(in ROPE)"})
    print(shown.to_string(index=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .fit import load
    from .report import report

    fits = [load(path) for path in args.fits]
    paths = report(fits, args.out, title=args.title, min_cell=args.min_cell)
    print(f"report written: {paths['html']} and {paths['md']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .workflow import run

    paths = run(args.workflow, progress=not args.quiet)
    print(f"report: {paths['html']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-trial",
        description="Bayesian hierarchical models for multi-site randomised social-policy trials.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="simulate a trial with known true parameters")
    p.add_argument("--design", required=True, help="design name (data/designs/NAME.toml) or path to a design TOML")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", required=True, help="folder for survey.csv, register.csv and truth.json")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("fit", help="fit a model spec to trial data and store the posterior")
    p.add_argument("spec", help="model spec name (models/NAME.toml) or path")
    p.add_argument("--data", required=True, help="data file, or a folder with survey.csv / register.csv")
    p.add_argument("--out", required=True, help="where to store the fit (netCDF, e.g. fits/outflow.nc)")
    p.add_argument("--prior", action="append", default=[], metavar="TERM=DIST",
                   help="override a prior, e.g. 'arm=Normal(0, 0.5)' or '1|municipality:consultant_id=HalfNormal(0.3)'")
    p.add_argument("--priors", help="TOML file of priors (TERM = \"Distribution(...)\") applied over the spec's")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_sampler_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("query", help="posterior probability of a hypothesis about arms, on the outcome scale")
    p.add_argument("fit", help="stored fit (.nc)")
    p.add_argument("expression", help="e.g. 'intensive - control > 0' or 'self_direction - control > 2pp'")
    p.add_argument("--by", choices=("municipality", "wave"), help="one answer per town (plus a new town) or per wave")
    p.add_argument("--wave", type=int, help="survey wave to answer at (default: the last)")
    p.add_argument("--municipality", help="one town, or 'new' for a town drawn from the fitted town distribution")
    p.add_argument("--rope", help="region of practical equivalence LOW,HIGH on the outcome scale (e.g. -2pp,2pp)")
    p.add_argument("--interval", type=float, default=0.9, help="equal-tailed interval width (default 0.9)")
    p.add_argument("--strict", action="store_true", help="refuse to answer from a fit that fails its diagnostics")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("report", help="HTML + Markdown report of one or more stored fits")
    p.add_argument("fits", nargs="+", help="stored fits (.nc)")
    p.add_argument("--out", required=True, help="folder for report.html, report.md and figures/")
    p.add_argument("--title", default="bayes-trial report")
    p.add_argument("--min-cell", type=int, default=10, dest="min_cell",
                   help="suppress observed cells with fewer persons (default 10, never below 5)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("run", help="run a workflow (workflows/NAME.toml): data, fits, queries, report")
    p.add_argument("workflow", help="workflow TOML file or bundled name (e.g. oss_demo)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BayesTrialError as exc:
        print(f"bayes-trial: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("bayes-trial: interrupted; stored files are left as they were", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
