import pandas as pd
import pytest

from bayes_trial.core.errors import DataError
from bayes_trial.data.contract import missing_outcome_counts, with_nonresponse


def _tables():
    register = pd.DataFrame({"participant_id": ["a", "b", "c"], "municipality": "Oss", "arm": ["control", "control", "intensive"],
                             "consultant_id": ["c1", "c1", "c2"], "outflow_work": [0, 1, 0], "age": [30, 40, 50]})
    survey = pd.DataFrame({"participant_id": ["a", "a", "c"], "municipality": "Oss", "arm": ["control", "control", "intensive"],
                           "consultant_id": ["c1", "c1", "c2"], "wave": [0, 1, 0], "wellbeing": [5.0, None, 7.0], "age": [30, 30, 50]})
    return survey, register


def test_every_randomised_person_gets_every_wave_and_nonresponse_counts_as_missing():
    survey, register = _tables()
    padded = with_nonresponse(survey, register)
    assert len(padded) == 6
    # the survey's rows first, in their order, then the added ones
    assert padded["responded"].tolist() == [1, 1, 1, 0, 0, 0]
    assert padded[["participant_id", "wave"]].iloc[3:].values.tolist() == [["b", 0], ["b", 1], ["c", 1]]
    added = padded[padded["responded"] == 0].set_index(["participant_id", "wave"])
    assert added.loc[("b", 1), "age"] == 40 and added.loc[("b", 1), "arm"] == "control"
    counts = missing_outcome_counts(padded, "wellbeing", "control").set_index(["arm", "wave"])
    # a's wave-1 row has no answer (item non-response) and b never answered: 2 of 2 controls missing at wave 1.
    assert counts.loc[("control", 1), "n_dropped"] == 2 and counts.loc[("intensive", 1), "n_dropped"] == 1


def test_survey_person_missing_from_register_or_in_another_arm_is_refused():
    survey, register = _tables()
    with pytest.raises(DataError, match="participant 'c' is not in the register"):
        with_nonresponse(survey, register[register.participant_id != "c"], source="s.csv")
    register.loc[0, "arm"] = "intensive"
    with pytest.raises(DataError, match="'a' is in arm 'control' here but 'intensive' in the register"):
        with_nonresponse(survey, register)
