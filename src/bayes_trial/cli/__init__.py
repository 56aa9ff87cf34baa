"""Layer 12, the top: the `bayes-trial` command, a thin layer over the Python API.

May import every layer; nothing imports it.
"""

from bayes_trial.cli.commands import main, run

__all__ = ["main", "run"]
