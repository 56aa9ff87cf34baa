"""Where compiled models are kept between processes: one directory per user and per compiler stack.

PyTensor's numba backend caches compiled code on disk under its `base_compiledir`, keyed on the
graph but stamped with no version (an upgrade could serve stale code). Pointing `base_compiledir`
at a directory named after the Python, PyTensor, numba and nutpie versions gives every stack its
own cache. `BAYES_TRIAL_CACHE_DIR` moves the root (default `$XDG_CACHE_HOME/bayes-trial`, else
`~/.cache/bayes-trial`); a `base_compiledir` the user set in `PYTENSOR_FLAGS` is left alone.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

STACK = ("pytensor", "numba", "nutpie")


def cache_root() -> Path:
    """The per-user root of compiled-model caches."""
    if os.environ.get("BAYES_TRIAL_CACHE_DIR"):
        return Path(os.environ["BAYES_TRIAL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayes-trial"


def stack_name() -> str:
    """`py3.11-pytensor2.38.3-numba0.65.1-nutpie0.16.8`: the versions that compiled code depends on."""
    parts = [f"py{sys.version_info.major}.{sys.version_info.minor}"]
    for package in STACK:
        try:
            parts.append(f"{package}{metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package}-none")
    return "-".join(parts)


def compile_dir() -> Path:
    """This stack's directory under `cache_root()`."""
    return cache_root() / stack_name()


def configure() -> Path | None:
    """Point PyTensor's compile directory at `compile_dir()`, if PyTensor is not imported yet.

    Returns the directory, or None when PyTensor was already imported, the user chose its
    `base_compiledir`, or the directory cannot be made (then PyTensor's own directory is used).
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "pytensor" in sys.modules or "base_compiledir" in flags:
        return None
    folder = compile_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home, say: PyTensor's own default still works
        return None
    os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags, f"base_compiledir={folder}"]))
    return folder


def cache_info() -> list[dict]:
    """Per stack directory under the root: its path, whether it is this stack's, files and bytes."""
    root, current = cache_root(), stack_name()
    rows = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        files = [p for p in folder.rglob("*") if p.is_file()]
        rows.append({"stack": folder.name, "current": folder.name == current, "path": str(folder),
                     "files": len(files), "bytes": sum(p.stat().st_size for p in files)})
    return rows


def clear_cache(all_stacks: bool = False) -> int:
    """Remove this stack's compiled models (or every stack's); returns the bytes freed.

    Only directories under `cache_root()` are removed. A process compiling at the same moment
    recompiles what it misses; nothing else depends on these files.
    """
    freed = 0
    for row in cache_info():
        if all_stacks or row["current"]:
            freed += row["bytes"]
            shutil.rmtree(row["path"], ignore_errors=True)
    return freed
