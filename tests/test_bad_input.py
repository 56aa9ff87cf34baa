"""Every malformed input in tests/data/bad/ through the `bayes-trial` command.

A user who gives the command a bad data file, model spec or fit file gets exit code 2 and one line
on stderr, "bayes-trial: error: FILE: what is wrong; what was expected", with no traceback; nothing
is sampled (validation comes first) and a fit already stored at `--out` is left as it was.

The whole corpus runs in-process through `cli.main` (the function behind the console script), with
the sampler replaced by a tripwire; a few cases, and in the slow run every case, go through the
installed `bayes-trial` executable in a fresh process, where a stand-in `nutpie` module is the
tripwire. A fresh process spends about 5 s of CPU importing PyMC before it can fail.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.cli import commands as cli
from bayes_trial.sampling import fit as fit_mod

TESTS = Path(__file__).resolve().parent
BAD = TESTS / "data" / "bad"
GOOD_SURVEY = TESTS / "data" / "good" / "survey.csv"
EXECUTABLE = Path(sys.executable).with_name("bayes-trial")
EARLIER_FIT = b"an earlier fit that a failed run must leave alone"

# The command knows the control arm from the spec, not the full list of arms (the API's `arms=`).
CLI_FRAGMENT = {"survey_control_case.csv": "arm names are case-sensitive"}
NEW_ARM_FOR_CLI = {"survey_unknown_arm.csv", "survey_zero_width_arm.csv"}

_TABLE_ROW = re.compile(r"^\| (?:`(?P<plain>[^`]+)`|\[`(?P<linked>[^`]+)`\]\([^)]*\)) \| (?P<what>.+?) \| `(?P<fragment>.*)` \|$")


def corpus() -> list[tuple[str, str, str]]:
    """(path relative to tests/data/bad, what is wrong, expected fragment) for every README row."""
    rows = []
    for line in (BAD / "README.md").read_text(encoding="utf-8").splitlines():
        match = _TABLE_ROW.match(line)
        if match:
            rows.append((match["plain"] or match["linked"], match["what"], match["fragment"]))
    return rows


CORPUS = corpus()
DATA_CASES = [c for c in CORPUS if "/" not in c[0] and (BAD / c[0]).is_file()]
SPEC_CASES = [c for c in CORPUS if c[0].startswith("specs/")]
UNFITTABLE_CASES = [c for c in CORPUS if c[0].startswith("unfittable/")]
FIT_CASES = [c for c in CORPUS if c[0].startswith("fits/")]


def ids(cases):
    return [c[0] for c in cases]


def data_spec(name: str) -> str:
    return "outflow" if name.startswith("register") else "wellbeing"


def test_readme_lists_every_file_and_folder():
    listed = {name for name, _, _ in CORPUS}
    on_disk = {str(p.relative_to(BAD)) for p in BAD.rglob("*") if p.name != "README.md"}
    assert on_disk == listed
    assert len(DATA_CASES) >= 25 and len(SPEC_CASES) >= 10 and len(FIT_CASES) >= 5 and len(UNFITTABLE_CASES) >= 5
    assert (BAD / "fits" / "truncated.nc").stat().st_size < 200_000


# --------------------------------------------------------------------------------------------
# in-process: the full corpus through cli.main
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_sampling(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("bad input reached the sampler: validation must come first")

    monkeypatch.setattr(fit_mod, "_run_sampler", tripwire)


@pytest.fixture
def earlier_fit(tmp_path) -> Path:
    out = tmp_path / "fits" / "model.nc"
    out.parent.mkdir()
    out.write_bytes(EARLIER_FIT)
    return out


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code: int, err: str, *, names: tuple[str, ...], fragment: str, progress: bool = False) -> str:
    """The error is the one line on stderr (the last one after progress notes, when shown)."""
    assert code == cli.EXIT_USER_ERROR, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines, "nothing on stderr"
    if not progress:
        assert len(lines) == 1, err
    line = lines[-1]
    assert sum(other.startswith("bayes-trial: error:") for other in lines) == 1, err
    assert line.startswith("bayes-trial: error: "), line
    assert any(name in line for name in names), f"names none of {names}: {line}"
    assert fragment in line, line
    return line


def assert_untouched(out: Path) -> None:
    assert out.read_bytes() == EARLIER_FIT
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary files left


@pytest.mark.parametrize(("name", "what", "fragment"), DATA_CASES, ids=ids(DATA_CASES))
def test_bad_data_file_fails_in_one_line_before_sampling(name, what, fragment, no_sampling, earlier_fit, capsys):
    if name in NEW_ARM_FOR_CLI:
        pytest.skip("the command does not know the full list of arms: an unknown arm is one more arm")
    argv = ["fit", data_spec(name), "--data", str(BAD / name), "--out", str(earlier_fit), "--quiet"]
    code, err = run_main(argv, capsys)
    assert_one_line_error(code, err, names=(name,), fragment=CLI_FRAGMENT.get(name, fragment))
    assert_untouched(earlier_fit)


@pytest.mark.parametrize(("name", "what", "fragment"), UNFITTABLE_CASES, ids=ids(UNFITTABLE_CASES))
def test_unfittable_data_fail_in_one_line_naming_the_file(name, what, fragment, no_sampling, earlier_fit, capsys):
    argv = ["fit", data_spec(Path(name).name), "--data", str(BAD / name), "--out", str(earlier_fit), "--quiet"]
    code, err = run_main(argv, capsys)
    line = assert_one_line_error(code, err, names=(Path(name).name,), fragment=fragment)
    assert line.startswith(f"bayes-trial: error: {Path(name).name}: "), line
    assert_untouched(earlier_fit)


@pytest.mark.parametrize("folder", ["specs", "fits", "unfittable"])
def test_data_folder_without_a_data_table_fails_in_one_line(folder, no_sampling, earlier_fit, capsys):
    argv = ["fit", "wellbeing", "--data", str(BAD / folder), "--out", str(earlier_fit)]
    code, err = run_main(argv, capsys)
    assert_one_line_error(code, err, names=(folder,), fragment="folder has no survey.csv")
    assert_untouched(earlier_fit)


@pytest.mark.parametrize(("name", "what", "fragment"), SPEC_CASES, ids=ids(SPEC_CASES))
def test_bad_spec_fails_in_one_line_before_sampling(name, what, fragment, no_sampling, earlier_fit, capsys):
    argv = ["fit", str(BAD / name), "--data", str(GOOD_SURVEY), "--out", str(earlier_fit), "--quiet"]
    code, err = run_main(argv, capsys)
    # Errors found in the data name the data file; those found while preparing the model name
    # the model, whose name is the spec's file name.
    names = (Path(name).name, Path(name).stem, GOOD_SURVEY.name)
    assert_one_line_error(code, err, names=names, fragment=fragment)
    assert_untouched(earlier_fit)


@pytest.mark.parametrize(("name", "what", "fragment"), FIT_CASES, ids=ids(FIT_CASES))
def test_bad_fit_file_raises_fit_file_error_naming_the_file(name, what, fragment):
    path = BAD / name
    with pytest.raises(bt.FitFileError) as info:
        bt.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert fragment in message, f"{what}: {message}"


def cli_commands() -> set[str]:
    actions = cli.build_parser()._actions
    return {name for action in actions if isinstance(action, argparse._SubParsersAction) for name in action.choices}


needs_diagnose = pytest.mark.skipif("diagnose" not in cli_commands(), reason="`bayes-trial diagnose` not wired yet")


@needs_diagnose
@pytest.mark.parametrize(("name", "what", "fragment"), FIT_CASES, ids=ids(FIT_CASES))
def test_bad_fit_file_fails_diagnose_in_one_line(name, what, fragment, capsys):
    code, err = run_main(["diagnose", str(BAD / name)], capsys)
    assert_one_line_error(code, err, names=(name,), fragment=fragment)


def test_missing_fit_file_is_one_line(tmp_path):
    with pytest.raises(bt.FitFileError, match="no such fit file"):
        bt.load(tmp_path / "nowhere.nc")


# --------------------------------------------------------------------------------------------
# Unicode ids are accepted
# --------------------------------------------------------------------------------------------

NFD_ZOE = unicodedata.normalize("NFD", "Zoë")


def unicode_survey() -> pd.DataFrame:
    rows = [
        ("Zoë", "Súdwest-Fryslân", "control", "Zoë-c", 0, 6.5),
        (NFD_ZOE, "Súdwest-Fryslân", "control", "Zoë-c", 1, 7.0),  # the same person, other encoding
        ("李伟", "Súdwest-Fryslân", "IB", "k-ß", 0, 5.0),
        ("محمد", "Oss", "ER", None, 0, 8.0),
        ("Ærø-01", "Oss", "SG", "c1", 0, 4.5),
        ("P-😀", "Oss", "control", "c1", 1, 3.0),
    ]
    return pd.DataFrame(rows, columns=["participant_id", "municipality", "arm", "consultant_id", "wave", "wellbeing"])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "parquet"])
def test_unicode_ids_are_accepted_and_kept(encoding, tmp_path):
    frame = unicode_survey()
    if encoding == "parquet":
        path = tmp_path / "survey.parquet"
        frame.to_parquet(path, index=False)
    else:
        path = tmp_path / "survey.csv"
        path.write_bytes(frame.to_csv(index=False).encode(encoding))
    survey = bt.load_survey(path, outcomes={"wellbeing": (0, 10)})
    assert set(survey["participant_id"]) == {"Zoë", "李伟", "محمد", "Ærø-01", "P-😀"}
    assert sorted(survey.loc[survey["participant_id"] == "Zoë", "wave"]) == [0, 1]
    assert "Súdwest-Fryslân" in set(survey["municipality"])
    assert set(survey["consultant_id"].dropna()) == {"Zoë-c", "k-ß", "c1"}


def test_unicode_ids_pass_the_command_line_data_checks(tmp_path, no_sampling, earlier_fit, capsys):
    # A spec whose formula needs a column the data lack fails only after the data were accepted.
    data = tmp_path / "survey.csv"
    unicode_survey().to_csv(data, index=False)
    argv = ["fit", str(BAD / "specs" / "formula_missing_column.toml"), "--data", str(data), "--out", str(earlier_fit)]
    code, err = run_main(argv, capsys)
    assert_one_line_error(code, err, names=("formula_missing_column",), fragment="formula names column(s) income")


# --------------------------------------------------------------------------------------------
# the installed executable in a fresh process
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tripwire_path(tmp_path_factory) -> Path:
    """A folder with a stand-in `nutpie` that stops the process if anything tries to sample."""
    folder = tmp_path_factory.mktemp("tripwire")
    (folder / "nutpie.py").write_text(
        'raise SystemExit("tripwire: bad input reached the sampler; validation must come first")\n'
    )
    return folder


def run_executable(args: list[str], tripwire: Path) -> subprocess.CompletedProcess:
    paths = [str(tripwire), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run([str(EXECUTABLE), *args], capture_output=True, text=True, env=env, timeout=180)


def command_for(name: str, out: Path) -> list[str]:
    if name.startswith("specs/"):
        return ["fit", str(BAD / name), "--data", str(GOOD_SURVEY), "--out", str(out)]
    if name.startswith("fits/"):
        return ["diagnose", str(BAD / name)]
    return ["fit", data_spec(name), "--data", str(BAD / name), "--out", str(out)]


def check_executable(case: tuple[str, str, str], tripwire: Path, folder: Path) -> None:
    name, what, fragment = case
    out = folder / name.replace("/", "_") / "model.nc"
    out.parent.mkdir(parents=True)
    out.write_bytes(EARLIER_FIT)
    result = run_executable(command_for(name, out), tripwire)
    names = (Path(name).name, Path(name).stem, GOOD_SURVEY.name)
    assert_one_line_error(
        result.returncode, result.stderr, names=names, fragment=CLI_FRAGMENT.get(name, fragment), progress=True,
    )
    assert result.stdout == ""
    assert_untouched(out)


SAMPLE = ["survey_two_arms.csv", "specs/unknown_family.toml", "specs/formula_missing_column.toml"]


@pytest.mark.parametrize("name", SAMPLE)
def test_executable_fails_in_one_line(name, tripwire_path, tmp_path):
    check_executable(next(c for c in CORPUS if c[0] == name), tripwire_path, tmp_path)


@needs_diagnose
def test_executable_diagnose_of_truncated_fit_fails_in_one_line(tripwire_path, tmp_path):
    check_executable(next(c for c in CORPUS if c[0] == "fits/truncated.nc"), tripwire_path, tmp_path)


@pytest.mark.slow
def test_executable_fails_in_one_line_for_every_bad_input(tripwire_path, tmp_path):
    cases = [c for c in DATA_CASES if c[0] not in NEW_ARM_FOR_CLI] + SPEC_CASES
    if "diagnose" in cli_commands():
        cases += FIT_CASES
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [
            f"{case[0]}: {exc}"
            for case, exc in zip(cases, pool.map(lambda c: _failure(c, tripwire_path, tmp_path), cases))
            if exc is not None
        ]
    assert not failures, "\n".join(failures)


def _failure(case, tripwire: Path, folder: Path) -> AssertionError | None:
    try:
        check_executable(case, tripwire, folder)
    except AssertionError as exc:
        return exc
    return None
