"""Bundled published numbers and the re-analysis of the Oss (and Nijmegen) reports."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from bayes_trial.aggregate import published
from bayes_trial.core.errors import DataError, SpecError

FEW = {"draws": 20_000, "seed": 7}


# --------------------------------------------------------------------------------------------- data

@pytest.mark.parametrize("name", published.PUBLISHED_TABLES)
def test_bundled_tables_load_and_are_documented(name):
    table = published.load_published(name)
    assert len(table) > 0
    readme = (published.PUBLISHED_DIR / "README.md").read_text()
    assert f"`{name}.csv`" in readme
    for column in table.columns:
        assert f"`{column}`" in readme, f"{name}.csv column {column} is not described in the README"


def test_unknown_table():
    with pytest.raises(DataError, match="unknown published table 'oss'"):
        published.load_published("oss")


def test_oss_outflow_counts_are_the_printed_numbers():
    counts = published.oss_outflow_counts().set_index("arm")
    assert counts.loc[["ER", "IB", "SG"], ["n", "events"]].to_numpy().tolist() == [[111, 38], [115, 33], [119, 35]]
    reference = counts.loc["reference"]
    assert (reference["n"], reference["events"]) == (1502, 225)
    assert round(100 * reference["events"] / reference["n"], 1) == 15.0  # printed 15.0%
    # Tabel 2.3.1 misprints ER as 32,2%; the count is right
    table = published.load_published("oss_outflow")
    er = table[(table["source_table"] == "Tabel 2.3.1") & (table["arm"] == "ER")].iloc[0]
    assert er["pct_printed"] == "32,2%" and "misprint" in er["note"]


def test_oss_strata_counts_reproduce_printed_percentages():
    table = published.load_published("oss_outflow")
    strata = table[table["source_table"] == "Tabel 3.1.4"]
    for row in strata.itertuples():
        printed = float(row.pct_printed.rstrip("%"))
        assert round(100 * row.n_outflow_work / row.n) == round(printed)
        if row.stratum != "all":  # the only count that rounds to the printed whole percentage
            matches = [k for k in range(row.n + 1) if round(100 * k / row.n) == round(printed)]
            assert matches == [row.n_outflow_work]
    by_arm = strata.pivot(index="arm", columns="stratum", values="n_outflow_work")
    assert (by_arm["stock"] + by_arm["new_inflow"] == by_arm["all"]).all()
    assert by_arm["all"].sum() == 96  # footnote 7: 96 outflows (BUS, excluding withdrawals)
    with pytest.raises(DataError, match="no rows for sample 'incl_withdrawals', stratum 'stock'"):
        published.oss_outflow_counts("incl_withdrawals", "stock")


def test_marker_se_bounds_reproduce_town_effects():
    effects = published.load_published("town_effects")
    itt_share = 364 / 389  # Tabel 3 N over the randomised 130 / 128 / 131
    sizes = {"ontheffing": 130 * itt_share, "intensivering": 128 * itt_share}
    for row in effects[effects["town"] == "Nijmegen"].itertuples():
        marker = "" if pd.isna(row.sig_marker) else row.sig_marker
        lower, upper = published.marker_se_bounds(row.estimate, marker, n_treat=sizes[row.treatment],
                                                  n_control=131 * itt_share)
        assert (round(lower, 2), round(upper, 2)) == (row.se_lower, row.se_upper)
        assert row.se == row.se_upper
    for row in effects[effects["town"] == "Oss"].itertuples():
        p1, p0 = row.events_treat / row.n_treat, row.events_control / row.n_control
        assert round(100 * (p1 - p0), 2) == row.estimate
        assert round(100 * math.sqrt(p1 * (1 - p1) / row.n_treat + p0 * (1 - p0) / row.n_control), 2) == row.se


def test_marker_se_bounds_oss_markers_and_errors():
    lower, upper = published.marker_se_bounds(9.4, "***", markers=published.OSS_MARKERS)
    assert lower == 0 and upper == pytest.approx(9.4 / 2.576)  # "9.4 pp*** implies SE < 3.65 pp"
    assert published.marker_se_bounds(3.0, "", markers=published.OSS_MARKERS) == (pytest.approx(3 / 1.645), math.inf)
    with pytest.raises(DataError, match="marker"):
        published.marker_se_bounds(1.0, "**")  # Nijmegen prints no double star
    with pytest.raises(DataError, match="arm sizes"):
        published.marker_se_bounds(1.0, "*", n_treat=0, n_control=10)


# --------------------------------------------------------------------------------------------- outflow

def exact_p_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X > Y) for independent X ~ Beta(a1, b1), Y ~ Beta(a2, b2), by quadrature."""
    return integrate.quad(lambda x: stats.beta.pdf(x, a1, b1) * stats.beta.cdf(x, a2, b2), 0, 1)[0]


