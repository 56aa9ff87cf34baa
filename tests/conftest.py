"""Shared, session-scoped fixtures: one small simulated trial and a few small fits.

Compiling a model costs 10-20 s on CI's two cores, so tests share these fits instead of sampling
their own; a test that needs a different model fits it with few draws.
"""

from __future__ import annotations

import pytest

import bayes_trial as bt

FAST = {"draws": 300, "tune": 300, "chains": 2, "seed": 11}


@pytest.fixture(scope="session")
def small_sim() -> bt.Simulation:
    """Two towns x three arms x 40 people, two survey waves (data/designs/small.toml)."""
    return bt.simulate(bt.load_design("small"), seed=3)


@pytest.fixture(scope="session")
def small_sim_dir(small_sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("small_sim")
    bt.write_simulation(small_sim, out)
    return out


@pytest.fixture(scope="session")
def outflow_fit(small_sim) -> bt.Fit:
    return bt.sample(bt.load_spec("outflow"), small_sim.register, progress=False, **FAST)


@pytest.fixture(scope="session")
def wellbeing_fit(small_sim) -> bt.Fit:
    return bt.sample(bt.load_spec("wellbeing"), small_sim.survey, progress=False, **FAST)


@pytest.fixture(scope="session")
def outflow_fit_path(outflow_fit, tmp_path_factory):
    return bt.save(outflow_fit, tmp_path_factory.mktemp("fits") / "outflow.nc")


@pytest.fixture(scope="session")
def wellbeing_fit_path(wellbeing_fit, tmp_path_factory):
    return bt.save(wellbeing_fit, tmp_path_factory.mktemp("fits") / "wellbeing.nc")
