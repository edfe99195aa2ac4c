"""Find, load and validate device profiles.

`load_profile` is the one way to get a Profile: schema validation, cross-references and register
overlaps are all checked here, and every problem is reported with its file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

from device_profiles.located_yaml import ConfigError, Issue, line_of, located, read_yaml, validate
from device_profiles.model import Profile
from device_profiles.points import overlaps, resolve_points

CATALOG_DIR = Path(__file__).parent / "catalog"


def _display(path: Path) -> str:
    """Catalog files are named relative to the package (`catalog/x.yaml`), others as given."""
    try:
        return str(path.resolve().relative_to(CATALOG_DIR.parent))
    except ValueError:
        return str(path)


def load_profile(path: Path | str) -> Profile:
    path = Path(path)
    name = _display(path)
    data, node = read_yaml(path)
    profile = validate(Profile, data, node, name)
    issues = located(name, node, profile.reference_problems())
    for a, b in overlaps(resolve_points(profile)):
        issues.append(Issue(name, line_of(node, ("blocks",)) or 1, "blocks", f"{a} and {b} overlap"))
    if path.stem != profile.id:
        issues.append(Issue(name, line_of(node, ("id",)), "id", f"must match the file name {path.stem!r}"))
    if issues:
        raise ConfigError(issues)
    return profile


def profile_paths(dirs: Iterable[Path | str] = ()) -> list[Path]:
    """The shipped catalog plus any site-specific profile folders (later folders override)."""
    out = sorted(CATALOG_DIR.glob("*.yaml"))
    for d in dirs:
        out += sorted(Path(d).glob("*.yaml"))
    return out


def load_catalog(dirs: Iterable[Path | str] = ()) -> dict[str, Profile]:
    """All profiles by id. Every broken file is reported, not just the first."""
    profiles: dict[str, Profile] = {}
    issues: list[Issue] = []
    for path in profile_paths(dirs):
        try:
            p = load_profile(path)
        except ConfigError as e:
            issues += e.issues
            continue
        profiles[p.id] = p
    if issues:
        raise ConfigError(issues)
    return profiles


@cache
def catalog() -> dict[str, Profile]:
    """The shipped catalog, loaded once per process."""
    return load_catalog()


def get_profile(profile_id: str, dirs: tuple[str, ...] = ()) -> Profile:
    profiles = load_catalog(dirs) if dirs else catalog()
    try:
        return profiles[profile_id]
    except KeyError:
        raise KeyError(f"unknown profile {profile_id!r}; known: {', '.join(sorted(profiles))}") from None