def test_outflow_posterior_is_the_conjugate_beta_posterior():
    result = published.outflow_posterior(**FEW)
    arms = result.arms.set_index("arm")
    for arm, (n, events) in {"ER": (111, 38), "IB": (115, 33), "SG": (119, 35), "reference": (1502, 225)}.items():
        exact_mean = 100 * (events + 1) / (n + 2)
        assert arms.loc[arm, "mean"] == pytest.approx(exact_mean, abs=0.15)
        assert arms.loc[arm, "upper"] == pytest.approx(100 * stats.beta.ppf(0.95, events + 1, n - events + 1), abs=0.3)
    contrasts = result.contrasts.set_index("contrast")
    assert list(contrasts.index) == ["ER - SG", "IB - SG", "ER - IB", "participants - reference", "SG - reference"]
    assert contrasts.loc["ER - SG", "p_gt_0"] == pytest.approx(exact_p_greater(39, 74, 36, 85), abs=0.01)
    assert contrasts.loc["IB - SG", "p_gt_0"] == pytest.approx(exact_p_greater(34, 83, 36, 85), abs=0.01)
    assert contrasts.loc["ER - SG", "observed"] == pytest.approx(100 * (38 / 111 - 35 / 119))
    assert contrasts.loc["participants - reference", "p_gt_0"] > 0.999
    assert (contrasts["p_gt_threshold"] <= contrasts["p_gt_0"]).all()
    assert result.effective_draws == FEW["draws"] and "no MCMC" in result.method


def test_outflow_priors_move_answers_the_way_they_should():
    table = published.outflow_sensitivity(**FEW).set_index(["prior", "contrast"])
    assert set(table.index.get_level_values("prior")) == set(published.OUTFLOW_PRIORS)
    er = table.xs("ER - SG", level="contrast")
    # the sceptical prior shrinks the arm difference towards zero and narrows it
    assert 0 < er.loc["sceptical", "mean"] < er.loc["uniform", "mean"]
    assert er.loc["sceptical", "upper"] - er.loc["sceptical", "lower"] < er.loc["uniform", "upper"] - er.loc["uniform", "lower"]
    assert er.loc["sceptical", "effective_draws"] < FEW["draws"]
    # the historical prior (18%) pulls the small arms down, so participants - reference shrinks
    gap = table.xs("participants - reference", level="contrast")["mean"]
    assert gap["historical"] < gap["uniform"]
    # but no prior changes the qualitative answer
    assert er["p_gt_0"].between(0.6, 0.85).all()


def test_outflow_prior_and_count_errors():
    custom = published.outflow_posterior(prior="Beta(2, 2)", **FEW)
    assert str(custom.prior) == "p ~ Beta(2, 2)"
    with pytest.raises(SpecError, match="use one of"):
        published.outflow_posterior(prior="Normal(0, 1)", **FEW)
    with pytest.raises(SpecError, match="draws"):
        published.outflow_posterior(draws=10)
    bad = pd.DataFrame({"arm": ["ER", "SG"], "n": [10, 10], "events": [12, 3]})
    with pytest.raises(DataError, match="events > n"):
        published.outflow_posterior(bad, **FEW)
    with pytest.raises(DataError, match="control arm 'SG' not found"):
        published.outflow_posterior(pd.DataFrame({"arm": ["ER", "IB"], "n": [10, 10], "events": [1, 3]}), **FEW)


