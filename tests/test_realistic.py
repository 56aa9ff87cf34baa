"""Every CLI command over data shaped like the municipalities' own exports (tests/data/realistic/).

The data sets (see tests/data/realistic/README.md) have towns that did not run every arm, one or
several consultants per arm, consultants shared between arms, one consultant id used in two towns,
attrition by arm, missing outcomes, an SPSS file with Dutch column names, value labels with a space
and text waves, and a single town. Each data set is fitted once per model with few draws and the
fits are shared; the commands are asserted on their exit code, on stderr holding no traceback and on
the shape of their answers (one row per town that ran the arms asked about, a new-town row only
where there are at least two towns, the wave named, one report section per fit file).

The CLI runs in this process (`cli.main`), not in a subprocess: importing the stack costs ~8 s per
process, and this file runs about a hundred commands. Uncaught exceptions are turned into a
traceback on the captured stderr and exit code "exception", so a crash fails the test with the
command and the error's last lines.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from bayes_trial.cli import commands as cli

DATA = Path(__file__).resolve().parent / "data" / "realistic"
SAMPLER = ("--draws", "200", "--tune", "200", "--chains", "2")
# a fit too short to converge, with the same model structure (so no new compile)
SHORT = ("--draws", "30", "--tune", "30", "--chains", "2", "--seed", "7")
DUTCH_COLUMNS = {"klantnummer": "participant_id", "gemeente": "municipality", "groep": "arm",
                 "consulent": "consultant_id", "meting": "wave", "welzijn": "wellbeing",
                 "uitstroom_werk": "outflow_work"}
MODELS = ("outflow", "wellbeing")
# a fit that fails its diagnostics is still stored; `fit` may say so with exit code 1
FIT_CODES = (0, 1)


@dataclasses.dataclass(frozen=True)
class DataSet:
    name: str
    files: dict[str, str]  # table -> file name in the data set's folder
    towns: tuple[str, ...]
    # hypothesis -> the towns that ran both arms in it
    hypotheses: dict[str, tuple[str, ...]]
    last_wave: str  # as the data label it
    a_wave: str  # a wave to ask for with --wave, as the data label it
    columns: dict[str, str] | None = None
    control: str | None = None

    @property
    def folder(self) -> Path:
        return DATA / self.name

    @property
    def data_args(self) -> tuple[str, ...]:
        args = ("--data", str(self.folder))
        if self.columns:
            args += ("--columns", ",".join(f"{k}={v}" for k, v in self.columns.items()))
        if self.control:
            args += ("--control", self.control)
        return args

    @property
    def hypothesis(self) -> str:
        """The first hypothesis: plain arm names, so that failures of quoted labels stay apart."""
        return next(iter(self.hypotheses))


DATASETS = {d.name: d for d in (
    DataSet("gemeenten_sav", {"survey": "survey.sav", "register": "register.sav"},
            towns=("Nijmegen", "Oss", "Tilburg"),
            hypotheses={"intensief - controle > 0": ("Oss", "Tilburg"),
                        "'eigen regie' - controle > 0": ("Nijmegen", "Oss")},
            last_wave="t2", a_wave="t1", columns=DUTCH_COLUMNS, control="controle"),
    DataSet("nl4_csv", {"survey": "survey.csv", "register": "register.csv"},
            towns=("Nijmegen", "Oss", "Tilburg", "Zwolle"),
            hypotheses={"self_direction - control > 0": ("Oss", "Tilburg", "Zwolle"),
                        "intensive - control > 0": ("Nijmegen", "Oss", "Zwolle")},
            last_wave="2", a_wave="1"),
    DataSet("one_town_csv", {"survey": "survey.csv", "register": "register.csv"},
            towns=("Oss",), hypotheses={"intensive - control > 0": ("Oss",)},
            last_wave="2", a_wave="1"),
)}
TABLE = {"outflow": "register", "wellbeing": "survey"}
UNIT = {"outflow": "pp", "wellbeing": "points"}
OUTCOME = {"outflow": "outflow_work", "wellbeing": "wellbeing"}


# --------------------------------------------------------------------------------------------
# running the CLI
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    args: tuple[str, ...]
    returncode: int | str
    stdout: str
    stderr: str

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-12:])
        return f"`bayes-trial {' '.join(self.args)}` exited {self.returncode}; stderr ends:\n{tail}"


def run_cli(*args) -> Result:
    import matplotlib.pyplot as plt

    args = tuple(map(str, args))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except Exception:  # noqa: BLE001 - a crash is a test failure with its traceback shown
            traceback.print_exc()
            code = "exception"
    plt.close("all")
    return Result(args, code, out.getvalue(), err.getvalue())


def check_ok(result: Result, codes=(0,)) -> Result:
    assert result.returncode in codes and "Traceback" not in result.stderr, result.describe()
    return result


def check_one_line_error(result: Result) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bayes-trial: error:"), result.describe()


def wave_number(label) -> int:
    """0, 1, 2 from a wave as the answers give it: 2, 2.0 (a CSV column with gaps) or 't2'."""
    return int(float(str(label).strip().lstrip("tT")))


def is_new_town(row: dict) -> bool:
    return "new" in str(row.get("municipality", "")).lower()


def mentions_prior(row: dict) -> bool:
    return "prior" in json.dumps(row, default=str).lower()


def query_json(fit: Path, expression: str, *options) -> tuple[Result, list[dict]]:
    result = run_cli("query", fit, expression, *options, "--json")
    if result.returncode != 0:
        return result, []
    return result, json.loads(result.stdout)["results"]


# --------------------------------------------------------------------------------------------
# shared fits
# --------------------------------------------------------------------------------------------


class Fits:
    """Fits made on first use and kept for the module: (data set, model, kind) -> (path, fit Result)."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[tuple[str, str, str], tuple[Path, Result]] = {}

    def get(self, data: DataSet, model: str, kind: str = "main") -> tuple[Path, Result]:
        key = (data.name, model, kind)
        if key not in self.done:
            path = self.root / data.name / f"{model}_{kind}.nc"
            path.parent.mkdir(parents=True, exist_ok=True)
            settings = SAMPLER if kind == "main" else SHORT
            self.done[key] = path, run_cli("fit", model, *data.data_args, "--out", path, *settings, "--quiet")
        return self.done[key]

    def path(self, data: DataSet, model: str, kind: str = "main") -> Path:
        """The fit file; the test fails here (naming the fit's error) when the fit itself failed."""
        path, result = self.get(data, model, kind)
        if result.returncode not in FIT_CODES or not path.exists():
            pytest.fail(f"needs the {kind} {model} fit of {data.name}, which failed: {result.describe()}")
        return path


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> Fits:
    return Fits(tmp_path_factory.mktemp("realistic_fits"))


