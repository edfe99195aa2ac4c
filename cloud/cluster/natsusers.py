"""Write the NATS nodes' accounts file from the enrolled gateways, and have the nodes reload it.

The text comes from `cloud.cluster.natsauth` (pure); this module is the I/O around it: the
gateways' bcrypt hashes from the web database (`web_nats_gateway_users`, filled at enrolment), the
cloud's own user from its account (cloud/broker_account.py: hashed here, never written in clear),
an atomic rewrite of the include file (a node reading it half-written would refuse the reload and
keep the old accounts), and SIGHUP to the local nodes (`nats-server --signal reload=<pid>` does the
same). Two ways to run it:

* `cloud serve --nats-users-file F --nats-reload-pid P` (`UsersSync`): every replica re-reads the
  enrolled accounts every few seconds and, when they changed, rewrites its machine's file and reloads
  its node. With a replica beside each node, an enrolment on any replica reaches every node within
  `interval_s`: accounts are per node (the cluster does not share them), and a node left without the
  new user would refuse the gateway when it moves there.
* `shelterwatch cloud nats-users` once, on a node's machine without a replica (after an enrolment).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.auth.models import NatsGatewayUser
from cloud.broker_account import BrokerAccount
from cloud.cluster import natsauth
from cloud.cluster.partition import DEFAULT_PARTITIONS

log = logging.getLogger(__name__)


def _cloud_hash(cloud: BrokerAccount) -> tuple[str, str]:
    if not cloud.username or not cloud.password:
        raise ValueError("the cloud's broker account is needed (SHELTERWATCH_BROKER_USER and "
                         "SHELTERWATCH_BROKER_PASSWORD_FILE): without it the replicas could not connect")
    return cloud.username, natsauth.bcrypt_hash(cloud.password)


def _gateways(db: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with db() as s:
        rows = s.scalars(select(NatsGatewayUser).order_by(NatsGatewayUser.site, NatsGatewayUser.gateway))
        return [(r.site, r.gateway, r.bcrypt_hash) for r in rows]


def _render(cloud_user: tuple[str, str], gateways: list[tuple[str, str, str]], partitions: int) -> str:
    users = [natsauth.cloud_user(*cloud_user)]
    users += [natsauth.gateway_user(site, gw, h, partitions) for site, gw, h in gateways]
    return natsauth.render_authorization(users)


def users_text(db: sessionmaker[Session], cloud: BrokerAccount, partitions: int = DEFAULT_PARTITIONS) -> str:
    """The include file: the cloud's user and every enrolled gateway's, in a stable order."""
    return _render(_cloud_hash(cloud), _gateways(db), partitions)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step (same directory, fsync'd, mode 0640: it holds hashes only)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def reload_nodes(pids: Iterable[int]) -> None:
    """SIGHUP: nats-server re-reads its config (accounts are hot-reloadable); connected clients whose
    user is gone or whose permissions changed are re-checked by the server."""
    for pid in pids:
        os.kill(pid, signal.SIGHUP)


class UsersSync:
    """Keeps one node's accounts file equal to the enrolled accounts (see the module doc). The
    cloud's hash is made once per process, so the file changes only when an account does."""

    def __init__(self, db: sessionmaker[Session], cloud: BrokerAccount, path: Path, pids: list[int],
                 partitions: int = DEFAULT_PARTITIONS, interval_s: float = 5.0) -> None:
        self.db, self.path, self.pids, self.partitions, self.interval_s = db, path, pids, partitions, interval_s
        self._cloud = _cloud_hash(cloud)
        self._seen: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self) -> bool:
        """Rewrite and reload if the accounts changed since the last write; True if it did."""
        gateways = _gateways(self.db)
        digest = hashlib.sha256(repr((self._cloud[0], gateways, self.partitions)).encode()).hexdigest()
        if digest == self._seen:
            return False
        write_atomically(self.path, _render(self._cloud, gateways, self.partitions))
        reload_nodes(self.pids)
        self._seen = digest
        log.info("NATS accounts: %s rewritten (%d gateways), %d node(s) reloaded", self.path, len(gateways),
                 len(self.pids))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync_once()
            except Exception as e:  # a database hiccup or a node restarting: try again next round
                log.warning("NATS accounts: cannot update %s: %s", self.path, e)

    def start(self) -> UsersSync:
        try:  # at start: a broken path or pid stops `cloud serve` with a clear error
            self.sync_once()
        except OSError as e:
            raise ValueError(f"NATS accounts file {self.path} (pids {self.pids}): {e}") from None
        self._thread = threading.Thread(target=self._run, name="nats-users", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
