"""Simulation-based calibration on record: did the fit's family pass SBC (`data/validation/sbc/`)?

Each SBC run folder (made by `bayes-trial sbc SPEC --out data/validation/sbc/SPEC`, or SPEC_fit_path
for refits through the fast paths) holds `summary.csv`: per parameter, the chi-square test of
uniform ranks and whether the rank ECDF stays inside its simultaneous 95% band and inside the
band adjusted for the run's number of parameters (`in_adjusted_band`: a 95% chance that no
parameter of a calibrated run leaves it). A family is calibrated on record when every run of a
bundled spec of that family has every parameter inside the adjusted band: with a dozen parameters
per run, exits from the per-parameter 95% band alone are expected by chance, and are reported as
such. The report carries this next to the diagnostics verdict, so a family whose SBC failed is
flagged on every fit of it until a new run passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bayes_trial.core.errors import SpecError
from bayes_trial.core.paths import MODELS_DIR, PROJECT_ROOT
from bayes_trial.modelling.spec import load_spec

SBC_DIR = PROJECT_ROOT / "data" / "validation" / "sbc"
#: Replications per run that this project asks for before a family counts as checked.
REQUIRED_SIMS = 200


@dataclass(frozen=True)
class Calibration:
    """The SBC record of one family: its runs, their fewest replications, and parameters outside the band."""

    family: str
    runs: tuple[str, ...]
    sims: int
    failed: tuple[str, ...]
    parameters: int = 0
    touched: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``FAIL`` (a parameter left the band), ``PASS``, or ``NONE`` (no run on record)."""
        return "NONE" if not self.runs else "FAIL" if self.failed else "PASS"

    def format(self) -> str:
        """One line for the report."""
        if self.status == "NONE":
            return f"simulation-based calibration: no SBC run on record for the {self.family} family"
        runs = ", ".join(self.runs)
        if self.status == "FAIL":
            return (f"simulation-based calibration FAIL for the {self.family} family ({runs}): "
                    f"{'; '.join(self.failed)} outside the 95% band")
        short = f"; fewer than the {REQUIRED_SIMS} asked for" if self.sims < REQUIRED_SIMS else ""
        touched = (f"; {len(self.touched)} of {self.parameters} parameters ({', '.join(self.touched)}) leave their "
                   "own 95% band, as chance gives at this many, none the band adjusted for their number"
                   if self.touched else "")
        return (f"simulation-based calibration PASS for the {self.family} family ({runs}; {self.sims} simulations"
                f"{short}{touched})")


def _run_family(folder: Path, models_dir: Path) -> str | None:
    name = folder.name.removesuffix("_fit_path")
    path = models_dir / f"{name}.toml"
    if not path.exists():
        return None
    try:
        return load_spec(path).family
    except SpecError:
        return None


def calibration(family: str, sbc_dir: Path = SBC_DIR, models_dir: Path = MODELS_DIR) -> Calibration:
    """The SBC record of `family` from the run folders under `sbc_dir` (bundled specs in `models_dir`)."""
    runs, sims, failed, touched, parameters = [], [], [], [], 0
    for summary in sorted(Path(sbc_dir).glob("*/summary.csv")):
        if _run_family(summary.parent, Path(models_dir)) != family:
            continue
        table = pd.read_csv(summary)
        run = summary.parent.name
        runs.append(run)
        sims.append(int(table["sims"].min()))
        parameters += len(table)
        # Runs summarised before the adjusted band existed are judged by the per-parameter band.
        inside = table["in_adjusted_band" if "in_adjusted_band" in table else "in_band"].astype(bool)
        failed += [f"{run}: {p}" for p in table.loc[~inside, "parameter"]]
        touched += [f"{run}: {p}" for p in table.loc[inside & ~table["in_band"].astype(bool), "parameter"]]
    return Calibration(family, tuple(runs), min(sims, default=0), tuple(failed), parameters, tuple(touched))
