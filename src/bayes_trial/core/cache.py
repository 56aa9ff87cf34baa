"""A small thread-safe least-recently-used cache: compiled models kept per model structure.

Compiling a model costs seconds; a model of the same structure (new priors, new seed, new outcome
values) reuses it with new data. Every compiled-model cache of the package is one of these.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LruCache:
    """Keeps the `size` most recently used values; `get_or_make` builds a missing one outside the lock."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> tuple[Any, bool]:
        """The value under `key` and True, else `make()` stored under `key` and False."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key], True
        value = make()  # slow (a compile): never under the lock
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value, False

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()
