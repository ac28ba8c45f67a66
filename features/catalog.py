"""Which feature families a run can build from the tables it was given."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FamilyAvailability:
    """Whether one feature family can be built, and why not when it cannot."""

    name: str
    description: str
    buildable: bool
    reason: str


def feature_availability(
    families: Mapping[str, Mapping[str, Any]], present: Iterable[str]
) -> list[FamilyAvailability]:
    """Check each family's `requires` (all of) and `requires_any` (one of) against the tables present."""
    tables = set(present)
    result = []
    for name, spec in families.items():
        needs_all = list(spec.get("requires", []))
        needs_any = list(spec.get("requires_any", []))
        missing = [t for t in needs_all if t not in tables]
        reasons = []
        if missing:
            reasons.append(f"needs {', '.join(missing)}")
        if needs_any and not tables.intersection(needs_any):
            reasons.append(f"needs one of {', '.join(needs_any)}")
        result.append(
            FamilyAvailability(name, str(spec.get("description", "")), not reasons, "; ".join(reasons))
        )
    return result


def render_availability(availability: list[FamilyAvailability]) -> str:
    """Buildable and skipped families as readable lines."""
    built = [a.name for a in availability if a.buildable]
    lines = [f"Feature families buildable ({len(built)}/{len(availability)}): {', '.join(built) or 'none'}"]
    lines.extend(f"  skipped {a.name}: {a.reason}" for a in availability if not a.buildable)
    return "\n".join(lines)