def each_model():
    return [pytest.param(DATASETS[d], m, id=f"{d}-{m}") for d in DATASETS for m in MODELS]


def each_data_set():
    return [pytest.param(d, id=d.name) for d in DATASETS.values()]


def each_hypothesis(model=None):
    models = MODELS if model is None else (model,)
    return [pytest.param(d, m, h, id=f"{d.name}-{m}-{h}") for d in DATASETS.values() for m in models
            for h in d.hypotheses]


def read_source(data: DataSet, table: str) -> pd.DataFrame:
    """A data set's table with the project's column names (independent of the package's reader)."""
    path = data.folder / data.files[table]
    if path.suffix == ".sav":
        import pyreadstat

        frame, _ = pyreadstat.read_sav(str(path), apply_value_formats=True)
        frame = frame.rename(columns=data.columns)
    else:
        frame = pd.read_csv(path, dtype={"participant_id": str, "consultant_id": str})
    frame["consultant_id"] = frame["consultant_id"].mask(frame["consultant_id"] == "")
    return frame


# --------------------------------------------------------------------------------------------
# the data sets themselves
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", each_data_set())
def test_data_sets_have_the_shapes_they_promise(data):
    register, survey = read_source(data, "register"), read_source(data, "survey")
    assert 150 <= len(register) <= 500
    assert sorted(register["municipality"].unique()) == list(data.towns)
    assert register["participant_id"].is_unique and register["participant_id"].str.fullmatch(r"\d{6}").all()
    arms_per_town = register.groupby("municipality")["arm"].apply(set)
    for hypothesis, towns in data.hypotheses.items():
        arms = {a.strip("'") for a in re.findall(r"'[^']+'|[A-Za-z_]+", hypothesis.split(">")[0])}
        assert sorted(t for t, ran in arms_per_town.items() if arms <= ran) == list(towns)
    # attrition by arm: the control arm answers less after baseline than the others
    answered = survey.groupby(["arm", "wave"])["participant_id"].nunique().unstack()
    later = answered.iloc[:, -1] / answered.iloc[:, 0]
    control = data.control or "control"
    assert later[control] < later.drop(control).min()


