"""The one list of outcome families: names to `Family` objects.

Every layer asks `get(name)` for a family; only `families/` compares family names. A family
defined elsewhere (a plug-in, or a test) joins with `register(family)`.
"""

from __future__ import annotations

from bayes_trial.core.errors import SpecError
from bayes_trial.families import binary, count, gaussian, hazard, ordinal
from bayes_trial.families.base import Family

_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add `family` under `family.name` (replacing one of the same name) and return it."""
    if not isinstance(family, Family) or not family.name or not family.bambi_name:
        raise SpecError(f"a family must be a Family with a name and a Bambi family, got {family!r}")
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a registered family (for tests that register a toy family)."""
    _FAMILIES.pop(name, None)


def names() -> tuple[str, ...]:
    """Registered family names, in registration order."""
    return tuple(_FAMILIES)


def families() -> tuple[Family, ...]:
    """Registered families, in registration order."""
    return tuple(_FAMILIES.values())


def get(name: str) -> Family:
    """The family called `name`; an unknown name is a one-line error listing the registered ones."""
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError):
        raise SpecError(f"unknown family {name!r}; registered families: {', '.join(_FAMILIES)}") from None


for _module in (gaussian, binary, ordinal, count, hazard):
    register(_module.FAMILY)
