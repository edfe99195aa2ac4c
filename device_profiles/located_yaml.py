"""Load YAML into a pydantic model so that every mistake names the file, line and key.

Installers edit YAML on site, on a laptop, in a hurry. "KeyError: 'scale'" helps nobody;
"charger-x.yaml:41 points[3].scale: must be a number, got 'x'" does. Used for device profiles,
edge configs and cloud site files alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ValueError):
    """One or more located problems in a YAML file."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def format_key(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _LineIndex:
    """Maps a key path to the line (1-based) where that key or item starts."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line_of(self, path: Path_) -> tuple[int, Path_]:
        """Best line for `path` and the part of it that exists in the document (union tags and
        other pydantic-only steps are skipped)."""
        node = self.root
        if node is None:
            return 1, ()
        line = node.start_mark.line + 1
        found: list[str | int] = []
        for part in path:
            child, key_line = self._child(node, part)
            if child is None:
                continue
            node = child
            found.append(part)
            line = key_line
        return line, tuple(found)

    @staticmethod
    def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, int]:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    return v, k.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            item = node.value[part]
            return item, item.start_mark.line + 1
        return None, 0


def _duplicate_keys(node: yaml.Node | None, path: Path_, out: list[tuple[int, Path_, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else "?"
            if name in seen:
                out.append((k.start_mark.line + 1, (*path, name), "duplicate key (the later one would win)"))
            seen.add(name)
            _duplicate_keys(v, (*path, name), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, (*path, i), out)


def _friendly(err: dict[str, Any]) -> str:
    """Pydantic's messages, reworded for a person holding a YAML file."""
    kind = err["type"]
    got = err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {got!r}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {got!r}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, got {got!r}"
    if kind in ("string_type",):
        return f"must be text, got {got!r}"
    if kind in ("enum", "literal_error"):
        expected = err.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {got!r}"
    if kind == "union_tag_invalid":
        expected = err.get("ctx", {}).get("expected_tags", "")
        return f"must be one of {expected}, got {err.get('ctx', {}).get('tag')!r}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return str(err["msg"])


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse once for data and once for positions; YAML syntax errors become located issues."""
    return parse_yaml(read_text(path), str(path))


def read_text(path: Path) -> str:
    """A YAML file's text, or a ConfigError naming it (missing, not UTF-8)."""
    name = str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Issue(name, 0, "", "file not found")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([Issue(name, 0, "", f"not UTF-8 text: {e}")]) from None


def parse_yaml(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    """`read_yaml` for text that is not a file (a config sent from the cloud), `name` naming it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([Issue(name, line, "", f"YAML syntax: {e.problem}")]) from None
    except yaml.reader.ReaderError as e:  # a control character: not text a person typed
        line = text[: e.position].count("\n") + 1
        raise ConfigError([Issue(name, line, "", f"not YAML text: character #x{e.character:04x} is not allowed")]) \
            from None
    return data, node


def validate(model: type[M], data: Any, node: yaml.Node | None, name: str, context: dict[str, Any] | None = None) -> M:
    """Validate parsed YAML, turning every validation error into a located Issue."""
    index = _LineIndex(node)
    dups: list[tuple[int, Path_, str]] = []
    _duplicate_keys(node, (), dups)
    if dups:
        raise ConfigError([Issue(name, line, format_key(p), msg) for line, p, msg in dups])
    if data is None:
        raise ConfigError([Issue(name, 1, "", "file is empty")])
    if not isinstance(data, dict):
        raise ConfigError([Issue(name, 1, "", "top level must be a mapping of keys")])
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        issues = []
        for err in e.errors():
            line, found = index.line_of(tuple(err["loc"]))
            if err["type"] == "missing" and err["loc"]:
                found = (*found, err["loc"][-1])  # name the key that is missing, at its parent's line
            elif err["type"] == "union_tag_invalid":
                tag = str(err.get("ctx", {}).get("discriminator", "")).strip("'")
                if tag:
                    line, found = index.line_of((*found, tag))
            issues.append(Issue(name, line, format_key(found), _friendly(dict(err))))
        raise ConfigError(issues) from None


def load_model(
    model: type[M],
    path: Path | str,
    display_name: str | None = None,
    check: Callable[[M], list[tuple[Path_, str]]] | None = None,
) -> M:
    """Read and validate `path`; then `check` (cross-references the schema cannot see: a profile
    id the catalog lacks, a bus no device names) returns (key path, message) problems, raised
    together as one ConfigError, each at its key's line."""
    path = Path(path)
    name = display_name or str(path)
    data, node = read_yaml(path)
    obj = validate(model, data, node, name)
    problems = check(obj) if check is not None else []
    if problems:
        raise ConfigError(located(name, node, problems))
    return obj


def line_of(node: yaml.Node | None, path: Path_) -> int:
    """Line of a key path; used for checks made after model validation."""
    return _LineIndex(node).line_of(path)[0]


def located(name: str, node: yaml.Node | None, problems: list[tuple[Path_, str]]) -> list[Issue]:
    """Issues for checks made after schema validation (cross-references), each at its key's line."""
    return [Issue(name, line_of(node, p), format_key(p), msg) for p, msg in problems]
