"""Layer 1: reading users' files and the data contract (`data/README.md`): column mapping, value
labels, waves, missing values, validation of survey and register tables.

Imports only `core`.
"""

from importlib import import_module


def __getattr__(name: str):
    """`bayes_trial.data.NAME` reaches NAME in `readers`, `columns` or `contract` (the flat module of earlier versions)."""
    for module in ("readers", "columns", "contract"):
        owner = import_module(f"bayes_trial.data.{module}")
        if name in vars(owner):
            return vars(owner)[name]
    raise AttributeError(f"module 'bayes_trial.data' has no attribute {name!r}")
