"""Layer 3: trial designs (validation) and the simulator with known true parameters.

Imports only `core`, `data` and `families`.
"""
