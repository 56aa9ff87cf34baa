"""bayes-trial: Bayesian hierarchical models for multi-site randomised social-policy trials.

Data flow, one module per step: data -> spec -> model -> fit -> diagnose -> query -> figures -> report.
Everything the `bayes-trial` command does is one import away::

    import bayes_trial as bt
    sim = bt.simulate(bt.load_design("oss"), seed=1)
    fit = bt.sample(bt.load_spec("outflow"), sim.register)
    bt.save(fit, "outflow.nc"); fit = bt.load("outflow.nc")
    bt.effects(fit)
"""

from .data import data_hash, load_register, load_survey, read_table, validate_register, validate_survey
from .errors import BayesTrialError, DataError, FitFileError, SpecError
from .fit import Fit, load, refit, sample, save
from .query import effects, variance_components, wave_effects
from .simulate import Simulation, load_design, simulate, write_simulation
from .spec import ModelSpec, Prior, load_spec, parse_prior

__version__ = "0.1.0"
__all__ = [
    "BayesTrialError", "DataError", "Fit", "FitFileError", "ModelSpec", "Prior", "Simulation", "SpecError",
    "data_hash", "effects", "load", "load_design", "load_register", "load_spec", "load_survey", "parse_prior",
    "read_table", "refit", "sample", "save", "simulate", "validate_register", "validate_survey",
    "variance_components", "wave_effects", "write_simulation",
]
