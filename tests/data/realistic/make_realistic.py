"""Write the realistic test data sets in this folder (see README.md for what each one exercises).

Run from anywhere; the files are written next to this script and are committed, so tests never
regenerate them. The same seed gives byte-identical CSV files (the .sav files also carry the
time they were written in their header, so only their content is reproducible):

    python tests/data/realistic/make_realistic.py

Each data set is a folder with a survey table (one row per participant and answered wave) and a
register table (one row per participant), as municipalities export them. The data follow the
models' structure: an arm effect on outflow and on wellbeing after baseline, towns and
consultants varying in level, participants varying in wellbeing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SEED = 20260114


@dataclass(frozen=True)
class Town:
    """One town: persons per arm and the consultant ids that serve each arm ([] = no consultant)."""

    name: str
    persons: dict[str, int]
    consultants: dict[str, list[str]]
    without_consultant: float = 0.0  # share of persons with an empty consultant id


@dataclass(frozen=True)
class Truth:
    outflow: dict[str, float]  # probability of outflow to work by arm (before town/consultant effects)
    wellbeing_gain: dict[str, float]  # wellbeing effect of the arm after baseline (points)
    response: dict[str, list[float]]  # probability of answering each wave, by arm
    missing_wellbeing: float = 0.0  # share of answered waves whose score is empty
    missing_outflow: float = 0.0  # share of persons whose outflow is unknown


def simulate(towns: list[Town], truth: Truth, rng: np.random.Generator, *, first_id: int = 1
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Register and survey in the project's own column names (ids as zero-padded text)."""
    people = []
    person = first_id
    for town in towns:
        town_effect = rng.normal(0, 0.3)
        town_level = rng.normal(0, 0.3)
        consultant_effect = {c: rng.normal(0, 0.3) for cs in town.consultants.values() for c in cs}
        for arm, n in town.persons.items():
            staff = town.consultants[arm]
            for k in range(n):
                consultant = staff[k % len(staff)] if staff else None
                if consultant is not None and rng.random() < town.without_consultant:
                    consultant = None
                people.append({"participant_id": f"{person:06d}", "municipality": town.name, "arm": arm,
                               "consultant_id": consultant, "town_effect": town_effect, "town_level": town_level,
                               "consultant_effect": consultant_effect.get(consultant, 0.0)})
                person += 1
    register_rows, survey_rows = [], []
    for p in people:
        base = np.log(truth.outflow[p["arm"]] / (1 - truth.outflow[p["arm"]]))
        eta = base + p["town_effect"] + p["consultant_effect"]
        outflow = float(rng.random() < 1 / (1 + np.exp(-eta)))
        if rng.random() < truth.missing_outflow:
            outflow = np.nan
        register_rows.append({k: p[k] for k in ("participant_id", "municipality", "arm", "consultant_id")}
                             | {"outflow_work": outflow})
        person_level = rng.normal(0, 1.0)
        for wave, answer in enumerate(truth.response[p["arm"]]):
            if rng.random() >= answer:
                continue
            mean = (5.8 + 0.3 * wave + p["town_level"] + 0.5 * p["consultant_effect"] + person_level
                    + (truth.wellbeing_gain[p["arm"]] if wave > 0 else 0.0))
            # mean of three 0-10 items: thirds, written with one decimal as the exports do
            score = float(np.clip(np.round(rng.normal(mean, 1.0) * 3) / 3, 0, 10).round(1))
            if rng.random() < truth.missing_wellbeing:
                score = np.nan
            survey_rows.append({k: p[k] for k in ("participant_id", "municipality", "arm", "consultant_id")}
                               | {"wave": wave, "wellbeing": score})
    return pd.DataFrame(register_rows), pd.DataFrame(survey_rows)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    out = frame.copy()
    if "outflow_work" in out:
        out["outflow_work"] = out["outflow_work"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    out.to_csv(path, index=False, na_rep="", lineterminator="\n")


def gemeenten_sav(rng: np.random.Generator) -> None:
    """Three towns as an analyst's SPSS export: Dutch names, value labels, text waves."""
    towns = [
        # all three arms; one consultant for control; K03 serves both eigen regie and intensief
        Town("Oss", {"controle": 50, "eigen regie": 45, "intensief": 40},
             {"controle": ["K01"], "eigen regie": ["K02", "K03"], "intensief": ["K03", "K04"]}),
        # no intensief arm; K01 is a different person from Oss's K01; a few persons without a consultant
        Town("Nijmegen", {"controle": 45, "eigen regie": 45},
             {"controle": ["K01", "K05"], "eigen regie": ["K06"]}, without_consultant=0.08),
        # no eigen regie arm; unequal consultants (1 against 3)
        Town("Tilburg", {"controle": 35, "intensief": 40},
             {"controle": ["K07"], "intensief": ["K08", "K09", "K10"]}),
    ]
    truth = Truth(outflow={"controle": 0.22, "eigen regie": 0.30, "intensief": 0.36},
                  wellbeing_gain={"controle": 0.0, "eigen regie": 0.5, "intensief": 0.4},
                  # Oss-like attrition: control answers much less after baseline
                  response={"controle": [0.95, 0.42, 0.35], "eigen regie": [0.97, 0.82, 0.70],
                            "intensief": [0.97, 0.78, 0.65]},
                  missing_wellbeing=0.05, missing_outflow=0.02)
    register, survey = simulate(towns, truth, rng, first_id=101)
    codes = {"controle": 1, "eigen regie": 2, "intensief": 3}
    labels = {"groep": {v: k for k, v in codes.items()}}
    dutch = {"participant_id": "klantnummer", "municipality": "gemeente", "arm": "groep",
             "consultant_id": "consulent", "wave": "meting", "wellbeing": "welzijn", "outflow_work": "uitstroom_werk"}
    folder = HERE / "gemeenten_sav"
    folder.mkdir(exist_ok=True)
    import pyreadstat

    for name, frame in (("register", register), ("survey", survey)):
        out = frame.copy()
        out["arm"] = out["arm"].map(codes).astype(float)
        out["consultant_id"] = out["consultant_id"].fillna("")
        if "wave" in out:
            out["wave"] = "t" + out["wave"].astype(str)
        out = out.rename(columns=dutch)
        pyreadstat.write_sav(out, str(folder / f"{name}.sav"), variable_value_labels=labels,
                             column_labels={"welzijn": "Welzijn (0-10)", "uitstroom_werk": "Uitstroom naar werk"}
                             if name == "survey" else {"uitstroom_werk": "Uitstroom naar werk"})


def nl4_csv(rng: np.random.Generator) -> None:
    """Four towns in the project's own column names, numeric waves, different arm sets per town."""
    towns = [
        Town("Oss", {"control": 40, "self_direction": 40, "intensive": 35},
             {"control": ["c1"], "self_direction": ["c2", "c3", "c4"], "intensive": ["c5", "c6"]}),
        Town("Nijmegen", {"control": 35, "intensive": 35}, {"control": ["c1", "c2"], "intensive": ["c3"]}),
        Town("Tilburg", {"control": 30, "self_direction": 30}, {"control": ["tb1"], "self_direction": ["tb2"]}),
        # one consultant serves all three arms
        Town("Zwolle", {"control": 25, "self_direction": 25, "intensive": 25},
             {"control": ["z1"], "self_direction": ["z1"], "intensive": ["z1", "z2"]}),
    ]
    truth = Truth(outflow={"control": 0.25, "self_direction": 0.32, "intensive": 0.38},
                  wellbeing_gain={"control": 0.0, "self_direction": 0.5, "intensive": 0.3},
                  response={"control": [0.92, 0.40, 0.33], "self_direction": [0.95, 0.82, 0.70],
                            "intensive": [0.95, 0.75, 0.62]},
                  missing_wellbeing=0.03)
    register, survey = simulate(towns, truth, rng, first_id=1)
    folder = HERE / "nl4_csv"
    folder.mkdir(exist_ok=True)
    _write_csv(register, folder / "register.csv")
    _write_csv(survey, folder / "survey.csv")


def one_town_csv(rng: np.random.Generator) -> None:
    """A single town: nothing to learn about how towns differ, so no new-town prediction."""
    towns = [Town("Oss", {"control": 70, "self_direction": 70, "intensive": 60},
                  {"control": ["a1", "a2"], "self_direction": ["b1"], "intensive": ["b2", "b3"]})]
    truth = Truth(outflow={"control": 0.24, "self_direction": 0.33, "intensive": 0.36},
                  wellbeing_gain={"control": 0.0, "self_direction": 0.5, "intensive": 0.4},
                  response={"control": [0.95, 0.45, 0.40], "self_direction": [0.97, 0.80, 0.70],
                            "intensive": [0.97, 0.80, 0.70]})
    register, survey = simulate(towns, truth, rng, first_id=5001)
    folder = HERE / "one_town_csv"
    folder.mkdir(exist_ok=True)
    _write_csv(register, folder / "register.csv")
    _write_csv(survey, folder / "survey.csv")


def main() -> None:
    streams = np.random.default_rng(SEED).spawn(3)
    gemeenten_sav(streams[0])
    nl4_csv(streams[1])
    one_town_csv(streams[2])


if __name__ == "__main__":
    main()
