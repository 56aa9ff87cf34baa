"""Layer 2: what an outcome family means, one module per family (`gaussian`, `binary`, `ordinal`,
`count`, `hazard`) and one `registry`, the only place that lists family names.

Imports only `core` and `data`.
"""
