"""The command line end to end: simulate, fit, diagnose, query, report; user errors exit 2 in one line."""

import json
import subprocess
import sys

import pytest

from bayes_trial.cli import commands as cli


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
    passed = run_cli("diagnose", out / "outflow.nc").returncode == 0
    assert f"outflow ({out / 'outflow.nc'})   [diagnostics {'PASS' if passed else 'FAIL'}]" in result.stdout


ARM_ONLY_SPEC = """
name = "arm_only"
table = "register"
outcome = "outflow_work"
family = "bernoulli"
formula = "outflow_work ~ arm"
bounds = [0, 1]
unit = "pp"
[priors]
Intercept = "Normal(-1, 1)"
arm = "Normal(0, 0.5)"
"""


@pytest.fixture(scope="module")
def arm_only(cli_fit):
    """A model simple enough to pass its diagnostics with 2 x 300 draws, and its CLI output."""
    out, _ = cli_fit
    (out / "arm_only.toml").write_text(ARM_ONLY_SPEC)
    result = run_cli("fit", out / "arm_only.toml", "--data", out / "sim", "--out", out / "arm_only.nc", "--draws", "300",
                     "--tune", "300", "--chains", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    return out, result


def test_fit_passing_its_diagnostics_prints_pass_and_the_estimates(arm_only):
    out, result = arm_only
    assert run_cli("diagnose", out / "arm_only.nc").returncode == 0
    assert f"arm_only ({out / 'arm_only.nc'})   [diagnostics PASS]" in result.stdout
    assert "FAIL" not in result.stdout and "do not use" not in result.stdout.lower()
    assert result.stdout.index("[diagnostics PASS]") < result.stdout.index("Arm effects")
    assert f"fit stored in {out / 'arm_only.nc'} (diagnostics PASS)" in result.stdout


def test_fit_failing_its_diagnostics_says_so_before_the_estimates_and_strict_exits_1(cli_fit):
    out, _ = cli_fit
    args = ("fit", "outflow", "--data", out / "sim", "--draws", "30", "--tune", "30", "--chains", "2", "--quiet")
    strict = run_cli(*args, "--out", out / "strict.nc", "--strict")
    assert strict.returncode == 1, strict.stderr
    assert (out / "strict.nc").exists() and run_cli("diagnose", out / "strict.nc").returncode == 1
    text = strict.stdout
    assert "[diagnostics FAIL]" in text and "Do not use these estimates" in text
    assert text.index("[diagnostics FAIL]") < text.index("Do not use these estimates") < text.index("Arm effects")
    reasons = [line for line in text.splitlines() if line.startswith("  - ")]
    assert reasons and any("R-hat" in r or "ESS" in r for r in reasons)
    assert f"fit stored in {out / 'strict.nc'} (diagnostics FAIL)" in text
    lenient = run_cli(*args, "--out", out / "lenient.nc")
    assert lenient.returncode == 0 and "[diagnostics FAIL]" in lenient.stdout


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


def test_the_process_exits_with_the_status_of_main_and_all_its_output(tmp_path):
    """`python -m bayes_trial.cli` skips the interpreter's teardown: statuses and piped output must survive that."""
    helped = run_cli("--help")
    assert helped.returncode == 0 and "simulate" in helped.stdout
    assert run_cli("fit").returncode == 2  # argparse: arguments missing
    missing = run_cli("diagnose", tmp_path / "missing.nc")
    assert missing.returncode == 2 and missing.stderr.strip().startswith("bayes-trial: error:")
    made = run_cli("simulate", "--design", "small", "--seed", "2", "--out", tmp_path / "sim")
    assert made.returncode == 0 and made.stdout.rstrip().endswith("truth.json") and (tmp_path / "sim" / "truth.json").exists()
    crashed = subprocess.run([sys.executable, "-c", "import sys; from bayes_trial.cli import commands; "
                              "commands.main = lambda: 1 / 0; commands.run()"], capture_output=True, text=True)
    assert crashed.returncode == 1 and "ZeroDivisionError" in crashed.stderr


def test_every_command_is_documented():
    text = cli.build_parser().format_help()
    for command in ("simulate", "fit", "query", "diagnose", "ppc", "priors", "prior-check", "compare", "report", "run",
                    "pool", "published-oss", "sbc", "recovery", "power"):
        assert command in text
    subcommands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    for name, sub in subcommands.items():  # argparse only expands (and can choke on) '%' when help is shown
        assert sub.format_help().startswith(f"usage: bayes-trial {name}")


def _report_sections(markdown: str) -> dict[str, str]:
    """Markdown report sections by their `##` heading."""
    parts = markdown.split("\n## ")[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def test_report_of_two_fits_of_one_spec_gives_each_file_its_own_section_and_verdict(arm_only):
    """The same spec fitted twice, once with too few draws: each file its own section and verdict."""
    out, _ = arm_only
    short = run_cli("fit", out / "arm_only.toml", "--data", out / "sim", "--out", out / "short" / "arm_only.nc",
                    "--draws", "15", "--tune", "15", "--chains", "2", "--quiet")
    assert short.returncode == 0, short.stderr
    assert run_cli("diagnose", out / "short" / "arm_only.nc").returncode == 1
    result = run_cli("report", out / "arm_only.nc", out / "short" / "arm_only.nc", out / "arm_only.nc",
                     "--out", out / "three_report")
    assert result.returncode == 0, result.stderr
    sections = _report_sections((out / "three_report" / "report.md").read_text())
    good, short_label = str(out / "arm_only.nc"), str(out / "short" / "arm_only.nc")
    labels = [f"{good} #1 (arm_only)", f"{short_label} (arm_only)", f"{good} #2 (arm_only)"]
    assert [title.split(": ")[0] for title in sections] == labels
    first, second, third = sections.values()
    assert f"✅ Diagnostics PASS: {labels[0]}" in first and f"✅ Diagnostics PASS: {labels[2]}" in third
    assert f"❌ **FAILING FIT — do not use these estimates** Diagnostics FAIL: {labels[1]}" in second
    assert "Diagnostics PASS" not in second and "Effects on the outcome scale" in second
    html = (out / "three_report" / "report.html").read_text()
    assert html.count("class='verdict pass'") == 4 and html.count("class='verdict fail'") == 2  # top list + sections
    assert len({p.parent.name for p in (out / "three_report" / "figures").rglob("*.png")}) == 3


def test_priors_with_data_prints_each_auto_prior_and_why(small_sim_dir, small_sim, capsys):
    assert cli.main(["priors", "wellbeing", "--data", str(small_sim_dir)]) == 0
    out = capsys.readouterr().out
    sd = small_sim.survey["wellbeing"].dropna().std()
    assert f"arm: auto: 0.5 x SD(wellbeing)={sd:.3g} -> Normal(mu=0, sigma={float(f'{0.5 * sd:.3g}'):g})" in out
    assert "HalfNormal(sigma=0.7)" in out  # the consultant prior the spec states


def test_prior_check_exits_1_on_fail_with_the_verdict_last(small_sim_dir, tmp_path, capsys):
    assert cli.main(["prior-check", "outflow", "--data", str(small_sim_dir), "--out", str(tmp_path),
                     "--draws", "100"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("outflow: prior predictive check PASS")
    assert cli.main(["prior-check", "outflow", "--data", str(small_sim_dir), "--out", str(tmp_path),
                     "--draws", "100", "--prior", "arm=Normal(0, 3)", "--implausible", "20"]) == 1
    assert "P(|effect| > 20 pp)" in capsys.readouterr().out



def test_a_command_run_in_process_leaves_dask_importable(outflow_fit_path):
    """Commands keep dask out of their own process; called through `main` in a longer-lived process (a
    notebook, a test run) they must not keep it out of what runs next there, such as a Dask batch."""
    code = ("import sys; from bayes_trial.cli import commands as cli; "
            f"assert cli.main(['query', {str(outflow_fit_path)!r}, 'intensive - control > 0']) == 0; "
            "import distributed")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
