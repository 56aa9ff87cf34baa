"""The command line end to end: simulate, fit, diagnose, query, report; user errors exit 2 in one line."""

import json
import subprocess
import sys

import pytest

from bayes_trial import cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bayes_trial.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def cli_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    assert run_cli("simulate", "--design", "small", "--seed", "2", "--out", out / "sim").returncode == 0
    result = run_cli("fit", "outflow", "--data", out / "sim", "--out", out / "outflow.nc", "--draws", "300", "--tune", "300",
                     "--chains", "2", "--prior", "arm=Normal(0, 0.4)")
    assert result.returncode == 0, result.stderr
    return out, result


def test_fit_prints_the_estimands_and_stores_the_fit(cli_fit):
    out, result = cli_fit
    assert "intensive - control" in result.stdout and " pp " in result.stdout and "P(>0)" in result.stdout
    assert "consultant share of variance" in result.stdout
    assert (out / "outflow.nc").exists()


def test_query_answers_on_the_outcome_scale_with_the_verdict(cli_fit):
    out, _ = cli_fit
    result = run_cli("query", out / "outflow.nc", "intensive - control > 2pp", "--by", "municipality", "--rope=-2pp,2pp", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["diagnostics"] in ("PASS", "FAIL")
    towns = [row["municipality"] for row in answer["results"]]
    assert towns == ["Nijmegen", "Oss", "new municipality"]
    for row in answer["results"]:
        assert 0 <= row["p_hypothesis"] <= 1 and 0 <= row["p_rope"] <= 1 and row["unit"] == "pp"
        assert row["lower"] < row["mean"] < row["upper"]


def test_strict_query_refuses_a_failing_fit(cli_fit):
    out, _ = cli_fit
    failing = run_cli("fit", "outflow", "--data", out / "sim", "--out", out / "bad.nc", "--draws", "15", "--tune", "5",
                      "--chains", "2", "--quiet")
    assert failing.returncode == 0, failing.stderr
    assert run_cli("diagnose", out / "bad.nc").returncode == 1
    strict = run_cli("query", out / "bad.nc", "intensive - control > 0", "--strict")
    assert strict.returncode == 2 and "diagnostics FAIL" in strict.stderr and "Traceback" not in strict.stderr
    lenient = run_cli("query", out / "bad.nc", "intensive - control > 0")
    assert lenient.returncode == 0 and "FAILED" in lenient.stdout


@pytest.mark.parametrize("args, fragment", [
    (["query", "{fit}", "nonsense - control"], "unknown arm 'nonsense'"),
    (["query", "{fit}", "intensive - control", "--municipality", "Atlantis"], "Atlantis"),
    (["query", "{fit}", "intensive - control", "--rope", "1"], "--rope"),
    (["diagnose", "{out}/missing.nc"], "no such fit file"),
    (["fit", "outflow", "--data", "{out}/nowhere.csv", "--out", "{out}/x.nc"], "nowhere.csv"),
    (["fit", "outflow", "--data", "{out}/sim", "--out", "{out}/x.nc", "--prior", "arm=Normal(0, -1)"], "arm"),
    (["run", "{out}/no_workflow.toml"], "no such workflow"),
])
def test_user_errors_exit_2_with_one_line(cli_fit, args, fragment):
    out, _ = cli_fit
    args = [a.format(fit=out / "outflow.nc", out=out) for a in args]
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("bayes-trial: error:") and fragment in lines[-1]
    assert "Traceback" not in result.stderr


def test_every_command_is_documented():
    text = cli.build_parser().format_help()
    for command in ("simulate", "fit", "query", "diagnose", "ppc", "priors", "prior-check", "compare", "report", "run",
                    "pool", "published-oss", "sbc", "recovery", "power"):
        assert command in text
    subcommands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    for name, sub in subcommands.items():  # argparse only expands (and can choke on) '%' when help is shown
        assert sub.format_help().startswith(f"usage: bayes-trial {name}")
