"""`python -m bayes_trial.cli` runs the command line."""

from bayes_trial.cli.commands import run

run()
