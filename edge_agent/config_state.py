"""What the gateway remembers about remote configuration, in `state_dir/config-state.json`.

* which cloud version the config file holds (`version`, with the file's SHA-256: a file edited on
  site no longer matches and runs as version 0, "local");
* the highest version it has handled (`last_seen`): only newer ones are tried, so a retained
  desired config that was refused or rolled back is not tried again after a reconnect or a
  restart, and a local edit is not overwritten by the version it replaced;
* the outcome of recent versions (`results`), re-sent when the cloud sends one of them again (a
  result lost with the link is never lost for good);
* the version being tried (`trial`): after a crash or `kill -9` mid-trial the agent starts on the
  file on disk (the old config, or the new one if the commit had written it) and reports the trial.

Written atomically (temporary file, fsync, rename), like the config file itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KEEP_RESULTS = 20


def sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, os.stat(path).st_mode & 0o777)  # keep a config file's permissions (password inside)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class ConfigState:
    version: int = 0
    digest: str = ""
    file_sha: str = ""
    by: str = ""
    applied_at: float = 0.0
    last_seen: int = 0
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # version → ConfigResult fields
    trial: dict[str, Any] | None = None  # {"version", "file_sha", "started"}

    @classmethod
    def load(cls, path: Path) -> ConfigState:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            return cls()  # unreadable: start as a local config; the next version is tried normally
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=1, sort_keys=True).encode())

    def running_version(self, config_file: Path) -> int:
        """The cloud version the file holds, or 0 when it was written or edited on site."""
        return self.version if self.version and sha256_file(config_file) == self.file_sha else 0

    def remember(self, version: int, result: dict[str, Any]) -> None:
        self.last_seen = max(self.last_seen, version)
        self.results[str(version)] = result
        for k in sorted(self.results, key=int)[:-KEEP_RESULTS]:
            del self.results[k]

    def begin(self, version: int, file_sha: str) -> None:
        self.trial = {"version": version, "file_sha": file_sha, "started": time.time()}

    def commit(self, version: int, digest: str, file_sha: str, by: str) -> None:
        self.version, self.digest, self.file_sha, self.by = version, digest, file_sha, by
        self.applied_at = time.time()
        self.trial = None
