"""Layer 1: reading users' files and the data contract (`data/README.md`): column mapping, value
labels, waves, missing values, validation of survey and register tables.

Imports only `core`.
"""

from importlib import import_module


def __getattr__(name: str):
    """`bayes_trial.data.NAME` reaches `bayes_trial.data.contract.NAME` (the flat module of earlier versions)."""
    return getattr(import_module("bayes_trial.data.contract"), name)
