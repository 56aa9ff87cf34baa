"""Compiling specs beforehand (`bayes-trial cache warm`): a warmed cache serves a fit of other data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bayes_trial.cli.commands import main
from bayes_trial.core.errors import SpecError
from bayes_trial.sampling import warm
from bayes_trial.simulation.design import load_design, with_arms

# The collapsed Gaussian model with one group SD per treatment arm, as the bundled wellbeing spec has,
# in fewer terms (a shorter compile).
SPEC = """
name = "small_wellbeing"
table = "survey"
outcome = "wellbeing"
family = "gaussian"
formula = "wellbeing ~ arm + wave + (1|participant_id) + (arm|municipality)"
control_arm = "control"
[priors]
Intercept = "Normal(5, 2)"
arm = "Normal(0, 1)"
wave = "Normal(0, 1)"
"1|participant_id" = "HalfNormal(1)"
"1|municipality" = "HalfNormal(0.5)"
"arm|municipality" = "HalfNormal(0.5)"
sigma = "HalfNormal(1)"
"""

# A user's first fit in a new process: the 4-arm nl7 trial (7 towns, 3 waves), PyTensor not allowed to compile.
FIT = """
import json, sys
import nutpie.compile_pymc
import bayes_trial as bt

def no_compile(*args, **kwargs):
    raise AssertionError("PyTensor compiled the model")

nutpie.compile_pymc._make_functions = no_compile
frame = bt.simulate(bt.load_design("nl7"), seed=5).survey
fit = bt.sample(bt.load_spec(sys.argv[1]), frame, progress=False, chains=1, tune=50, draws=50, seed=3)
print(json.dumps({"from_disk": int(fit.idata.sample_stats.attrs["compile_from_disk"]), "arms": int(frame["arm"].nunique())}))
"""

WARM = """
import json, sys
from bayes_trial.sampling.warm import warm_cache
print(json.dumps([row.outcome for row in warm_cache([sys.argv[1]], (4,), progress=False)]))
"""


def in_new_process(script: str, cache_dir, *args) -> object:
    env = {**os.environ, "BAYES_TRIAL_CACHE_DIR": str(cache_dir)}
    env.pop("PYTENSOR_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_with_arms_copies_the_last_treatment_arm_and_keeps_the_control_arm():
    small = load_design("small")
    design = with_arms(small, 4)
    assert design["arms"] == ["control", "arm1", "arm2", "arm3"]
    for town, original in zip(design["towns"], small["towns"]):
        assert town["participants"] == {"control": original["participants"]["control"],
                                        **{f"arm{i}": original["participants"]["intensive"] for i in (1, 2, 3)}}
    assert design["response"]["arm3"] == small["response"]["intensive"]
    assert design["outcomes"]["wellbeing"]["arm_effects"]["arm2"] == small["outcomes"]["wellbeing"]["arm_effects"]["intensive"]
    assert with_arms(small, 2)["arms"] == ["control", "arm1"]
    with pytest.raises(SpecError, match="at least 2"):
        with_arms(small, 1)


def test_specs_whose_compiled_model_depends_on_the_layout_are_skipped_without_compiling():
    done = warm.warm_cache(["outflow", "trust_item"], (2, 3), progress=False)
    assert [(row.spec, row.arms, row.outcome) for row in done] == [
        ("outflow", None, warm.LAYOUT_BOUND), ("trust_item", None, warm.LAYOUT_BOUND)]


def test_cache_warm_rejects_arms_that_are_not_numbers(capsys):
    assert main(["cache", "warm", "--arms", "2,three"]) != 0
    assert "--arms" in capsys.readouterr().err


@pytest.mark.slow  # one first-ever compile of a collapsed model: about 45 s on two cores
def test_a_warmed_cache_serves_a_first_fit_of_another_layout_without_compiling(tmp_path):
    """Warmed on the small design made 4-armed (2 towns, 2 waves); the user's trial: nl7 (7 towns, 3 waves)."""
    spec = tmp_path / "small_wellbeing.toml"
    spec.write_text(SPEC)
    assert in_new_process(WARM, tmp_path / "cache", spec) == ["compiled"]
    assert in_new_process(WARM, tmp_path / "cache", spec) == ["on disk already"]
    assert in_new_process(FIT, tmp_path / "cache", spec) == {"from_disk": 1, "arms": 4}
