"""Layer 5: building the Bambi/PyMC model, sampling (nutpie and the fast paths), storing and loading
fits.

Imports only the layers below.
"""