def test_the_spss_export_is_shaped_like_a_municipal_one():
    import pyreadstat

    frame, meta = pyreadstat.read_sav(str(DATA / "gemeenten_sav" / "survey.sav"))
    assert list(frame.columns) == ["klantnummer", "gemeente", "groep", "consulent", "meting", "welzijn"]
    assert meta.variable_value_labels["groep"] == {1.0: "controle", 2.0: "eigen regie", 3.0: "intensief"}
    assert set(frame["meting"]) == {"t0", "t1", "t2"}
    assert frame["klantnummer"].str.startswith("000").all()
    assert (frame["consulent"] == "").any() and frame["welzijn"].isna().any()
    register, _ = pyreadstat.read_sav(str(DATA / "gemeenten_sav" / "register.sav"))
    assert register["uitstroom_werk"].isna().any()
    towns = register.groupby("consulent")["gemeente"].nunique()
    assert towns["K01"] == 2  # one id string, two different people in two towns


# --------------------------------------------------------------------------------------------
# fit, diagnose, ppc
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, model", each_model())
def test_fit_prints_estimates_and_a_verdict(fits, data, model):
    path, result = fits.get(data, model)
    check_ok(result, codes=FIT_CODES)
    assert path.exists()
    output = result.stdout + result.stderr
    verdict = re.search(r"\b(PASS|FAIL)", output)
    assert verdict, f"no diagnostics verdict in the fit's output:\n{output}"
    if result.returncode == 1:
        assert "FAIL" in output
    control = data.control or "control"
    assert f"- {control}" in result.stdout
    table = read_source(data, TABLE[model])
    missing = table[table[OUTCOME[model]].isna()]
    if len(missing):
        # missing outcomes are dropped and counted (per arm and wave), not an error and not silent
        # With a register beside the survey the table counts non-response over everyone randomised, which
        # includes these rows: the table's block (header to blank line) must name their arms.
        blocks = re.findall(r"^(?:Did not answer|Rows without).*?(?:\n\n|\Z)", result.stdout, re.MULTILINE | re.DOTALL)
        lines = [line for line in result.stdout.splitlines() if re.search(r"missing|dropped|left out", line, re.IGNORECASE)]
        assert lines or blocks, f"{len(missing)} missing {OUTCOME[model]} values are not mentioned:\n{result.stdout}"
        text = "\n".join(lines + blocks)
        assert re.search(rf"\b{len(missing)}\b", text) or all(arm in text for arm in set(missing["arm"])), (
            f"{len(missing)} missing {OUTCOME[model]} values, counts not shown:\n{text}")


@pytest.mark.parametrize("data, model", each_model())
def test_diagnose_gives_a_verdict_that_matches_its_exit_code(fits, data, model):
    result = check_ok(run_cli("diagnose", fits.path(data, model), "--json"), codes=(0, 1))
    verdict = json.loads(result.stdout)
    assert verdict["passed"] == (result.returncode == 0)
    assert verdict["verdict"].upper() in ("PASS", "FAIL")


