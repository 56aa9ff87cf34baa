"""Layer 4: model specifications (TOML files in `models/`), prior text, and model-ready frames
(nested consultant levels, binomial cells, person-months through the family).

Imports only the layers below (`core`, `data`, `families`, `simulation`); never PyMC.
"""
