"""Layer 9: published aggregate data (the Oss and nine-town reports) and partial pooling of town
estimates.

Imports only the layers below.
"""
