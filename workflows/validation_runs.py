"""The validation runs committed under data/validation/, with the exact settings that made them.

    .venv/bin/python workflows/validation_runs.py sbc [--sims 200] [--models wellbeing,...] [--refit fit]
                                                      [--scheduler tcp://HOST:PORT] [--resummarise]
    .venv/bin/python workflows/validation_runs.py recovery [--sims N] [--runs outflow_small,...]
    .venv/bin/python workflows/validation_runs.py power [--sims 20] [--runs oss_self_direction,oss_intensive]
    .venv/bin/python workflows/validation_runs.py consultants [--sims 30] [--per-arm 2,4,8] [--sds 0.2,0.5,0.8]
                                                              [--models wellbeing,outflow] [--workers 1]
    .venv/bin/python workflows/validation_runs.py attrition [--sims 50] [--workers N]

Every run resumes from its `runs/` folder, so an interrupted run is restarted with the same command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bayes_trial.batch import attrition, consultants, power
from bayes_trial.batch.recovery import combine_recovery, recovery
from bayes_trial.batch.sbc import resummarise, sbc

OUT = Path(__file__).resolve().parents[1] / "data" / "validation"
# outflow_hazard: the discrete-time hazard family; `--refit fit --models wellbeing` runs the collapsed survey
# fast path (participant intercepts and coefficients integrated out), outflow already fits binomial cells.
SBC_MODELS = ("wellbeing", "outflow", "trust_item", "job_applications", "outflow_hazard")
TOWNS8 = OUT / "designs" / "towns8.toml"
# (model, design, simulated trials): the Gaussian model on eight towns costs minutes per fit here.
RECOVERY_RUNS = (("outflow", "small", 40), ("outflow", TOWNS8, 40), ("wellbeing", "small", 20), ("wellbeing", TOWNS8, 10))


def run_sbc(args) -> None:
    for spec in args.models or SBC_MODELS:
        folder = OUT / "sbc" / (spec if args.refit == "compiled" else f"{spec}_{args.refit}_path")
        if args.resummarise:
            result = resummarise(folder, f"SBC of {spec} on design 'small'")
            print(f"\nSBC {spec}, summarised again from {folder / 'ranks.csv'}")
            print(result.summary.to_string(index=False))
            continue
        result = sbc(spec, "small", sims=args.sims, out=folder, seed=1, refit=args.refit, scheduler=args.scheduler)
        print(f"\nSBC {spec}: {len(result.fits)} fits, {len(result.failed)} failed")
        print(result.summary.to_string(index=False))


def run_recovery(args) -> None:
    for spec, design, sims in RECOVERY_RUNS:
        name = Path(design).stem
        if args.runs and f"{spec}_{name}" not in args.runs:
            continue
        result = recovery(spec, design, sims=args.sims or sims, out=OUT / "recovery" / f"{spec}_{name}",
                          seed=1, scheduler=args.scheduler)
        print(f"\nrecovery {spec} on {name}: {len(result.failed)} failed")
        print(result.coverage.to_string(index=False))
    combine_recovery(OUT / "recovery")


# Oss's printed outflow (Tabel 2.3.1): self-direction +4.8 pp, intensive -0.7 pp against control.
POWER_TARGETS = (("oss_self_direction", "self_direction - control > 0"), ("oss_intensive", "intensive - control > 0"))


def run_power(args) -> None:
    for folder, target in POWER_TARGETS:
        if args.runs and folder not in args.runs:
            continue
        result = power.power("oss", spec="outflow", n_per_arm=(50, 100, 200, 400), target=target, threshold=0.95,
                             sims=args.sims, out=OUT / "power" / folder, seed=1, scheduler=args.scheduler)
        print(f"\npower of P({target}) >= 0.95")
        print(result.table.to_string(index=False))


CONSULTANT_MODELS = ("wellbeing", "outflow")
CONSULTANTS_PER_ARM = (2, 4, 8)
CONSULTANT_SDS = (0.2, 0.5, 0.8)


def run_consultants(args) -> None:
    grid = consultants.study_grid(tuple(args.models or CONSULTANT_MODELS), tuple(args.per_arm or CONSULTANTS_PER_ARM),
                                  sds=tuple(args.sds or CONSULTANT_SDS))
    result = consultants.consultant_study(OUT / "designs" / "consultants.toml", grid, sims=args.sims,
                                          out=OUT / "consultants", seed=1, scheduler=args.scheduler,
                                          n_workers=args.workers or 1)
    print(f"\nconsultant study: {len(result.estimates['sim'].unique()) if not result.estimates.empty else 0} fits, "
          f"{len(result.failed)} failed")
    print(result.coverage.to_string(index=False))


ATTRITION_MECHANISMS = ("mcar", "mar", "mnar")


def run_attrition(args) -> None:
    designs = {m: OUT / "designs" / f"attrition_{m}.toml" for m in ATTRITION_MECHANISMS}
    result = attrition.attrition_study(designs, "wellbeing", sims=args.sims, out=OUT / "attrition", seed=1,
                                       scheduler=args.scheduler, n_workers=args.workers)
    print(f"\nattrition study: {result.estimates['sim'].nunique() if not result.estimates.empty else 0} fits, "
          f"{len(result.failed)} failed")
    print(result.coverage.to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("sbc", "recovery", "power", "consultants", "attrition"))
    parser.add_argument("--sims", type=int, default=None,
                        help="simulations (defaults: sbc 200, recovery as in RECOVERY_RUNS, power 20 per size)")
    parser.add_argument("--models", type=lambda text: text.split(","), default=None,
                        help=f"sbc or consultants: comma-separated models (default sbc: {','.join(SBC_MODELS)}; "
                             f"consultants: {','.join(CONSULTANT_MODELS)})")
    parser.add_argument("--refit", choices=("compiled", "fit"), default="compiled",
                        help="sbc only: refit with one compiled model per worker, or through bayes_trial.fit")
    parser.add_argument("--resummarise", action="store_true",
                        help="sbc only: fit nothing, make summary.csv and the figure again from the committed ranks.csv")
    parser.add_argument("--runs", type=lambda text: text.split(","), default=None,
                        help="recovery or power: comma-separated runs, e.g. outflow_small,wellbeing_towns8 or oss_intensive (default all)")
    parser.add_argument("--per-arm", type=lambda text: [int(k) for k in text.split(",")], default=None,
                        help="consultants only: consultants per arm and town (default 2,4,8)")
    parser.add_argument("--sds", type=lambda text: [float(sd) for sd in text.split(",")], default=None,
                        help="consultants only: true consultant SDs (default 0.2,0.5,0.8)")
    parser.add_argument("--workers", type=int, default=None,
                        help="consultants: local Dask workers (default 1: one compiled model per layout is reused); "
                             "attrition: default one per core")
    parser.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster, one worker per core)")
    args = parser.parse_args()
    args.sims = args.sims or {"sbc": 200, "recovery": None, "power": 20, "consultants": 30, "attrition": 50}[args.what]
    {"sbc": run_sbc, "recovery": run_recovery, "power": run_power, "consultants": run_consultants,
     "attrition": run_attrition}[args.what](args)


if __name__ == "__main__":
    main()
