"""Layer 10 (beside `report`, independent of it): large batches of fits on Dask: the engine,
simulation-based calibration, recovery and power.

Imports only the layers below.
"""

from importlib import import_module


def __getattr__(name: str):
    """`bayes_trial.batch.NAME` reaches `bayes_trial.batch.engine.NAME` (the flat module of earlier versions)."""
    return getattr(import_module("bayes_trial.batch.engine"), name)
