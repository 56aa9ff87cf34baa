"""Where the bundled files live (`models/`, `data/designs/`, `workflows/` at the project root), and
how text files are written so that a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

PROJECT_ROOT = Path(os.environ.get("BAYES_TRIAL_HOME", Path(__file__).resolve().parents[3]))
MODELS_DIR = PROJECT_ROOT / "models"
DESIGNS_DIR = PROJECT_ROOT / "data" / "designs"
WORKFLOWS_DIR = PROJECT_ROOT / "workflows"


def resolve_bundled(name_or_path: str | os.PathLike, folder: Path, suffix: str = ".toml") -> Path:
    """A path as given if it exists, else the bundled file `folder/NAME.toml`."""
    path = Path(name_or_path)
    if path.exists():
        return path
    bundled = folder / f"{path.name}{'' if path.suffix else suffix}"
    return bundled if bundled.exists() else path


def write_atomic(path: str | os.PathLike, write: Callable[[TextIO], object]) -> Path:
    """Write a text file so that `path` holds either its old content or the complete new file.

    `write(handle)` fills a hidden temporary file beside `path`, which is synced to disk and then
    renamed over `path`; if anything fails or interrupts, the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
