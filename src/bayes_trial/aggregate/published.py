"""The published Oss and Nijmegen numbers, re-analysed with honest uncertainty.

The reports print point estimates with significance stars only. From the printed counts and effects
(bundled in ``data/published/``, see its README) this module answers the reports' questions with
posterior probabilities:

- **Oss outflow to full-time work** (Tabel 2.3.1: ER 38/111, IB 33/115, SG 35/119; reference group
  15.0% of 1502): each group's outflow probability has a conjugate Beta posterior, so the posterior is
  exact and is summarised with independent Monte Carlo draws (no MCMC). The sceptical prior, a normal
  prior on each arm's log odds ratio against SG, is not conjugate: its posterior is the exact Beta
  posterior reweighted by the prior ratio (sampling-importance resampling; its effective sample size
  is reported).
- **Oss survey response by arm and wave** (Tabel 2.5.1): Beta posterior per arm x wave cell.
- **Oss survey means** (Tabellen 3.1.8-3.1.13, adjusted means of respondents on 0-10 scales):
  worst-case (Manski) bounds on each arm's mean over its whole net sample and on the arm-minus-SG
  contrasts, which assume nothing about the non-respondents (:func:`survey_worst_case_bounds`).
- **Pooling across towns** (Oss and Nijmegen exit to work, ``town_effects.csv``) with
  :func:`bayes_trial.pooling.pool`, the Rubin model (MCMC, non-centred).

:func:`published_oss_analysis` runs everything and returns tables, figures and plain-language
sentences ("The report claimed X; the data support Y with probability Z") for a report section.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from bayes_trial.core.errors import DataError, SpecError
from bayes_trial.core.paths import PROJECT_ROOT
from bayes_trial.aggregate.pooling import check_counts, format_pooling_summary, plot_forest, pool, pooling_summary
from bayes_trial.plots.figures import save_figure_as
from bayes_trial.core.summaries import DEFAULT_INTERVAL, summarise_draws

PUBLISHED_DIR = PROJECT_ROOT / "data" / "published"
PUBLISHED_TABLES = ("eight_schools", "oss_outflow", "oss_response", "oss_survey_means", "town_effects")
#: Survey scales whose end points are known: worst-case bounds use them (percent rows are left out).
SURVEY_SCALE_RANGES = {"0-10": (0.0, 10.0)}

# Printed significance markers -> the |z| interval they imply (two-sided tests).
NIJMEGEN_MARKERS = {"*": (1.96, math.inf), "~": (1.645, 1.96), "": (0.0, 1.645)}
OSS_MARKERS = {"***": (2.576, math.inf), "**": (1.96, 2.576), "*": (1.645, 1.96), "": (0.0, 1.645)}

MONTE_CARLO_DRAWS = 200_000
CONTROL_ARM = "SG"
REFERENCE_GROUP = "reference"


@dataclass(frozen=True)
class OutflowPrior:
    """Prior for group outflow probabilities: Beta(a, b) on each, optionally times a normal prior
    with SD `log_odds_ratio_sd` on each randomised arm's log odds ratio against the control arm."""

    name: str
    beta: tuple[float, float]
    log_odds_ratio_sd: float | None
    description: str

    def __str__(self) -> str:
        text = f"p ~ Beta({self.beta[0]:g}, {self.beta[1]:g})"
        if self.log_odds_ratio_sd is not None:
            text += f"; log odds ratio vs control ~ Normal(0, {self.log_odds_ratio_sd:g})"
        return text


OUTFLOW_PRIORS = {
    "uniform": OutflowPrior("uniform", (1.0, 1.0), None,
                            "flat: every outflow probability between 0 and 100% equally likely"),
    "jeffreys": OutflowPrior("jeffreys", (0.5, 0.5), None, "Jeffreys: the standard minimally informative prior"),
    "historical": OutflowPrior("historical", (3.6, 16.4), None,
                               "every group centred on 18%, the 2017-2019 outflow of the whole eligible Oss "
                               "population (report §3.1.1), worth 20 persons"),
    "sceptical": OutflowPrior("sceptical", (1.0, 1.0), 0.25,
                              "arm effects near zero: log odds ratio vs SG ~ Normal(0, 0.25), i.e. differences "
                              "beyond about ±10 pp are unlikely a priori"),
}
DEFAULT_OUTFLOW_PRIOR = "uniform"

# Rubin-model prior for town effects on exit to work, in percentage points. The ALMP meta-analysis the
# Oss report cites finds 5.6 pp on average in experiments, so a pooled effect beyond ±20 pp is
# implausible; a between-town SD of a few pp is expected (median of HalfNormal(5) is 3.4 pp).
TOWN_PRIOR = {"mu": "Normal(0, 10)", "tau": "HalfNormal(5)"}
TOWN_TAU_SENSITIVITY = ("HalfNormal(2.5)", "HalfNormal(5)", "HalfNormal(10)")


# --------------------------------------------------------------------------------------------- data

def load_published(name: str) -> pd.DataFrame:
    """A bundled table of printed numbers: one of PUBLISHED_TABLES (see data/published/README.md)."""
    if name not in PUBLISHED_TABLES:
        raise DataError(f"unknown published table {name!r}; available: {', '.join(PUBLISHED_TABLES)}")
    path = PUBLISHED_DIR / f"{name}.csv"
    if not path.exists():
        raise DataError(f"{path}: bundled table is missing (is BAYES_TRIAL_HOME set to the project root?)")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def marker_se_bounds(estimate: float, marker: str, *, n_treat: float | None = None,
                     n_control: float | None = None, markers: Mapping[str, tuple[float, float]] = NIJMEGEN_MARKERS,
                     unit_scale: float = 100.0) -> tuple[float, float]:
    """Range [lower, upper) of standard errors consistent with a printed estimate and its marker.

    The marker bounds |z| = |estimate| / se (``markers``: marker -> (z_low, z_high), default Nijmegen's
    ``*`` p<0.05, ``~`` p<0.10). With the arm sizes, the upper bound is capped at the largest SE a
    difference of two proportions can have, ``unit_scale * sqrt(1/(4 n_treat) + 1/(4 n_control))``
    (``unit_scale`` 100 for percentage points).
    """
    marker = "" if marker is None or (isinstance(marker, float) and math.isnan(marker)) else str(marker).strip()
    if marker not in markers:
        raise DataError(f"significance marker {marker!r} unknown; expected one of {', '.join(map(repr, markers))}")
    z_low, z_high = markers[marker]
    size = abs(float(estimate))
    lower = size / z_high if math.isfinite(z_high) else 0.0
    upper = size / z_low if z_low > 0 else math.inf
    if n_treat is not None and n_control is not None:
        if n_treat <= 0 or n_control <= 0:
            raise DataError(f"arm sizes must be positive, got {n_treat} and {n_control}")
        upper = min(upper, unit_scale * math.sqrt(0.25 / n_treat + 0.25 / n_control))
    return lower, upper


