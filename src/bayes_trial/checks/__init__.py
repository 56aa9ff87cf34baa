"""Layer 8: convergence diagnostics, posterior predictive checks, prior checks and model
comparison, each returning data (and Figures).

Imports only the layers below.
"""
