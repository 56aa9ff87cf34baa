"""Compiled models kept between processes: a second process loads them from disk, with the same draws."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bayes_trial.cli.commands import main
from bayes_trial.core import compile_dir

# A small hierarchical model compiled through `fastpaths.compile_nutpie` and sampled with a fixed seed.
SCRIPT = """
import json, sys
import numpy as np
import nutpie, pymc as pm
from bayes_trial.sampling import fastpaths

with pm.Model(coords={"towns": ["a", "b", "c"]}) as model:
    sd = pm.HalfNormal("sd", 1.0)
    town = pm.Normal("town", 0, sd, dims="towns")
    pm.Normal("y", town[np.array([0, 0, 1, 1, 2, 2])], 1.0, observed=np.array([0.1, 0.4, 1.2, 0.9, -0.3, 0.2]))
compiled, _, reused = fastpaths.compile_nutpie(model, ["sd", "town"])
trace = nutpie.sample(compiled, draws=50, tune=50, chains=1, seed=3, progress_bar=False)
print(json.dumps({"reused": reused, "sd": trace.posterior["sd"].values.ravel().tolist()}))
"""


def run_script(cache_dir, script=SCRIPT) -> dict:
    env = {**os.environ, "BAYES_TRIAL_CACHE_DIR": str(cache_dir)}
    env.pop("PYTENSOR_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", "import bayes_trial\n" + script], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_compiled_model_from_disk_and_samples_the_same_draws(tmp_path):
    first = run_script(tmp_path)
    # Loaded from what the first process saved, without PyTensor compiling the graph again.
    second = run_script(tmp_path, "import nutpie.compile_pymc\nnutpie.compile_pymc._make_functions = None\n" + SCRIPT)
    assert first["reused"] == "" and second["reused"] == "disk"
    np.testing.assert_array_equal(first["sd"], second["sd"])
    (stack,) = (tmp_path).iterdir()
    assert stack.name == compile_dir.stack_name()
    # Saved metadata whose callbacks numba's cache lost: compiled again, the same draws.
    callbacks = list((stack / "numba").glob("*_callback-*"))  # nutpie's two C callbacks (`disk_compile`)
    assert len(callbacks) >= 2 and list((stack / "nutpie").glob("*.json"))
    for path in callbacks:
        path.unlink()
    third = run_script(tmp_path)
    assert third["reused"] == ""
    np.testing.assert_array_equal(first["sd"], third["sd"])


def test_disk_cached_callbacks_sample_what_nutpie_samples(tmp_path):
    plain = SCRIPT.replace("compiled, _, reused = fastpaths.compile_nutpie(model, [\"sd\", \"town\"])",
                           "compiled, reused = nutpie.compile_pymc_model(model, var_names=[\"sd\", \"town\"]), ''")
    assert plain != SCRIPT
    np.testing.assert_array_equal(run_script(tmp_path, plain)["sd"], run_script(tmp_path)["sd"])


def test_the_cache_folder_names_the_versions_and_leaves_a_users_choice_alone(monkeypatch, tmp_path):
    name = compile_dir.stack_name()
    for package in ("py3.", "pytensor", "numba", "nutpie"):
        assert package in name
    monkeypatch.setenv("BAYES_TRIAL_CACHE_DIR", str(tmp_path))
    assert compile_dir.compile_dir() == tmp_path / name
    # PyTensor is imported in this process already: nothing to configure.
    assert compile_dir.configure() is None


def test_cache_info_and_clear(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BAYES_TRIAL_CACHE_DIR", str(tmp_path))
    for stack in (compile_dir.stack_name(), "py3.10-pytensor2.30.0-numba0.60.0-nutpie0.15.0"):
        (tmp_path / stack / "numba").mkdir(parents=True)
        (tmp_path / stack / "numba" / "f.nbc").write_bytes(b"x" * 1000)
    assert main(["cache", "info"]) == 0
    assert "(current): 1 files" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["py3.10-pytensor2.30.0-numba0.60.0-nutpie0.15.0"]
    assert main(["cache", "clear", "--all"]) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", ["base_compiledir=/somewhere/else"])
def test_configure_keeps_a_compile_dir_the_user_chose(flags, tmp_path):
    env = {**os.environ, "BAYES_TRIAL_CACHE_DIR": str(tmp_path), "PYTENSOR_FLAGS": flags}
    out = subprocess.run([sys.executable, "-c", "import bayes_trial, os; print(os.environ['PYTENSOR_FLAGS'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == flags