def oss_outflow_counts(sample: str = "incl_withdrawals", stratum: str = "all") -> pd.DataFrame:
    """Printed Oss outflow-to-work counts as (group, arm, n, events, count_origin).

    `sample`: ``incl_withdrawals`` (Tabel 2.3.1, all 345 randomised eligible registrants) or
    ``excl_withdrawals`` (Tabel 3.1.4). `stratum`: ``all``, ``stock`` or ``new_inflow`` (Tabel 3.1.4
    only). The non-randomised reference group (15.0% of 1502) is added for ``stratum="all"``.
    """
    table = load_published("oss_outflow")
    arms = table[(table["sample"] == sample) & (table["stratum"] == stratum)
                 & table["arm"].isin(["ER", "IB", CONTROL_ARM])]
    if arms.empty:
        available = sorted(set(table["sample"] + "/" + table["stratum"]))
        raise DataError(f"oss_outflow.csv has no rows for sample {sample!r}, stratum {stratum!r}; "
                        f"available sample/stratum: {', '.join(available)}")
    if stratum == "all":
        arms = pd.concat([arms, table[table["arm"] == REFERENCE_GROUP]])
    return pd.DataFrame({"group": stratum, "arm": arms["arm"].to_numpy(), "n": arms["n"].to_numpy(dtype=int),
                         "events": arms["n_outflow_work"].to_numpy(dtype=int),
                         "count_origin": arms["count_origin"].to_numpy()})