@pytest.mark.parametrize("data, model", each_model())
def test_only_observed_consultants_become_levels(fits, data, model):
    import xarray as xr

    table = read_source(data, TABLE[model])
    real = table.dropna(subset=["consultant_id"]).groupby(["municipality", "consultant_id"]).ngroups
    # persons without a consultant may share one level per town and arm
    without = table[table["consultant_id"].isna()].groupby(["municipality", "arm"]).ngroups
    posterior = xr.open_dataset(fits.path(data, model), group="posterior")
    sizes = {dim: n for name, var in posterior.data_vars.items() if "consultant" in name
             for dim, n in var.sizes.items() if dim not in ("chain", "draw")}
    posterior.close()
    assert sizes, "no consultant effects in the posterior"
    assert max(sizes.values()) <= real + without, (
        f"{sizes} consultant levels for {real} observed town-consultant pairs (+{without} without a consultant)")


@pytest.mark.parametrize("data, model", each_model())
def test_ppc_writes_statistics_and_figures(fits, data, model, tmp_path):
    check_ok(run_cli("ppc", fits.path(data, model), "--out", tmp_path / "ppc", "--draws", "100"))
    statistics = pd.read_csv(tmp_path / "ppc" / "ppc_statistics.csv")
    assert len(statistics) > 0
    assert list((tmp_path / "ppc").glob("*.png"))


# --------------------------------------------------------------------------------------------
# query
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, model, hypothesis", each_hypothesis())
def test_query_by_municipality_answers_for_the_towns_that_ran_the_arms(fits, data, model, hypothesis):
    result, rows = query_json(fits.path(data, model), hypothesis, "--by", "municipality")
    check_ok(result)
    # a town that did not run an arm of the hypothesis (and a new town that cannot be predicted)
    # keeps its row, without numbers, and a note that says why
    unanswered = [row for row in rows if row["mean"] is None]
    for row in unanswered:
        assert row.get("note"), f"row without an answer and without a reason: {row}"
    rows = [row for row in rows if row["mean"] is not None]
    towns = [row for row in rows if not is_new_town(row)]
    new = [row for row in rows if is_new_town(row)]
    assert sorted(row["municipality"] for row in towns) == list(data.hypotheses[hypothesis])
    assert sorted(row["municipality"] for row in unanswered if not is_new_town(row)) == sorted(
        set(data.towns) - set(data.hypotheses[hypothesis]))
    if len(data.towns) >= 2:
        assert len(new) == 1
    else:  # one town: no new-town answer, or one labelled as coming from the prior, never a copy
        for row in new:
            assert mentions_prior(row), f"new-town row from a one-town fit not labelled as prior-based: {row}"
            assert (row["mean"], row["lower"], row["upper"]) != (towns[0]["mean"], towns[0]["lower"], towns[0]["upper"])
    for row in rows:
        assert row["unit"] == UNIT[model] and 0 <= row["p_hypothesis"] <= 1
        assert row["lower"] <= row["mean"] <= row["upper"]
        if model == "wellbeing":  # answered at the last wave, and says so
            assert wave_number(row["wave"]) == wave_number(data.last_wave)


@pytest.mark.parametrize("data, model", each_model())
def test_query_for_a_new_municipality(fits, data, model):
    result, rows = query_json(fits.path(data, model), data.hypothesis, "--municipality", "new")
    if len(data.towns) >= 2:
        check_ok(result)
        assert len(rows) == 1 and is_new_town(rows[0])
        assert rows[0]["lower"] < rows[0]["mean"] < rows[0]["upper"]
    elif result.returncode == 2:
        check_one_line_error(result)
        assert "town" in result.stderr or "municipalit" in result.stderr
    else:
        check_ok(result)
        assert len(rows) == 1 and mentions_prior(rows[0]), f"one-town fit answered a new town without saying: {rows}"


def towns_without_an_arm():
    """For each data set with one, a hypothesis and a town that did not run one of its arms."""
    cases = {}
    for d in DATASETS.values():
        for h, ran in d.hypotheses.items():
            for town in d.towns:
                if town not in ran:
                    cases.setdefault(d.name, pytest.param(d, h, town, id=f"{d.name}-{town}"))
    return list(cases.values())


