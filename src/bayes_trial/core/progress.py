"""Progress messages on long work, on stderr so that answers on stdout stay machine-readable."""

from __future__ import annotations

import sys


def say(message: str, progress: bool = True) -> None:
    """Print `message` on stderr (flushed at once) when `progress` is true."""
    if progress:
        print(message, file=sys.stderr, flush=True)
