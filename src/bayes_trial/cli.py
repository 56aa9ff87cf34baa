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