@pytest.mark.parametrize("data, hypothesis, town", towns_without_an_arm())
def test_query_at_a_town_that_did_not_run_the_arm_is_refused(fits, data, hypothesis, town):
    """Per-town answers exist only for the arms that town ran: one line, not a made-up effect."""
    result = run_cli("query", fits.path(data, "outflow"), hypothesis, "--municipality", town, "--json")
    check_one_line_error(result)
    assert town in result.stderr


@pytest.mark.parametrize("data", each_data_set())
def test_query_by_wave_names_every_wave(fits, data):
    result, rows = query_json(fits.path(data, "wellbeing"), data.hypothesis, "--by", "wave")
    check_ok(result)
    assert sorted(wave_number(row["wave"]) for row in rows) == [0, 1, 2]
    assert all(row["unit"] == "points" for row in rows)


@pytest.mark.parametrize("data", each_data_set())
def test_query_at_a_wave_as_the_data_label_it(fits, data):
    result, rows = query_json(fits.path(data, "wellbeing"), data.hypothesis, "--wave", data.a_wave)
    check_ok(result)
    assert len(rows) == 1 and wave_number(rows[0]["wave"]) == wave_number(data.a_wave)


@pytest.mark.parametrize("data", each_data_set())
def test_query_without_wave_says_which_wave_it_answered(fits, data):
    result = check_ok(run_cli("query", fits.path(data, "wellbeing"), data.hypothesis))
    assert re.search(rf"wave\b.*\b{re.escape(data.last_wave)}\b", result.stdout, re.IGNORECASE | re.DOTALL), result.stdout


@pytest.mark.parametrize("spelling", ["'eigen regie' - controle > 0", "`eigen regie` - controle > 0",
                                      "eigen_regie - controle > 0"])
def test_arm_labels_with_a_space_can_be_queried(fits, spelling):
    data = DATASETS["gemeenten_sav"]
    result, rows = query_json(fits.path(data, "wellbeing"), spelling)
    check_ok(result)
    assert len(rows) == 1 and 0 <= rows[0]["p_hypothesis"] <= 1


# --------------------------------------------------------------------------------------------
# report, compare, priors, prior-check, run
# --------------------------------------------------------------------------------------------


def report_sections(markdown: str) -> int:
    return len(re.findall(r"^#+ Convergence diagnostics", markdown, re.MULTILINE))


@pytest.mark.parametrize("data", each_data_set())
def test_report_has_one_section_per_fit_file(fits, data, tmp_path):
    """Three fits, two of one spec: each file its own section, its own verdict and its own reasons."""
    paths = [fits.path(data, "outflow", "short"), fits.path(data, "outflow"), fits.path(data, "wellbeing")]
    diagnoses = [json.loads(check_ok(run_cli("diagnose", path, "--json"), codes=(0, 1)).stdout) for path in paths]
    assert not diagnoses[0]["passed"], "the short fit was meant to fail its diagnostics"
    check_ok(run_cli("report", *paths, "--out", tmp_path / "report", "--title", data.name))
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "report.html").exists()
    assert report_sections(markdown) == len(paths)
    for path, diagnosis in zip(paths, diagnoses):
        for reason in diagnosis["failed"]:
            assert reason in markdown, f"{path.name} fails with '{reason}', which the report does not show"
    verdicts = re.findall(r"^> (✅|❌)", markdown, re.MULTILINE)
    assert "❌" in verdicts, "the failing short fit is shown without a FAIL verdict"
    if any(diagnosis["passed"] for diagnosis in diagnoses):
        assert "✅" in verdicts, "a passing fit is shown without a PASS verdict"


@pytest.mark.parametrize("data", each_data_set())
def test_compare_two_fits_of_the_same_data(fits, data, tmp_path):
    paths = [fits.path(data, "outflow"), fits.path(data, "outflow", "short")]
    check_ok(run_cli("compare", *paths, "--out", tmp_path / "compare", "--quiet"))
    estimands = pd.read_csv(tmp_path / "compare" / "estimands.csv")
    assert estimands["fit"].nunique() == 2
    assert len(pd.read_csv(tmp_path / "compare" / "loo.csv")) == 2
    spec_diff = pd.read_csv(tmp_path / "compare" / "spec_diff.csv")
    assert spec_diff.iloc[:, 0].astype(str).str.contains("draws").any()