def oss_response_counts() -> pd.DataFrame:
    """Completed participant questionnaires per arm and wave (Tabel 2.5.1) out of the net arm size."""
    table = load_published("oss_response")
    return table[["arm", "wave", "n_net", "n_completed"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------- outflow

@dataclass
class OutflowPosterior:
    """Posterior of group outflow probabilities (tables in %, differences in percentage points)."""

    arms: pd.DataFrame
    contrasts: pd.DataFrame
    draws: dict[str, np.ndarray]
    prior: OutflowPrior
    threshold: float
    prob: float
    effective_draws: float
    method: str


def resolve_outflow_prior(prior: str | OutflowPrior) -> OutflowPrior:
    """A name from OUTFLOW_PRIORS, an OutflowPrior, or 'Beta(a, b)' for the same Beta on every group."""
    if isinstance(prior, OutflowPrior):
        return prior
    if isinstance(prior, str) and prior in OUTFLOW_PRIORS:
        return OUTFLOW_PRIORS[prior]
    from bayes_trial.modelling.spec import parse_prior

    parsed = parse_prior(str(prior), where="outflow prior")
    if parsed.dist != "Beta":
        raise SpecError(f"outflow prior {prior!r}: use one of {', '.join(OUTFLOW_PRIORS)} or 'Beta(a, b)'")
    beta = (parsed.params["alpha"], parsed.params["beta"])
    return OutflowPrior(str(prior), beta, None, f"Beta({beta[0]:g}, {beta[1]:g}) on every group")


def _check_mc(draws: int, prob: float, seed: int) -> None:
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 100:
        raise SpecError(f"draws must be an integer >= 100, got {draws!r}")
    if not 0 < prob < 1:
        raise SpecError(f"prob must be between 0 and 1, got {prob!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")


def _single_group(counts: pd.DataFrame, control: str) -> pd.DataFrame:
    frame = counts if "group" in counts else counts.assign(group="all")
    checked = check_counts(frame[["group", "arm", "n", "events"]], control)
    if checked["group"].nunique() != 1:
        raise DataError("outflow counts: expected one group (stratum) at a time; use outflow_strata() for strata")
    return checked.reset_index(drop=True)


def _sceptical_weights(draws: dict[str, np.ndarray], arms: Sequence[str], control: str,
                       prior: OutflowPrior) -> np.ndarray:
    """Log importance weights turning the Beta prior of the treated arms into the log-odds-ratio prior."""
    a, b = prior.beta
    log_w = np.zeros(len(draws[control]))
    for arm in arms:
        p = draws[arm]
        lor = special.logit(p) - special.logit(draws[control])
        # density of p implied by a normal log odds ratio, divided by the Beta density it replaces
        log_w += stats.norm.logpdf(lor, 0.0, prior.log_odds_ratio_sd) - np.log(p * (1 - p))
        log_w -= stats.beta.logpdf(p, a, b)
    return log_w


def outflow_posterior(counts: pd.DataFrame | None = None, *, prior: str | OutflowPrior = DEFAULT_OUTFLOW_PRIOR,
                      control: str = CONTROL_ARM, reference: str = REFERENCE_GROUP, threshold: float = 5.0,
                      prob: float = DEFAULT_INTERVAL, draws: int = MONTE_CARLO_DRAWS, seed: int = 0) -> OutflowPosterior:
    """Posterior outflow probability of each group and the differences that the reports discuss.

    `counts`: columns arm, n, events (default: the printed Oss counts incl. withdrawals plus the
    reference group). Contrasts, in percentage points: each arm - `control`, treatment arms against
    each other, and, when `reference` is present, participants (the arms' n-weighted mean) - reference
    and `control` - reference. Columns p_gt_0 = P(difference > 0) and p_gt_threshold =
    P(difference > `threshold` pp).
    """
    counts = _single_group(oss_outflow_counts() if counts is None else counts, control)
    _check_mc(draws, prob, seed)
    prior = resolve_outflow_prior(prior)
    rng = np.random.default_rng(seed)
    a, b = prior.beta
    posterior = {row.arm: rng.beta(a + row.events, b + row.n - row.events, size=draws) for row in counts.itertuples()}
    randomised = [arm for arm in counts["arm"] if arm != reference]
    treated = [arm for arm in randomised if arm != control]
    effective = float(draws)
    method = (f"exact conjugate Beta posterior, summarised with {draws:,} independent Monte Carlo draws "
              "(no MCMC)")
    if prior.log_odds_ratio_sd is not None:
        log_w = _sceptical_weights(posterior, treated, control, prior)
        weights = np.exp(log_w - log_w.max())
        weights /= weights.sum()
        effective = float(1.0 / np.sum(weights**2))
        keep = rng.choice(draws, size=draws, p=weights)
        posterior = {arm: values[keep] for arm, values in posterior.items()}
        method = (f"exact Beta posterior reweighted to the log-odds-ratio prior and resampled "
                  f"({draws:,} draws, effective sample size {effective:,.0f})")

    observed = dict(zip(counts["arm"], 100 * counts["events"] / counts["n"]))
    arm_rows = []
    for row in counts.itertuples():
        stats_ = summarise_draws(100 * posterior[row.arm], prob)
        stats_.pop("p_gt_0")
        arm_rows.append({"arm": row.arm, "randomised": row.arm != reference, "n": row.n, "events": row.events,
                         "observed_pct": observed[row.arm], **stats_})

    sizes = dict(zip(counts["arm"], counts["n"]))
    participants = sum(sizes[arm] * posterior[arm] for arm in randomised) / sum(sizes[arm] for arm in randomised)
    observed_participants = (sum(counts.set_index("arm").loc[randomised, "events"])
                             / sum(sizes[arm] for arm in randomised) * 100)
    pairs = [(arm, control) for arm in treated]
    pairs += [(first, second) for i, first in enumerate(treated) for second in treated[i + 1:]]
    contrast_rows = [_contrast(f"{first} - {second}", posterior[first] - posterior[second],
                               observed[first] - observed[second], threshold, prob) for first, second in pairs]
    if reference in posterior:
        contrast_rows.append(_contrast(f"participants - {reference}", participants - posterior[reference],
                                       observed_participants - observed[reference], threshold, prob))
        contrast_rows.append(_contrast(f"{control} - {reference}", posterior[control] - posterior[reference],
                                       observed[control] - observed[reference], threshold, prob))
    return OutflowPosterior(arms=pd.DataFrame(arm_rows), contrasts=pd.DataFrame(contrast_rows), draws=posterior,
                            prior=prior, threshold=threshold, prob=prob, effective_draws=effective, method=method)


def _contrast(label: str, difference: np.ndarray, observed: float, threshold: float, prob: float) -> dict[str, Any]:
    pp = 100 * difference
    return {"contrast": label, "unit": "pp", "observed": observed, **summarise_draws(pp, prob),
            "p_gt_threshold": float(np.mean(pp > threshold)), "threshold": threshold}


def outflow_sensitivity(counts: pd.DataFrame | None = None, *,
                        priors: Sequence[str | OutflowPrior] = tuple(OUTFLOW_PRIORS), **kwargs: Any) -> pd.DataFrame:
    """The outflow contrasts under several priors, one row per prior x contrast (prior sensitivity)."""
    rows = []
    for prior in priors:
        result = outflow_posterior(counts, prior=prior, **kwargs)
        rows.append(result.contrasts.assign(prior=result.prior.name, prior_text=str(result.prior),
                                            prior_description=result.prior.description,
                                            effective_draws=result.effective_draws))
    table = pd.concat(rows, ignore_index=True)
    first = ["prior", "contrast"]
    return table[first + [c for c in table.columns if c not in first]]


def outflow_strata(*, prior: str | OutflowPrior = DEFAULT_OUTFLOW_PRIOR, threshold: float = 5.0,
                   prob: float = DEFAULT_INTERVAL, draws: int = MONTE_CARLO_DRAWS, seed: int = 0) -> pd.DataFrame:
    """Arm contrasts within the existing caseload (stock) and the new inflow, and their difference.

    Counts: Tabel 3.1.4 (excluding withdrawals), the one table whose stratum counts are consistent
    (derived from printed whole-number percentages; each is the only count that rounds to the
    printed value). Rows with stratum ``stock - new_inflow`` compare an arm's effect between strata.
    """
    fits = {stratum: outflow_posterior(oss_outflow_counts("excl_withdrawals", stratum), prior=prior,
                                       threshold=threshold, prob=prob, draws=draws, seed=seed + i)
            for i, stratum in enumerate(("stock", "new_inflow", "all"))}
    rows = [fit.contrasts.assign(stratum=stratum) for stratum, fit in fits.items()]
    stock, inflow = fits["stock"], fits["new_inflow"]
    for arm in [a for a in stock.draws if a != CONTROL_ARM]:
        effect_stock = stock.draws[arm] - stock.draws[CONTROL_ARM]
        effect_inflow = inflow.draws[arm] - inflow.draws[CONTROL_ARM]
        observed = (stock.contrasts.set_index("contrast").loc[f"{arm} - {CONTROL_ARM}", "observed"]
                    - inflow.contrasts.set_index("contrast").loc[f"{arm} - {CONTROL_ARM}", "observed"])
        rows.append(pd.DataFrame([_contrast(f"{arm} - {CONTROL_ARM}", effect_stock - effect_inflow, observed,
                                            threshold, prob)]).assign(stratum="stock - new_inflow"))
    table = pd.concat(rows, ignore_index=True)
    return table[["stratum"] + [c for c in table.columns if c != "stratum"]]


# --------------------------------------------------------------------------------------------- response

@dataclass
class ResponsePosterior:
    """Posterior response probability per arm x wave (cells, %) and arm differences per wave (pp)."""

    cells: pd.DataFrame
    contrasts: pd.DataFrame
    prior: OutflowPrior
    method: str


def response_posterior(response: pd.DataFrame | None = None, *, prior: str | OutflowPrior = DEFAULT_OUTFLOW_PRIOR,
                       control: str = CONTROL_ARM, prob: float = DEFAULT_INTERVAL, draws: int = MONTE_CARLO_DRAWS,
                       seed: int = 0) -> ResponsePosterior:
    """Survey response by arm x wave: an independent Beta posterior per cell (the saturated arm x wave
    model; with only the printed cell counts nothing links a person's answers across waves).

    `response`: columns arm, wave, n_net, n_completed (default Tabel 2.5.1). ``nonresponse_shift`` is
    1 - response rate: how far the respondents' mean sits from the whole arm's mean for every unit by
    which respondents and non-respondents differ on an outcome.
    """
    table = oss_response_counts() if response is None else response
    missing = [c for c in ("arm", "wave", "n_net", "n_completed") if c not in table]
    if missing:
        raise DataError(f"response table is missing column(s) {', '.join(missing)}; "
                        "expected arm, wave, n_net, n_completed")
    cells = check_counts(pd.DataFrame({"group": table["wave"], "arm": table["arm"], "n": table["n_net"],
                                       "events": table["n_completed"]}), control)
    _check_mc(draws, prob, seed)
    prior = resolve_outflow_prior(prior)
    if prior.log_odds_ratio_sd is not None:
        raise SpecError(f"response prior {prior.name!r}: only Beta priors are available for response rates")
    rng = np.random.default_rng(seed)
    a, b = prior.beta
    cell_rows, contrast_rows = [], []
    for wave, group in cells.groupby("group", sort=True):
        posterior = {row.arm: rng.beta(a + row.events, b + row.n - row.events, size=draws) for row in group.itertuples()}
        observed = dict(zip(group["arm"], 100 * group["events"] / group["n"]))
        for row in group.itertuples():
            stats_ = summarise_draws(100 * posterior[row.arm], prob)
            stats_.pop("p_gt_0")
            cell_rows.append({"arm": row.arm, "wave": wave, "n_net": row.n, "n_completed": row.events,
                              "observed_pct": observed[row.arm], **stats_,
                              "nonresponse_shift": 1 - stats_["mean"] / 100})
        for arm in [a_ for a_ in group["arm"] if a_ != control]:
            pp = 100 * (posterior[arm] - posterior[control])
            contrast_rows.append({"wave": wave, "contrast": f"{arm} - {control}", "unit": "pp",
                                  "observed": observed[arm] - observed[control], **summarise_draws(pp, prob)})
    method = f"exact conjugate Beta posterior per arm x wave, {draws:,} independent Monte Carlo draws (no MCMC)"
    return ResponsePosterior(pd.DataFrame(cell_rows), pd.DataFrame(contrast_rows), prior, method)


# --------------------------------------------------------------------------------------------- survey bounds

@dataclass
class SurveyBounds:
    """Worst-case bounds: per arm x wave (``cells``), per arm-minus-control contrast (``contrasts``),
    and the outcomes left out (``left_out``: outcome, scale, reason)."""

    cells: pd.DataFrame
    contrasts: pd.DataFrame
    left_out: pd.DataFrame


def oss_survey_means() -> pd.DataFrame:
    """Printed adjusted survey means per outcome, arm and wave (Tabellen 3.1.8-3.1.14)."""
    return load_published("oss_survey_means")


def survey_worst_case_bounds(means: pd.DataFrame | None = None, response: pd.DataFrame | None = None, *,
                             control: str = CONTROL_ARM,
                             scale_ranges: Mapping[str, tuple[float, float]] = SURVEY_SCALE_RANGES) -> SurveyBounds:
    """Worst-case (Manski) bounds for respondents' survey means, assuming nothing about non-respondents.

    With response rate r = completed / net at a wave (``response``: arm, wave, n_net, n_completed;
    default Tabel 2.5.1) and the printed mean m of the respondents, the arm's mean over its whole net
    sample lies in [r m + (1 - r) lo, r m + (1 - r) hi] for a scale from lo to hi: the non-respondents
    may all sit at either end. A contrast arm - control then lies in
    [lower_arm - upper_control, upper_arm - lower_control]. ``means``: outcome, source_table, scale,
    arm, wave, mean (default the bundled printed means); rows on a scale without a range in
    ``scale_ranges`` are left out, with the reason in ``left_out``.
    """
    means = oss_survey_means() if means is None else means
    response = oss_response_counts() if response is None else response
    for name, table, columns in (("means", means, ("outcome", "source_table", "scale", "arm", "wave", "mean")),
                                 ("response", response, ("arm", "wave", "n_net", "n_completed"))):
        missing = [c for c in columns if c not in table]
        if missing:
            raise DataError(f"survey bounds: {name} table is missing column(s) {', '.join(missing)}; "
                            f"expected {', '.join(columns)}")
    bounded = means["scale"].isin(list(scale_ranges))
    notes = means["note"].fillna("") if "note" in means else pd.Series("", index=means.index)
    left_out = pd.DataFrame({
        "outcome": means["outcome"], "scale": means["scale"],
        "reason": ("scale " + means["scale"].astype(str) + " has no range in the bounds' scale list ("
                   + ", ".join(scale_ranges) + ")" + notes.map(lambda note: f"; {note}" if note else "")),
    })[~bounded].drop_duplicates(["outcome"]).reset_index(drop=True)
    rates = response.assign(response_rate=response["n_completed"] / response["n_net"])
    cells = means.loc[bounded, ["outcome", "source_table", "scale", "arm", "wave", "mean"]].merge(
        rates[["arm", "wave", "n_net", "n_completed", "response_rate"]], on=["arm", "wave"], how="left")
    unmatched = cells[cells["response_rate"].isna()]
    if not unmatched.empty:
        row = unmatched.iloc[0]
        raise DataError(f"survey bounds: no response count for arm {row['arm']!r}, wave {row['wave']!r} "
                        f"(outcome {row['outcome']!r}); the response table has arms {sorted(set(response['arm']))}")
    low = cells["scale"].map(lambda scale: scale_ranges[scale][0])
    high = cells["scale"].map(lambda scale: scale_ranges[scale][1])
    outside = cells[(cells["mean"] < low) | (cells["mean"] > high) | ~cells["response_rate"].between(0, 1)]
    if not outside.empty:
        row = outside.iloc[0]
        raise DataError(f"survey bounds: {row['outcome']} {row['arm']} {row['wave']}: mean {row['mean']} or "
                        f"response {row['n_completed']}/{row['n_net']} outside the scale {row['scale']} / 0-1")
    r = cells["response_rate"]
    cells = cells.rename(columns={"mean": "printed_mean"}).assign(
        worst_lower=r * cells["mean"] + (1 - r) * low, worst_upper=r * cells["mean"] + (1 - r) * high)
    if control not in set(cells["arm"]):
        raise DataError(f"survey bounds: control arm {control!r} not among the arms {sorted(set(cells['arm']))}")
    keys = ["outcome", "source_table", "wave"]
    reference = cells[cells["arm"] == control].set_index(keys)
    treated = cells[cells["arm"] != control].join(reference[["printed_mean", "worst_lower", "worst_upper"]],
                                                  on=keys, rsuffix="_control")
    contrasts = pd.DataFrame({
        "outcome": treated["outcome"], "source_table": treated["source_table"], "wave": treated["wave"],
        "contrast": treated["arm"] + f" - {control}",
        "complete_case": treated["printed_mean"] - treated["printed_mean_control"],
        "worst_lower": treated["worst_lower"] - treated["worst_upper_control"],
        "worst_upper": treated["worst_upper"] - treated["worst_lower_control"],
    }).reset_index(drop=True)
    contrasts["width"] = contrasts["worst_upper"] - contrasts["worst_lower"]
    return SurveyBounds(cells.reset_index(drop=True), contrasts, left_out)


# --------------------------------------------------------------------------------------------- towns

def town_effects(outcome: str = "exit_to_work") -> pd.DataFrame:
    """Rows of town_effects.csv for one harmonised outcome, as the input of pool(): group = town."""
    table = load_published("town_effects")
    rows = table[table["harmonised_outcome"] == outcome]
    if rows.empty:
        raise DataError(f"town_effects.csv has no outcome {outcome!r}; available: "
                        f"{', '.join(sorted(table['harmonised_outcome'].unique()))}")
    return rows.assign(group=rows["town"]).reset_index(drop=True)


def pool_towns(effects: pd.DataFrame | None = None, *, prior: Mapping[str, Any] | None = None,
               draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0) -> dict[str, Any]:
    """Rubin-model pooling of town effects (pp), one fit per ``arm_type`` (exemption, intensive).

    `effects`: columns arm_type, group (town), estimate, se; default :func:`town_effects`. `prior`
    defaults to TOWN_PRIOR. Returns arm_type -> InferenceData from :func:`bayes_trial.pooling.pool`.
    """
    effects = town_effects() if effects is None else effects
    if "arm_type" not in effects:
        raise DataError("town effects table is missing column arm_type")
    return {str(arm_type): pool(rows[["group", "estimate", "se"]], prior=dict(TOWN_PRIOR, **(prior or {})),
                                draws=draws, tune=tune, chains=chains, seed=seed, unit="pp")
            for arm_type, rows in effects.groupby("arm_type", sort=True)}


# --------------------------------------------------------------------------------------------- figures

def plot_outflow(posterior: OutflowPosterior, path: str | os.PathLike) -> list[Path]:
    """Two panels: each group's posterior outflow probability, and each arm's difference from the
    control arm with the area above zero shaded and labelled P(arm > control). Writes PNG and SVG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, (arm, values) in enumerate(posterior.draws.items()):
        x, density = _density(100 * values)
        left.plot(x, density, color=f"C{i}", lw=1.8, label=f"{arm} ({_observed_text(posterior.arms, arm)})")
    left.set_xlabel("outflow to full-time work (%)")
    left.set_ylabel("posterior density")
    left.set_title("Each group's outflow probability", fontsize=10)
    left.legend(fontsize=8, frameon=False)
    control = CONTROL_ARM
    table = posterior.contrasts.set_index("contrast")
    for i, arm in enumerate(a for a in posterior.arms.loc[posterior.arms["randomised"], "arm"] if a != control):
        x, density = _density(100 * (posterior.draws[arm] - posterior.draws[control]), include=0.0)
        p = table.loc[f"{arm} - {control}", "p_gt_0"]
        color = f"C{list(posterior.draws).index(arm)}"
        right.plot(x, density, color=color, lw=1.8, label=f"{arm} - {control}: P({arm} > {control}) = {p:.2f}")
        right.fill_between(x, density, where=x >= 0, color=color, alpha=0.25)
    right.axvline(0, color="0.3", lw=0.8, ls=":")
    right.set_xlabel(f"difference from {control} (percentage points)")
    right.set_title(f"Arm minus {control}; shaded: above zero", fontsize=10)
    right.legend(fontsize=8, frameon=False)
    fig.suptitle(f"Oss outflow to full-time work, prior {posterior.prior.name}", fontsize=11)
    return save_figure_as(fig, path)


def _density(values: np.ndarray, bins: int = 160, include: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram density of many Monte Carlo draws, lightly smoothed (a KDE on 200,000 draws is slow);
    `include` adds that x (interpolated) so shading can start exactly there."""
    counts, edges = np.histogram(values, bins=bins, density=True)
    kernel = np.array([1, 4, 6, 4, 1]) / 16
    x, density = (edges[:-1] + edges[1:]) / 2, np.convolve(counts, kernel, mode="same")
    if include is not None and x[0] < include < x[-1]:
        at = np.searchsorted(x, include)
        x, density = np.insert(x, at, include), np.insert(density, at, np.interp(include, x, density))
    return x, density


def _observed_text(arms: pd.DataFrame, arm: str) -> str:
    row = arms.set_index("arm").loc[arm]
    return f"{int(row['events'])}/{int(row['n'])}"


# --------------------------------------------------------------------------------------------- report

@dataclass
class PublishedAnalysis:
    """Everything :func:`published_oss_analysis` found, ready for a report section."""

    tables: dict[str, pd.DataFrame]
    figures: dict[str, list[Path]]
    sentences: list[str]
    methods: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """A Markdown section: findings, methods, then the main tables."""
        parts = ["## What the published Oss numbers support", ""]
        parts += [f"- {sentence}" for sentence in self.sentences]
        parts += ["", "### How these numbers were computed", ""] + [f"- {line}" for line in self.methods]
        for name, title in (("outflow_contrasts", "Outflow to full-time work: differences (pp)"),
                            ("outflow_sensitivity", "Prior sensitivity"),
                            ("response_contrasts", "Survey response: arm minus SG (pp)"),
                            ("survey_bounds", "Survey effects: printed (complete-case) and worst-case bounds "
                                              "(points on 0-10 scales)"),
                            ("town_pooling", "Pooling Oss and Nijmegen (exit to work, pp)")):
            if name in self.tables:
                parts += ["", f"### {title}", "", _markdown_table(self.tables[name])]
        for name, paths in self.figures.items():
            png = [p for p in paths if p.suffix == ".png"]
            if png:
                parts += ["", f"![{name}]({png[0].name})"]
        return "\n".join(parts) + "\n"


def _markdown_table(table: pd.DataFrame, digits: int = 2) -> str:
    shown = table.drop(columns=[c for c in ("unit", "threshold", "prior_text", "prior_description",
                                            "r_hat", "ess_bulk", "sd", "median", "effective_draws") if c in table])
    shown = shown.dropna(axis="columns", how="all")
    headers = {"p_gt_0": "P(>0)", "observed": "raw", "lower": "interval from", "upper": "interval to",
               "pooling_factor": "pooling factor", "arm_type": "arm type"}
    if "p_gt_threshold" in shown:
        headers["p_gt_threshold"] = f"P(>{table['threshold'].iloc[0]:g} pp)" if "threshold" in table else "P(>threshold)"

    def cell(column: str, value: Any) -> str:
        if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
            return ""
        if column.startswith("p_gt"):
            return ">0.99" if value > 0.995 else "<0.01" if value < 0.005 else f"{value:.2f}"
        return f"{value:.{digits}f}" if isinstance(value, float | np.floating) else str(value)

    lines = ["| " + " | ".join(headers.get(c, c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(shown.columns, row)) + " |"
              for row in shown.itertuples(index=False)]
    return "\n".join(lines)


def _p(probability: float) -> str:
    if probability > 0.995:
        return "more than 0.99"
    if probability < 0.005:
        return "less than 0.01"
    return f"{probability:.2f}"


def _interval(row: Mapping[str, Any], pct: str, unit: str = " pp") -> str:
    return f"{row['mean']:+.1f}{unit}, {pct} interval {row['lower']:+.1f} to {row['upper']:+.1f}"


def _outflow_sentences(post: OutflowPosterior, sensitivity: pd.DataFrame, strata: pd.DataFrame) -> list[str]:
    pct = f"{post.prob:.0%}"
    c = post.contrasts.set_index("contrast")
    arms = post.arms.set_index("arm")
    claims = {"ER": ("eigen regie (ER, self-direction) made no difference to outflow to full-time work "
                     "compared with the standard group (logit +4.2 pp, not significant; Tabel 3.1.6)"),
              "IB": ("intensive guidance (IB) made no difference compared with the standard group "
                     "(logit -1.0 pp, not significant; Tabel 3.1.6)")}
    sentences = []
    for arm, claim in claims.items():
        row = c.loc[f"{arm} - SG"]
        sentences.append(
            f"The report claimed {claim}. The printed counts ({_observed_text(post.arms, arm)} vs "
            f"{_observed_text(post.arms, 'SG')}) give {arm} - SG = {_interval(row, pct)}. The probability that "
            f"{arm} moved more people into work than SG is {_p(row['p_gt_0'])}, and that it did so by more than "
            f"{post.threshold:g} pp {_p(row['p_gt_threshold'])}. 'Not significant' here means the data cannot "
            "tell no effect from a moderate one, not that there was none.")
    row = c.loc["participants - reference"]
    ref = arms.loc["reference"]
    sentences.append(
        "The report claimed participants left benefit for work far more often than eligible non-participants "
        f"(+17.2 pp in the logit, +11.6 to +13.4 pp after matching; Tabellen 3.1.6-3.1.7). The counts support a "
        f"higher outflow among participants with probability {_p(row['p_gt_0'])}: {_interval(row, pct)} "
        f"(reference group {ref['observed_pct']:.1f}% of {int(ref['n'])}). The reference group was not randomised: "
        "this gap mixes self-selection (participants had much shorter benefit spells) with any effect of taking part.")
    row = c.loc["SG - reference"]
    sentences.append(
        "The report read the standard group's outflow (about 30% against 15%) as a Hawthorne effect of the experiment "
        f"on regular guidance. The data support SG above the reference group with probability {_p(row['p_gt_0'])}: "
        f"{_interval(row, pct)}. But self-selection explains this gap equally well, and the numbers cannot "
        "separate the two.")
    er, ib = (sensitivity[sensitivity["contrast"] == f"{arm} - SG"].set_index("prior") for arm in ("ER", "IB"))
    smallest = er["mean"].idxmin()
    sentences.append(
        f"The direction of these answers hardly depends on the prior: across {len(er)} priors "
        f"({', '.join(er.index)}) P(ER > SG) lies between {er['p_gt_0'].min():.2f} and {er['p_gt_0'].max():.2f} "
        f"and P(IB > SG) between {ib['p_gt_0'].min():.2f} and {ib['p_gt_0'].max():.2f}. The size does: the "
        f"{smallest} prior, which expects arm differences near zero, puts ER - SG at {er.loc[smallest, 'mean']:+.1f} pp "
        f"instead of {er['mean'].max():+.1f} pp.")
    def stratum_row(stratum: str, contrast: str) -> pd.Series:
        return strata[(strata["stratum"] == stratum) & (strata["contrast"] == contrast)].iloc[0]

    er_stock, er_inflow = stratum_row("stock", "ER - SG"), stratum_row("new_inflow", "ER - SG")
    ib_stock = stratum_row("stock", "IB - SG")
    sentences.append(
        "The report found no arm differences in the existing caseload or the new inflow (treatment x stratum "
        "interaction not significant). Among people already on benefit (Tabel 3.1.4, withdrawals excluded) ER - SG "
        f"= {_interval(er_stock, pct)}, so ER did better there with probability {_p(er_stock['p_gt_0'])}; among new "
        f"inflow the probability is {_p(er_inflow['p_gt_0'])}, and ER's advantage is larger in the existing "
        f"caseload with probability {_p(stratum_row('stock - new_inflow', 'ER - SG')['p_gt_0'])}. IB was below SG "
        f"in the existing caseload with probability {_p(1 - ib_stock['p_gt_0'])}. These are subgroup comparisons "
        "nobody pre-specified: a lead for the CBS analysis, not a finding.")
    return sentences


def _response_sentence(response: ResponsePosterior) -> str:
    cells = response.cells.set_index(["arm", "wave"])
    contrasts = response.contrasts.set_index(["wave", "contrast"])
    sg = cells.loc[("SG", "t1")]
    er, ib = contrasts.loc[("t1", "ER - SG")], contrasts.loc[("t1", "IB - SG")]
    shift = sg["nonresponse_shift"]
    baseline = contrasts.loc[("t0", "ER - SG")]
    return (
        f"The report noted that only about 40% of the standard group answered the survey after one year. "
        f"The counts ({int(sg['n_completed'])}/{int(sg['n_net'])}) put SG's response at {sg['mean']:.0f}% "
        f"({sg['lower']:.0f}-{sg['upper']:.0f}%), below ER's (probability {_p(er['p_gt_0'])}) and IB's "
        f"(probability {_p(ib['p_gt_0'])}); the gap was there already at the first questionnaire (SG "
        f"{cells.loc[('SG', 't0'), 'observed_pct']:.0f}% vs ER {cells.loc[('ER', 't0'), 'observed_pct']:.0f}%, "
        f"probability {_p(baseline['p_gt_0'])}). Survey comparisons at t1 therefore rest on a self-selected "
        f"{sg['mean']:.0f}% "
        f"of SG: if SG's non-respondents scored 1 point lower on a 0-10 scale than its respondents, the whole arm's "
        f"mean would be {shift:.1f} points lower than reported, about as large as the SG rise in wellbeing the "
        f"report marks as significant (+0.68**, Tabel A1.2).")


def _bounds_sentence(bounds: SurveyBounds) -> str:
    contrasts = bounds.contrasts
    follow_up = contrasts[contrasts["wave"] != "t0"]
    wellbeing = contrasts.set_index(["outcome", "wave", "contrast"]).loc[("wellbeing", "t1", f"ER - {CONTROL_ARM}")]
    covers_zero = ((follow_up["worst_lower"] <= 0) & (follow_up["worst_upper"] >= 0)).sum()
    left = ", ".join(bounds.left_out["outcome"]) or "none"
    return (
        "The report's survey effects compare the adjusted means of those who answered. Assuming nothing about "
        "those who did not (worst case: all at 0 or all at 10), ER - SG in wellbeing at t1 could be anywhere "
        f"from {wellbeing['worst_lower']:+.1f} to {wellbeing['worst_upper']:+.1f} points (printed "
        f"{wellbeing['complete_case']:+.1f}); after baseline every such interval is at least "
        f"{follow_up['width'].min():.1f} points wide, against printed differences of at most "
        f"{follow_up['complete_case'].abs().max():.1f} points, and {covers_zero} of {len(follow_up)} contain zero. "
        "No probability model can narrow this without an assumption about the non-respondents: the printed "
        "survey effects carry weight only as far as one accepts that they resemble the respondents "
        f"(bounds for 0-10 scores only; left out: {left}, see the methods).")


def _town_sentences(summaries: Mapping[str, pd.DataFrame], tau_sensitivity: pd.DataFrame, prob: float) -> list[str]:
    pct = f"{prob:.0%}"
    sentences = []
    for arm_type, summary in summaries.items():
        pooled = summary[summary["kind"] == "pooled_mean"].iloc[0]
        new = summary[summary["kind"] == "new_group"].iloc[0]
        towns = summary[summary["kind"] == "group"]
        raw = ", ".join(f"{r.group} {r.estimate:+.1f} pp" for r in towns.itertuples())
        widths = tau_sensitivity[(tau_sensitivity["arm_type"] == arm_type) & (tau_sensitivity["quantity"] == "new_group")]
        spread = "; ".join(f"tau ~ {r.tau_prior}: {r.lower:+.1f} to {r.upper:+.1f}" for r in widths.itertuples())
        sentences.append(
            f"Neither report combines towns. Pooling the {arm_type} arms of Oss and Nijmegen on exit to work "
            f"({raw}) gives a pooled effect of {_interval(pooled, pct)}, below zero with probability "
            f"{_p(1 - pooled['p_gt_0'])}; for a new town the predicted effect is {_interval(new, pct)}. Two towns, "
            "which also measured exit differently (Oss: left benefit for work within 24 months; Nijmegen: earning "
            "above 70% of the minimum wage at month 16), say little about how much towns differ, so the new-town "
            f"interval follows the prior on the between-town SD ({spread}).")
    return sentences


def published_oss_analysis(out_dir: str | os.PathLike | None = None, seed: int = 2024, *,
                           prob: float = DEFAULT_INTERVAL, threshold: float = 5.0, draws: int = MONTE_CARLO_DRAWS,
                           pooling_draws: int = 1000, chains: int = 4) -> PublishedAnalysis:
    """Re-analyse the published Oss numbers (and pool Oss with Nijmegen) for a council-level report.

    Outflow and response use exact conjugate posteriors (`draws` Monte Carlo draws); town pooling uses
    MCMC (`pooling_draws` x `chains`). With `out_dir`, figures (PNG + SVG) and every table (CSV) are
    written there. Returns tables, figure paths, plain-language sentences and method notes.
    """
    _check_mc(draws, prob, seed)
    outflow = outflow_posterior(prior=DEFAULT_OUTFLOW_PRIOR, threshold=threshold, prob=prob, draws=draws, seed=seed)
    sensitivity = outflow_sensitivity(threshold=threshold, prob=prob, draws=draws, seed=seed)
    strata = outflow_strata(threshold=threshold, prob=prob, draws=draws, seed=seed + 2)
    response = response_posterior(prob=prob, draws=draws, seed=seed + 5)
    bounds = survey_worst_case_bounds()
    fits = pool_towns(draws=pooling_draws, chains=chains, seed=seed)
    summaries = {arm_type: pooling_summary(idata, prob=prob) for arm_type, idata in fits.items()}
    tau_rows = []
    for tau_prior in TOWN_TAU_SENSITIVITY:
        for arm_type, idata in pool_towns(prior={"tau": tau_prior}, draws=pooling_draws, chains=chains,
                                          seed=seed).items():
            summary = pooling_summary(idata, prob=prob)
            for kind in ("pooled_mean", "tau", "new_group"):
                row = summary[summary["kind"] == kind].iloc[0]
                tau_rows.append({"arm_type": arm_type, "tau_prior": tau_prior, "quantity": kind,
                                 **row[["mean", "median", "lower", "upper", "p_gt_0"]].to_dict()})
    town_table = pd.concat([s.assign(arm_type=k) for k, s in summaries.items()], ignore_index=True)
    tables = {
        "outflow_arms": outflow.arms, "outflow_contrasts": outflow.contrasts, "outflow_sensitivity": sensitivity,
        "outflow_strata": strata, "response": response.cells, "response_contrasts": response.contrasts,
        "survey_bounds": bounds.contrasts, "survey_bounds_cells": bounds.cells,
        "survey_bounds_left_out": bounds.left_out,
        "town_effects": town_effects(), "town_pooling": town_table[["arm_type"] + list(town_table.columns[:-1])],
        "town_pooling_sensitivity": pd.DataFrame(tau_rows),
    }
    divergences = {k: s.attrs["divergences"] for k, s in summaries.items()}
    town_prior = summaries[next(iter(summaries))].attrs["prior"]
    sentences = (_outflow_sentences(outflow, sensitivity, strata) + [_response_sentence(response),
                                                                     _bounds_sentence(bounds)]
                 + _town_sentences(summaries, tables["town_pooling_sensitivity"], prob))
    methods = [
        f"Outflow: {outflow.method}; prior {outflow.prior} ({outflow.prior.description}). Counts: Tabel 2.3.1 "
        "(all 345 randomised eligible registrants, withdrawals included) and the reference group's 15.0% of 1502 "
        "(Tabel 3.1.3; 225 persons, derived from the printed percentage).",
        "Prior sensitivity: " + "; ".join(f"{p.name} = {p} ({p.description})" for p in OUTFLOW_PRIORS.values()) + ".",
        "Strata: Tabel 3.1.4 (withdrawals excluded); counts derived from printed whole-number percentages.",
        f"Survey response: {response.method}; prior {response.prior}.",
        "Survey worst-case (Manski) bounds: r = completed / net questionnaires per arm and wave (Tabel 2.5.1); "
        "each printed 0-10 mean m (Tabellen 3.1.8-3.1.13) is taken as the respondents' mean, so the arm's mean "
        "over its net sample lies in [r m, r m + 10 (1 - r)], and arm - SG in [lower arm - upper SG, upper arm - "
        "lower SG]. The printed means are covariate-adjusted model predictions and the models used slightly "
        "fewer respondents than Tabel 2.5.1 counts (SG t1: 40 of 41); left out: "
        + (", ".join(f"{r.outcome} ({r.reason})" for r in bounds.left_out.itertuples()) or "none") + ".",
        f"Town pooling: Rubin model (estimate ~ Normal(theta_town, se), theta_town = mu + tau * eta, non-centred), "
        f"prior {town_prior}; NUTS (nutpie), {chains} chains x {pooling_draws} "
        f"draws; divergences {divergences}. Nijmegen's SEs are not printed: each is the largest SE consistent with "
        "its significance marker and the binomial variance bound (conservative).",
        f"All intervals are {prob:.0%} equal-tailed posterior intervals; pp = percentage points.",
    ]
    figures: dict[str, list[Path]] = {}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        figures["outflow"] = plot_outflow(outflow, out / "oss_outflow")
        figures["town_forest"] = plot_forest(summaries, out / "town_forest", new_label="new town",
                                             title="Exit to work, Oss and Nijmegen (pp)")
        for name, table in tables.items():
            table.to_csv(out / f"{name}.csv", index=False)
    settings = {"seed": seed, "prob": prob, "threshold": threshold, "draws": draws,
                "pooling_draws": pooling_draws, "chains": chains, "divergences": divergences,
                "town_prior": town_prior}
    return PublishedAnalysis(tables=tables, figures=figures, sentences=sentences, methods=methods, settings=settings)


def format_analysis(analysis: PublishedAnalysis) -> str:
    """Plain text for the terminal: the sentences, then the town-pooling tables."""
    lines = [f"- {s}" for s in analysis.sentences] + [""]
    table = analysis.tables["town_pooling"]
    for arm_type, rows in table.groupby("arm_type", sort=True):
        summary = rows.drop(columns="arm_type")
        summary.attrs.update({"prob": analysis.settings["prob"], "prior": analysis.settings["town_prior"],
                              "divergences": analysis.settings["divergences"][arm_type],
                              "interval": f"{analysis.settings['prob']:.0%} equal-tailed"})
        lines += [f"town pooling, {arm_type}:", format_pooling_summary(summary), ""]
    return "\n".join(lines)
