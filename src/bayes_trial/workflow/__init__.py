"""Layer 11: end-to-end analyses described in TOML files (`workflows/`), run through the report.

Imports only the layers below.
"""

from importlib import import_module


def __getattr__(name: str):
    """`bayes_trial.workflow.NAME` reaches `bayes_trial.workflow.runner.NAME` (the flat module of earlier versions)."""
    return getattr(import_module("bayes_trial.workflow.runner"), name)
