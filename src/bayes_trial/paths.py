"""Where the bundled files live: `models/`, `data/designs/`, `workflows/` at the project root."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("BAYES_TRIAL_HOME", Path(__file__).resolve().parents[2]))
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
