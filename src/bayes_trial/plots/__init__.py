"""Layer 7: figures from fits and answers; every function returns a matplotlib Figure.

Imports only the layers below.
"""