def test_outflow_strata():
    table = published.outflow_strata(**FEW)
    assert set(table["stratum"]) == {"stock", "new_inflow", "all", "stock - new_inflow"}
    stock = table[(table["stratum"] == "stock") & (table["contrast"] == "IB - SG")].iloc[0]
    assert stock["observed"] == pytest.approx(100 * (10 / 51 - 12 / 52))
    interaction = table[table["stratum"] == "stock - new_inflow"].set_index("contrast")
    assert list(interaction.index) == ["ER - SG", "IB - SG"]
    assert interaction.loc["ER - SG", "sd"] > table.loc[table["stratum"] == "stock", "sd"].max()


# --------------------------------------------------------------------------------------------- response

def test_response_by_arm_and_wave():
    result = published.response_posterior(**FEW)
    cells = result.cells.set_index(["arm", "wave"])
    assert len(cells) == 9
    assert cells.loc[("SG", "t1"), "n_completed"] == 41 and cells.loc[("SG", "t1"), "n_net"] == 102
    assert cells.loc[("SG", "t1"), "mean"] == pytest.approx(100 * 42 / 104, abs=0.15)
    assert cells.loc[("SG", "t1"), "nonresponse_shift"] == pytest.approx(0.6, abs=0.01)
    contrasts = result.contrasts.set_index(["wave", "contrast"])
    assert contrasts.loc[("t1", "ER - SG"), "p_gt_0"] > 0.999
    assert contrasts.loc[("t1", "ER - SG"), "mean"] > contrasts.loc[("t0", "ER - SG"), "mean"]
    with pytest.raises(SpecError, match="only Beta priors"):
        published.response_posterior(prior="sceptical", **FEW)
    with pytest.raises(DataError, match="missing column"):
        published.response_posterior(pd.DataFrame({"arm": ["SG"], "wave": ["t0"]}))


# --------------------------------------------------------------------------------------------- report

@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    out = tmp_path_factory.mktemp("published")
    return published.published_oss_analysis(out, seed=3, draws=20_000, pooling_draws=500, chains=2)


def test_published_analysis_tables_and_figures(analysis):
    assert {"outflow_arms", "outflow_contrasts", "outflow_sensitivity", "outflow_strata", "response",
            "response_contrasts", "survey_bounds", "survey_bounds_cells", "survey_bounds_left_out", "town_effects",
            "town_pooling", "town_pooling_sensitivity"} <= set(analysis.tables)
    for paths in analysis.figures.values():
        assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)
    assert set(analysis.figures) == {"outflow", "town_forest"}
    out = analysis.figures["outflow"][0].parent
    assert (out / "outflow_contrasts.csv").exists()
    assert analysis.settings["divergences"] == {"exemption": 0, "intensive": 0}


def test_published_analysis_town_pooling(analysis):
    pooling = analysis.tables["town_pooling"]
    towns = pooling[pooling["kind"] == "group"]
    assert set(towns["group"]) == {"Oss", "Nijmegen"} and set(towns["arm_type"]) == {"exemption", "intensive"}
    assert towns["pooling_factor"].between(0, 1).all()
    for arm_type, rows in pooling.groupby("arm_type"):
        pooled = rows[rows["kind"] == "pooled_mean"].iloc[0]
        new = rows[rows["kind"] == "new_group"].iloc[0]
        raw = rows.loc[rows["kind"] == "group", "estimate"]
        assert raw.min() < pooled["mean"] < raw.max()
        assert new["upper"] - new["lower"] > pooled["upper"] - pooled["lower"]
    # a wider prior on the between-town SD gives a wider new-town interval
    sens = analysis.tables["town_pooling_sensitivity"]
    width = sens[sens["quantity"] == "new_group"].assign(width=lambda d: d["upper"] - d["lower"])
    for _, rows in width.groupby("arm_type"):
        assert rows.set_index("tau_prior").loc[list(published.TOWN_TAU_SENSITIVITY), "width"].is_monotonic_increasing


