"""Write the NATS nodes' accounts file from the enrolled gateways, and have the nodes reload it.

The text comes from `cloud.cluster.natsauth` (pure); this module is the I/O around it: the
gateways' bcrypt hashes from the web database (`web_nats_gateway_users`, filled at enrolment), the
cloud's own user from its account (cloud/broker_account.py: hashed here, never written in clear),
an atomic rewrite of the include file (a node reading it half-written would refuse the reload and
keep the old accounts), and SIGHUP to the local nodes (`nats-server --signal reload=<pid>` does the
same). `shelterwatch cloud nats-users` runs it on each node's machine after an enrolment.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.auth.models import NatsGatewayUser
from cloud.broker_account import BrokerAccount
from cloud.cluster import natsauth
from cloud.cluster.partition import DEFAULT_PARTITIONS


def users_text(db: sessionmaker[Session], cloud: BrokerAccount, partitions: int = DEFAULT_PARTITIONS) -> str:
    """The include file: the cloud's user and every enrolled gateway's, in a stable order."""
    if not cloud.username or not cloud.password:
        raise ValueError("the cloud's broker account is needed (SHELTERWATCH_BROKER_USER and "
                         "SHELTERWATCH_BROKER_PASSWORD_FILE): without it the replicas could not connect")
    with db() as s:
        rows = list(s.scalars(select(NatsGatewayUser).order_by(NatsGatewayUser.site, NatsGatewayUser.gateway)))
    users = [natsauth.cloud_user(cloud.username, natsauth.bcrypt_hash(cloud.password))]
    users += [natsauth.gateway_user(r.site, r.gateway, r.bcrypt_hash, partitions) for r in rows]
    return natsauth.render_authorization(users)


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