@pytest.mark.parametrize("data, model", each_model())
def test_priors_with_data(data, model):
    result = check_ok(run_cli("priors", model, *data.data_args))
    assert "arm" in result.stdout


@pytest.mark.parametrize("data, model", each_model())
def test_prior_check(data, model, tmp_path):
    check_ok(run_cli("prior-check", model, *data.data_args, "--out", tmp_path / "pc", "--draws", "100", "--seed", "1"))
    assert (tmp_path / "pc" / f"prior_check_{model}.csv").exists()
    assert list((tmp_path / "pc").glob("*.png"))


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_workflow(data: DataSet, folder: Path) -> Path:
    lines = [f"name = {toml_string('realistic_' + data.name)}", f"title = {toml_string(data.name)}",
             f"out = {toml_string(str(folder / 'out'))}", "", "[data]"]
    lines += [f"{table} = {toml_string(str(data.folder / name))}" for table, name in data.files.items()]
    lines.append(f"control_arm = {toml_string(data.control or 'control')}")
    if data.columns:
        lines += ["", "[data.columns]", *(f"{k} = {toml_string(v)}" for k, v in data.columns.items())]
    for model in MODELS:
        lines += ["", "[[models]]", f"spec = {toml_string(model)}", "draws = 200", "tune = 200", "chains = 2"]
    queries = [("outflow", hypothesis, {"by": "municipality"}) for hypothesis in data.hypotheses]
    queries += [("wellbeing", data.hypothesis, {"by": "wave"}),
                ("wellbeing", data.hypothesis, {"wave": int(data.a_wave) if data.a_wave.isdigit() else data.a_wave})]
    if len(data.towns) >= 2:
        queries.append(("wellbeing", data.hypothesis, {"municipality": "new"}))
    for model, hypothesis, options in queries:
        lines += ["", "[[queries]]", f"model = {toml_string(model)}", f"expression = {toml_string(hypothesis)}"]
        lines += [f"{k} = {v if isinstance(v, int) else toml_string(v)}" for k, v in options.items()]
    path = folder / "workflow.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("data", each_data_set())
def test_run_a_workflow_over_the_files(data, tmp_path):
    workflow = write_workflow(data, tmp_path)
    check_ok(run_cli("run", workflow, "--quiet"), codes=FIT_CODES)
    out = tmp_path / "out"
    assert (out / "report.html").exists() and report_sections((out / "report.md").read_text()) == 2
    queries = pd.read_csv(out / "queries.csv")
    outflow = queries[queries["model"] == "outflow"]
    # one block of rows per outflow query, in the workflow's order
    blocks = [outflow[outflow["hypothesis"] == text] for text in outflow["hypothesis"].unique()]
    assert len(blocks) == len(data.hypotheses)
    for block, towns in zip(blocks, data.hypotheses.values()):
        unanswered = block[block["mean"].isna()]
        assert unanswered["note"].notna().all(), "rows without an answer must say why"
        block = block[block["mean"].notna()]
        assert sorted(t for t in block["municipality"] if "new" not in str(t).lower()) == list(towns)
        new = block[block["municipality"].astype(str).str.contains("new")]
        if len(data.towns) >= 2:
            assert len(new) == 1
        else:
            for row in new.to_dict(orient="records"):
                assert mentions_prior(row), f"new-town row from a one-town fit not labelled as prior-based: {row}"
    wellbeing = queries[queries["model"] == "wellbeing"]
    waves = sorted(wave_number(w) for w in wellbeing["wave"])
    expected = [0, 1, 2, wave_number(data.a_wave)] + ([wave_number(data.last_wave)] if len(data.towns) >= 2 else [])
    assert waves == sorted(expected)
