"""Workflows and reports: the demo end to end, disclosure control, honest failure, reuse of fits."""

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import bayes_trial as bt
from bayes_trial.report import document as report
from bayes_trial.workflow import runner as workflow

DEMO = Path(__file__).resolve().parents[1] / "workflows" / "oss_demo.toml"


def _small_copy(tmp_path: Path, *, draws: int, tune: int, name: str) -> Path:
    """The demo workflow with fewer draws and its output in `tmp_path`."""
    text = DEMO.read_text()
    text = re.sub(r"draws = \d+", f"draws = {draws}", text)
    text = re.sub(r"tune = \d+", f"tune = {tune}", text)
    text = re.sub(r"chains = \d+", "chains = 2", text)
    text = re.sub(r'out = ".*"', f'out = "{tmp_path / name}"', text)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    path = _small_copy(tmp, draws=400, tune=400, name="demo")
    outputs = bt.run(path, progress=False)
    return path, outputs


def test_demo_writes_report_queries_and_figures(demo):
    _, outputs = demo
    html = outputs["html"].read_text()
    markdown = outputs["md"].read_text()
    for section in ("outflow", "wellbeing", "Priors as they reached the PyMC model", "Posterior predictive checks",
                    "Convergence diagnostics", "Software and seeds", "P(effect &gt; 0)"):
        assert section in html
    assert "![" in markdown and "P(effect > 0)" in markdown
    # the simulated register pads the survey: wellbeing states MAR over everyone randomised, beside its response
    wellbeing = markdown.split("## wellbeing", 1)[1]
    assert "Assumes missing at random" in wellbeing and "randomised)" in wellbeing
    assert "wellbeing_response.png" in wellbeing and "P(differential < 0)" in wellbeing
    queries = pd.read_csv(outputs["queries"])
    assert set(queries["model"]) == {"outflow", "wellbeing"}
    answered = queries["p_hypothesis"].notna()
    assert queries.loc[answered, "p_hypothesis"].between(0, 1).all()
    # nl7's Wageningen ran no intensive arm: its row has no numbers and says why
    assert (~answered).any() and queries.loc[~answered, "note"].str.contains("did not run").all()
    figures = list((outputs["html"].parent / "figures").rglob("*.png"))
    assert len(figures) >= 10


def test_the_verdict_comes_first(demo):
    _, outputs = demo
    html = outputs["html"].read_text()
    first_verdict = html.index("class='verdict")
    assert first_verdict < html.index("<h2>")


def test_no_participant_id_in_any_output(demo):
    path, outputs = demo
    source = workflow.load_workflow(path).data
    sim = bt.simulate(bt.load_design(source["design"]), seed=int(source["seed"]))
    ids = set(sim.survey["participant_id"]) | set(sim.register["participant_id"])
    out_dir = outputs["html"].parent
    files = [p for p in out_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".nc" for p in files)
    for file in files:
        content = file.read_bytes().decode("latin-1")
        found = [i for i in ids if i in content]
        assert not found, f"{file} holds participant ids such as {found[:3]}"


def test_small_cells_are_suppressed(demo):
    _, outputs = demo
    fit = bt.load(outputs["html"].parent / "fits" / "wellbeing.nc")
    table = report.data_summary(fit, min_cell=200)
    assert (table["persons"] == "<200").any()
    suppressed = table[table["persons"] == "<200"]
    assert suppressed.filter(like="observed mean").isna().all().all()
    with pytest.raises(bt.SpecError, match="floor"):
        report.data_summary(fit, min_cell=report.check_min_cell(3))


def test_an_unchanged_workflow_reuses_its_fits(demo, capsys):
    path, outputs = demo
    fits = outputs["html"].parent / "fits"
    before = {p.name: p.stat().st_mtime_ns for p in fits.glob("*.nc")}
    workflow.run(path, progress=True)
    assert "unchanged since the last run, reusing" in capsys.readouterr().err
    assert before == {p.name: p.stat().st_mtime_ns for p in fits.glob("*.nc")}


def test_a_failing_fit_is_red_on_the_first_screen(tmp_path):
    path = tmp_path / "failing.toml"
    path.write_text(f"""
title = "too few draws"
out = "{tmp_path / 'failing'}"
[data]
design = "small"
seed = 4
[[models]]
spec = "outflow"
draws = 15
tune = 5
chains = 2
""")
    outputs = bt.run(path, progress=False)
    html = outputs["html"].read_text()
    head = html[: html.index("<h2>")]
    assert "verdict fail" in head and "do not use these estimates" in head
    assert "FAILING FIT" in outputs["md"].read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (make test installs it on CI)")
def test_report_loads_in_headless_chromium_and_shows_its_figures(demo):
    _, outputs = demo
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         outputs["html"].as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body[^>]*>", result.stdout).group(0)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    loaded = int(re.search(r'data-images-loaded="(\d+)"', body).group(1))
    assert images >= 10 and loaded == images
    assert "data-errors" not in body
