"""Errors that reach the user as one line (the CLI prints them without a traceback, exit code 2)."""


class BayesTrialError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class DataError(BayesTrialError):
    """Input data that do not meet the data contract (see data/README.md)."""


class SpecError(BayesTrialError):
    """A model specification, design or prior that cannot be used."""


class FitFileError(BayesTrialError):
    """A stored fit that cannot be read."""
