"""bayes-trial: Bayesian hierarchical models for multi-site randomised social-policy trials.

Data flow, one module per step: data -> spec -> model -> fit -> diagnose -> query -> figures -> report.
Everything the `bayes-trial` command does is one import away::

    import bayes_trial as bt
    sim = bt.simulate(bt.load_design("oss"), seed=1)
    fit = bt.sample(bt.load_spec("outflow"), sim.register)
    bt.save(fit, "outflow.nc"); fit = bt.load("outflow.nc")
    bt.effects(fit)
    bt.hypothesis(fit, "intensive - control > 2pp", by="municipality")
    bt.diagnose.diagnose(fit).passed
    bt.report.report([fit], "report/")

Names are resolved on first use, so that `bayes-trial` answers bad input without importing PyMC.
"""

import warnings
from importlib import import_module

# pip-installed PyTensor warns on first compile that it found no optimised BLAS: noise for users,
# who cannot act on it (nutpie's numba backend does not use it).
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

from .data import data_hash, load_register, load_survey, read_table, validate_register, validate_survey
from .errors import BayesTrialError, DataError, FitFileError, SpecError
from .simulate import Simulation, load_design, simulate, write_simulation
from .spec import ModelSpec, Prior, load_spec, parse_prior

__version__ = "0.1.0"

# Loaded on first use (they import PyMC/ArviZ). Modules whose name is also a function
# (diagnose, compare, report) are reached as modules: bt.diagnose.diagnose(fit).
_API = {
    "fit": ("Fit", "load", "refit", "sample", "save"),
    "query": ("effects", "hypothesis", "variance_components", "wave_effects"),
    "ppc": ("posterior_predictive",),
    "priors": ("prior_check", "prior_table"),
    "pooling": ("pool", "pool_counts", "pooling_summary"),
    "published": ("published_oss_analysis",),
    "workflow": ("load_workflow", "run"),
}
_OWNER = {name: module for module, names in _API.items() for name in names}
_MODULES = {"batch", "compare", "data", "diagnose", "figures", "fit", "hazard", "model", "pooling", "power", "ppc",
            "priors", "published", "query", "report", "simulate", "spec", "validate", "workflow"}

__all__ = ["BayesTrialError", "DataError", "FitFileError", "ModelSpec", "Prior", "Simulation", "SpecError", "data_hash",
           "load_design", "load_register", "load_spec", "load_survey", "parse_prior", "read_table", "simulate",
           "validate_register", "validate_survey", "write_simulation", *sorted(_OWNER)]


def __getattr__(name: str):
    if name in _OWNER:
        value = getattr(import_module(f".{_OWNER[name]}", __name__), name)
    elif name in _MODULES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'bayes_trial' has no attribute {name!r}")
    globals()[name] = value
    return value
