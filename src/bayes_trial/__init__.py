"""bayes-trial: Bayesian hierarchical models for multi-site randomised social-policy trials.

Data flow, one layer (subpackage) per step, each importing only the layers below it:
core -> data -> families -> simulation -> modelling -> sampling -> estimands -> plots -> checks ->
aggregate -> report | batch -> workflow -> cli.
Everything the `bayes-trial` command does is one import away::

    import bayes_trial as bt
    sim = bt.simulate(bt.load_design("oss"), seed=1)
    fit = bt.sample(bt.load_spec("outflow"), sim.register)
    # Survey models over everyone randomised (non-responders as missing outcomes; same posterior):
    survey = bt.with_nonresponse(sim.survey, sim.register)
    wellbeing = bt.sample(bt.load_spec("wellbeing"), survey)
    bt.mar_assumption(wellbeing)            # the missing-at-random assumption, share missing per arm
    bt.response_rates(bt.sample(bt.load_spec("response"), survey))  # who answered, per arm x wave
    bt.save(fit, "outflow.nc"); fit = bt.load("outflow.nc")
    bt.effects(fit)
    bt.hypothesis(fit, "intensive - control > 2pp", by="municipality")
    bt.what_if(fit, {"arm": bt.parse_prior("Normal(0, 0.25)")})  # answers under another prior, no refit
    bt.delta_adjusted(survey_fit, "intensive - control > 0", deltas={"control": "-2:2"})  # MNAR tipping point
    bt.diagnose.diagnose(fit).passed
    bt.report.report([fit], "report/")

Names are resolved on first use, so that `bayes-trial` answers bad input without importing PyMC.
"""

import warnings
from importlib import import_module

# pip-installed PyTensor warns on first compile that it found no optimised BLAS: noise for users,
# who cannot act on it (nutpie's numba backend does not use it).
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

from .core import compile_dir

# Before anything imports PyTensor: compiled models are cached per user and compiler versions.
compile_dir.configure()

from .core.errors import BayesTrialError, DataError, FitFileError, SpecError
from .data.contract import data_hash, load_register, load_survey, validate_register, validate_survey, with_nonresponse
from .data.readers import read_table
from .modelling.spec import ModelSpec, Prior, load_spec, parse_prior
from .simulation.design import load_design
from .simulation.generate import Simulation, simulate, write_simulation

__version__ = "0.1.0"

# Loaded on first use (they import PyMC/ArviZ). Modules whose name is also a function
# (diagnose, compare, report) are reached as modules: bt.diagnose.diagnose(fit).
_API = {
    "sampling.fit": ("Fit", "load", "refit", "sample", "save"),
    "estimands.query": ("effects", "hypothesis", "variance_components", "wave_effects"),
    "estimands.whatif": ("what_if",),
    "estimands.sensitivity": ("delta_adjusted",),
    "estimands.attrition": ("mar_assumption", "response_rates"),
    "checks.ppc": ("posterior_predictive",),
    "checks.priors": ("prior_check", "prior_table"),
    "aggregate.pooling": ("pool", "pool_counts", "pooling_summary"),
    "aggregate.published": ("published_oss_analysis",),
    "workflow.runner": ("load_workflow", "run"),
}
_OWNER = {name: module for module, names in _API.items() for name in names}
# The flat module names of earlier versions, kept so that `bt.query.effects(...)` still works.
_MODULES = {"batch": "batch", "compare": "checks.compare", "data": "data", "diagnose": "checks.diagnose",
            "figures": "plots.figures", "fit": "sampling.fit", "hazard": "estimands.curves", "model": "modelling.frames",
            "pooling": "aggregate.pooling", "power": "batch.power", "ppc": "checks.ppc", "priors": "checks.priors",
            "published": "aggregate.published", "query": "estimands.query", "report": "report",
            "simulate": "simulation.generate", "spec": "modelling.spec", "workflow": "workflow"}

__all__ = ["BayesTrialError", "DataError", "FitFileError", "ModelSpec", "Prior", "Simulation", "SpecError", "data_hash",
           "load_design", "load_register", "load_spec", "load_survey", "parse_prior", "read_table", "simulate",
           "validate_register", "validate_survey", "with_nonresponse", "write_simulation", *sorted(_OWNER)]


def __getattr__(name: str):
    if name in _OWNER:
        value = getattr(import_module(f".{_OWNER[name]}", __name__), name)
    elif name in _MODULES:
        value = import_module(f".{_MODULES[name]}", __name__)
    else:
        raise AttributeError(f"module 'bayes_trial' has no attribute {name!r}")
    globals()[name] = value
    return value