def test_published_analysis_sentences_and_markdown(analysis):
    claims = [s for s in analysis.sentences if s.startswith("The report claimed")]
    assert len(claims) >= 3
    text = " ".join(analysis.sentences)
    for needle in ("P(ER > SG)", "40%", "new town", "self-selection", "worst case"):
        assert needle in text
    assert all("probability" in s or "P(" in s for s in analysis.sentences)
    assert any("prior" in line for line in analysis.methods)
    markdown = analysis.to_markdown()
    assert markdown.startswith("## What the published Oss numbers support")
    assert "| contrast |" in markdown and "oss_outflow.png" in markdown and "worst_lower" in markdown
    assert "Oss" in published.format_analysis(analysis)


def test_published_analysis_without_output_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = published.published_oss_analysis(None, seed=4, draws=2_000, pooling_draws=200, chains=1)
    assert result.figures == {} and list(tmp_path.iterdir()) == []
    assert np.isfinite(result.tables["outflow_contrasts"]["mean"]).all()


# --------------------------------------------------------------------------------------------- survey bounds

def test_worst_case_bounds_hand_computed():
    means = pd.DataFrame({"outcome": ["x", "x", "p", "p"], "source_table": "T", "scale": ["0-10", "0-10", "percent",
                                                                                          "percent"],
                          "arm": ["SG", "ER", "SG", "ER"], "wave": "t1", "mean": [6.0, 7.0, 40.0, 30.0],
                          "note": ["", "", "a binary outcome", "a binary outcome"]})
    response = pd.DataFrame({"arm": ["SG", "ER"], "wave": "t1", "n_net": [100, 100], "n_completed": [40, 80]})
    bounds = published.survey_worst_case_bounds(means, response)
    cells = bounds.cells.set_index("arm")
    # SG: 0.4 * 6 = 2.4 if every non-respondent scored 0, 2.4 + 0.6 * 10 = 8.4 if every one scored 10
    assert cells.loc["SG", ["worst_lower", "worst_upper"]].tolist() == pytest.approx([2.4, 8.4])
    assert cells.loc["ER", ["worst_lower", "worst_upper"]].tolist() == pytest.approx([5.6, 7.6])
    (row,) = bounds.contrasts.to_dict("records")
    assert row["contrast"] == "ER - SG" and row["complete_case"] == pytest.approx(1.0)
    assert (row["worst_lower"], row["worst_upper"], row["width"]) == pytest.approx((5.6 - 8.4, 7.6 - 2.4, 8.0))
    assert bounds.left_out["outcome"].tolist() == ["p"] and "binary" in bounds.left_out["reason"][0]


def test_worst_case_bounds_of_the_printed_oss_means():
    bounds = published.survey_worst_case_bounds()
    row = bounds.contrasts.set_index(["outcome", "wave", "contrast"]).loc[("wellbeing", "t1", "ER - SG")]
    # ER 6.4 with 80/98 answering, SG 6.3 with 41/102
    er, sg = 80 / 98, 41 / 102
    assert row["worst_lower"] == pytest.approx(er * 6.4 - (sg * 6.3 + (1 - sg) * 10))
    assert row["worst_upper"] == pytest.approx(er * 6.4 + (1 - er) * 10 - sg * 6.3)
    assert row["complete_case"] == pytest.approx(0.1)
    assert set(bounds.contrasts["outcome"]) == {"wellbeing", "subjective_health", "capabilities",
                                                "social_participation", "job_search_self_efficacy",
                                                "institutional_trust", "social_trust"}
    assert set(bounds.left_out["outcome"]) == {"deprivation_poverty", "income_poverty"}
    assert len(bounds.contrasts) == 7 * 3 * 2


def test_worst_case_bounds_errors():
    means = published.oss_survey_means()
    with pytest.raises(DataError, match="no response count for arm 'ER', wave 't1'"):
        published.survey_worst_case_bounds(means, published.oss_response_counts().query("not (arm == 'ER' and wave == 't1')"))
    with pytest.raises(DataError, match="outside the scale 0-10"):
        published.survey_worst_case_bounds(means.assign(mean=means["mean"] + 20))
    with pytest.raises(DataError, match="missing column"):
        published.survey_worst_case_bounds(means.drop(columns="scale"))
