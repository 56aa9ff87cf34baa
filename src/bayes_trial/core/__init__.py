"""Layer 0, the ground: errors, bundled paths, atomic writes, draw summaries and interval text, the
minimum cell size, progress messages.

Imports only the standard library, NumPy and pandas; every other layer may import it.
"""
