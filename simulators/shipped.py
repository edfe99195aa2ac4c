"""Find a file the simulators ship (a site, a scenario) by its short name, or take a path as is.

Sites and scenarios are looked up the same way (a path that exists wins, then `<folder>/<name>.yaml`),
so one function does it; the callers only name the folder and how the error calls the thing.
"""

from __future__ import annotations

from pathlib import Path


def find_shipped(name_or_path: str | Path, folder: Path, what: str, known_as: str) -> Path:
    """`name_or_path` if it exists, else `folder/<name>.yaml`; otherwise FileNotFoundError naming
    `what` was missing and listing the shipped names (`known_as: a, b, c`)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = folder / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    known = ", ".join(sorted(x.stem for x in folder.glob("*.yaml")))
    raise FileNotFoundError(f"no {what} {name_or_path!r} ({known_as}: {known})")
