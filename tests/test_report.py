"""What the report layer promises: every fit's verdict first, disclosure control, no participant rows,
files written whole."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from bayes_trial.core.errors import SpecError
from bayes_trial.report import document as report


def test_a_minimum_cell_below_the_floor_is_refused(outflow_fit, tmp_path):
    with pytest.raises(SpecError, match="below the disclosure floor of 5 persons"):
        report.report([outflow_fit], tmp_path, min_cell=4)


def test_small_cells_are_shown_as_fewer_than_the_minimum(wellbeing_fit):
    counts = wellbeing_fit.data.groupby(["arm", "wave", "municipality"], observed=True).size()
    min_cell = int(counts.median()) + 1  # some cells above, some below
    table = report.data_summary(wellbeing_fit, min_cell=min_cell)
    small = table["persons"] == f"<{min_cell}"
    assert small.any() and (~small).any()
    mean_column = next(c for c in table.columns if c.startswith("observed mean"))
    assert table.loc[small, mean_column].isna().all()
    assert table.loc[~small, "persons"].astype(int).min() >= min_cell


def test_every_verdict_comes_before_the_first_section(outflow_fit, wellbeing_fit, tmp_path):
    blocks = report.report_blocks([outflow_fit, wellbeing_fit], tmp_path / "figures", jobs=2)
    kinds = [b.kind for b in blocks]
    first_section = kinds.index("h2")
    assert kinds[1:3] == ["verdict", "verdict"] and first_section == 3
    assert [b.kind for b in blocks[first_section:]].count("verdict") == 2
    assert all(b.path.is_file() for b in blocks if b.kind == "figure")
    # Sections built in two processes read as those built one after the other in this one.
    alone = report.report_blocks([outflow_fit, wellbeing_fit], tmp_path / "figures_alone", jobs=1)
    assert report.render_markdown(alone, tmp_path / "figures_alone") == report.render_markdown(blocks, tmp_path / "figures")


def test_jobs_below_one_fail_in_one_line(outflow_fit_path, tmp_path, capsys):
    from bayes_trial.cli import commands as cli

    assert cli.main(["report", str(outflow_fit_path), "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert capsys.readouterr().err == "bayes-trial: error: jobs: expected at least 1 process, got 0\n"
    assert not (tmp_path / "report.md").exists()


def test_the_written_report_holds_no_participant_rows(wellbeing_fit, tmp_path):
    paths = report.report([wellbeing_fit], tmp_path)
    assert set(paths) == {"html", "md"}
    pseudonyms = set(wellbeing_fit.data["participant_id"])
    for path in paths.values():
        text = path.read_text()
        assert not pseudonyms & set(re.findall(r"\bp\d{5}\b", text))
        assert "Diagnostics" in text
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_a_failed_write_leaves_the_previous_report_whole(outflow_fit, tmp_path, monkeypatch):
    paths = report.report([outflow_fit], tmp_path)
    before = paths["md"].read_text()

    def broken(blocks):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render_html", broken)
    with pytest.raises(RuntimeError):
        report.report([outflow_fit], tmp_path, title="another title")
    assert paths["md"].read_text() == before


def test_a_family_whose_sbc_failed_is_flagged_on_its_fits(tmp_path):
    from bayes_trial.checks.calibration import calibration

    sbc = tmp_path / "sbc"
    for run, in_band, adjusted in (("outflow", [True, False], [True, True]), ("wellbeing", [True, False], [True, False])):
        (sbc / run).mkdir(parents=True)
        pd.DataFrame({"parameter": ["Intercept", "sigma"], "sims": [200, 200], "in_band": in_band,
                      "in_adjusted_band": adjusted}).to_csv(sbc / run / "summary.csv", index=False)
    passed = calibration("bernoulli", sbc)
    assert passed.status == "PASS" and passed.touched == ("outflow: sigma",)
    assert "1 of 2 parameters (outflow: sigma) leave their own 95% band" in passed.format()
    failed = calibration("gaussian", sbc)
    assert failed.status == "FAIL" and failed.failed == ("wellbeing: sigma",)
    assert "FAIL for the gaussian family" in failed.format()
    assert calibration("hazard", sbc).status == "NONE"


def test_the_report_shows_the_sbc_record_of_the_fits_family(outflow_fit, tmp_path):
    blocks = report.fit_blocks(outflow_fit, tmp_path)
    assert any(b.kind == "p" and "Simulation-based calibration" in b.text and "bernoulli family" in b.text
               for b in blocks)
