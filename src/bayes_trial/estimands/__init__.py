"""Layer 6: the answers: contrasts on the outcome scale, hypotheses, per-town and new-town
posteriors, outflow curves, variance components. Returns tables and draws, never writes files.

Imports only the layers below.
"""
