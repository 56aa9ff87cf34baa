"""Reading a user's own export: --columns and --control on every command that reads data, a
workflow's [data] control_arm and [data.columns], and missing outcomes carried by the fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from test_data import DUTCH_MAPPING, dutch_sav

import bayes_trial as bt
from bayes_trial.cli import commands as cli
from bayes_trial.workflow import runner as workflow
from bayes_trial.sampling import fit as fit_mod
from bayes_trial.modelling.frames import missing_outcomes
from bayes_trial.report.document import missing_outcome_blocks

REGISTER_MAPPING = "klantnummer=participant_id,gemeente=municipality,groep=arm,consulent=consultant_id,uitstroom_werk=outflow_work"
LABELS = {"groep": {1: "controle", 2: "eigen regie", 3: "intensief"}}


def dutch_register_sav(path: Path) -> Path:
    """60 persons in two towns and three labelled arms; outflow not known for 3 control persons."""
    rng = np.random.default_rng(3)
    arm = np.tile([1, 2, 3], 20)
    outflow = (rng.random(60) < 0.2 + 0.15 * (arm - 1)).astype(float)
    outflow[[0, 3, 6]] = np.nan
    df = pd.DataFrame({"klantnummer": [f"{i:05d}" for i in range(60)], "gemeente": ["Oss", "Ede"] * 30,
                       "groep": arm, "consulent": [f"k{a}{i % 2}" if i % 7 else "" for i, a in enumerate(arm)],
                       "uitstroom_werk": outflow})
    pyreadstat.write_sav(df, str(path), variable_value_labels=LABELS)
    return path


@pytest.fixture
def no_sampling(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("bad input reached the sampler")

    monkeypatch.setattr(fit_mod, "_run_sampler", tripwire)


def one_line_error(code: int, err: str) -> str:
    assert code == cli.EXIT_USER_ERROR, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("bayes-trial: error: ")
    return err.strip()


def workflow_file(tmp_path: Path, data: str, extra: str = "") -> Path:
    path = tmp_path / "wf.toml"
    path.write_text(f'name = "wf"\nout = "{tmp_path / "out"}"\n\n[data]\n{data}\n{extra}\n'
                    '[[models]]\nspec = "wellbeing"\ndraws = 50\ntune = 50\nchains = 1\n', encoding="utf-8")
    return path


def test_priors_read_a_mapped_spss_export_with_its_control_arm(tmp_path, capsys):
    sav = dutch_sav(tmp_path / "export.sav")
    code = cli.main(["priors", "wellbeing", "--data", str(sav), "--columns", DUTCH_MAPPING, "--control", "controle"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "arm" in out and "sigma" in out


@pytest.mark.parametrize("command", ["fit", "priors", "prior-check", "run"])
def test_bad_mapping_and_control_are_one_line_on_every_data_command(command, tmp_path, capsys, no_sampling):
    sav = dutch_sav(tmp_path / "export.sav")
    if command == "run":
        argv = ["run", str(workflow_file(tmp_path, f'survey = "{sav}"'))]
    else:
        argv = [command, "wellbeing", "--data", str(sav)]
        argv += {"fit": ["--out", str(tmp_path / "x.nc")], "prior-check": ["--out", str(tmp_path / "pc")]}.get(command, [])
    line = one_line_error(cli.main([*argv, "--columns", "klantnummer=participant_idd"]), capsys.readouterr().err)
    assert "'klantnummer' is mapped to 'participant_idd', which is not a column of the data contract (participant_id?)" in line
    line = one_line_error(cli.main([*argv, "--columns", "klantnummer=participant_id,gemeente=participant_id"]),
                          capsys.readouterr().err)
    assert "'klantnummer' and 'gemeente' are both mapped to participant_id" in line
    line = one_line_error(cli.main([*argv, "--columns", DUTCH_MAPPING.replace("klantnummer", "klantnumer")]),
                          capsys.readouterr().err)
    assert "export.sav: the column mapping takes participant_id from column 'klantnumer'" in line
    line = one_line_error(cli.main([*argv, "--columns", DUTCH_MAPPING, "--control", "kontrol"]), capsys.readouterr().err)
    assert "export.sav: control arm 'kontrol' not found in column arm" in line
    assert "arms present: controle, eigen regie, intensief" in line
    line = one_line_error(cli.main(argv), capsys.readouterr().err)
    assert f"--columns '{DUTCH_MAPPING}'" in line


def test_fit_on_a_dutch_spss_register_end_to_end(tmp_path, capsys):
    sav = dutch_register_sav(tmp_path / "register.sav")
    out = tmp_path / "outflow.nc"
    code = cli.main(["fit", "outflow", "--data", str(sav), "--out", str(out), "--columns", REGISTER_MAPPING,
                     "--control", "controle", "--draws", "100", "--tune", "100", "--chains", "2", "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "eigen regie - controle" in stdout and "intensief - controle" in stdout
    assert "Rows without outflow_work, left out of the fit (per arm):" in stdout
    fit = bt.load(out)
    assert fit.spec.control_arm == "controle"
    table = missing_outcomes(fit)
    assert table.to_dict("list") == {"arm": ["controle", "eigen regie", "intensief"], "wave": [None] * 3,
                                     "n_dropped": [3, 0, 0], "n_total": [20, 20, 20]}
    assert int(fit.prepared.data["n_trials"].sum()) == 57
    shown = missing_outcome_blocks(fit, min_cell=10)[0].table
    assert shown.to_dict("list") == {"arm": ["controle", "eigen regie", "intensief"],
                                     "left out": ["<10", "0", "0"], "rows": ["20", "20", "20"]}


def test_workflow_data_columns_and_control_arm(tmp_path):
    sav = dutch_sav(tmp_path / "export.sav")
    columns = "\n".join(f'{pair.split("=")[0]} = "{pair.split("=")[1]}"' for pair in DUTCH_MAPPING.split(","))
    path = workflow_file(tmp_path, f'survey = "{sav}"\ncontrol_arm = "controle"', f"[data.columns]\n{columns}\n")
    wf = workflow.load_workflow(path)
    assert [spec.control_arm for spec in wf.models] == ["controle"]
    frame = workflow.model_frames(wf)["wellbeing"]
    assert set(frame["arm"]) == {"controle", "eigen regie", "intensief"} and frame["wellbeing"].isna().sum() == 6
    # the command line's --columns and --control take the place of the workflow's
    plain = workflow_file(tmp_path, f'survey = "{sav}"')
    wf = workflow.load_workflow(plain, columns=bt.data.parse_column_mapping(DUTCH_MAPPING), control_arm="controle")
    assert workflow.model_frames(wf)["wellbeing"].equals(frame)


def test_workflow_respects_the_specs_own_control_arm(tmp_path):
    sav = dutch_sav(tmp_path / "export.sav")
    spec = tmp_path / "wb.toml"
    spec.write_text((Path(bt.spec.MODELS_DIR) / "wellbeing.toml").read_text(encoding="utf-8")
                    .replace('control_arm = "control"', 'control_arm = "controle"'), encoding="utf-8")
    columns = "\n".join(f'{pair.split("=")[0]} = "{pair.split("=")[1]}"' for pair in DUTCH_MAPPING.split(","))
    path = workflow_file(tmp_path, f'survey = "{sav}"', f"[data.columns]\n{columns}\n")
    path.write_text(path.read_text(encoding="utf-8").replace('spec = "wellbeing"', f'spec = "{spec}"'), encoding="utf-8")
    frame = workflow.model_frames(workflow.load_workflow(path))["wellbeing"]
    assert "controle" in set(frame["arm"])


@pytest.mark.parametrize(("data", "extra", "fragment"), [
    ('survey = "x.sav"\ncontrol = "controle"', "", "[data] has unknown key(s) control; valid: design, seed"),
    ('survey = "x.sav"', '[data.columns]\ngroep = "amr"\n', "[data.columns]: 'groep' is mapped to 'amr'"),
    ('survey = "x.sav"', '[data.columns]\ngroep = "arm"\nconditie = "arm"\n', "are both mapped to arm"),
    ('survey = "x.sav"\ncontrol_arm = 1', "", "[data] control_arm must be the control arm's name as text"),
])
def test_bad_workflow_data_table_is_one_line(data, extra, fragment, tmp_path):
    with pytest.raises(bt.BayesTrialError) as info:
        workflow.load_workflow(workflow_file(tmp_path, data, extra))
    assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)
