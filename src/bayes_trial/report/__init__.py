"""Layer 10: the report (Markdown and HTML) built from fits, checks and figures; one of the two
places (with `cli`) that writes files.

Imports only the layers below.
"""

from importlib import import_module


def __getattr__(name: str):
    """`bayes_trial.report.NAME` reaches `bayes_trial.report.document.NAME` (the flat module of earlier versions)."""
    return getattr(import_module("bayes_trial.report.document"), name)
