"""Upload the dashboards to a running Grafana over its HTTP API, with grafana-client.

Idempotent: the folder is looked up by uid and created only when missing; each dashboard is posted
with its fixed uid and `overwrite: true`, so a second push updates in place (Grafana bumps the
version) instead of creating copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FOLDER_UID = "shelterwatch"
FOLDER_TITLE = "shelterwatch"


class PushError(RuntimeError):
    """Grafana refused a request; the message says which one and why."""


@dataclass(frozen=True, slots=True)
class Pushed:
    uid: str
    title: str
    version: int | None
    url: str | None


def dashboard_payloads() -> list[dict[str, Any]]:
    from dashboards.build import build_all, to_json

    return [json.loads(to_json(d)) for d in build_all().values()]


def push(
    url: str,
    token: str,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
    message: str = "shelterwatch dashboards push",
    timeout: float = 30.0,
) -> list[Pushed]:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        try:
            api.folder.get_folder(folder_uid)
        except GrafanaClientError as e:
            if e.status_code != 404:
                raise
            api.folder.create_folder(folder_title, uid=folder_uid)
        out = []
        for dash in dashboard_payloads():
            dash = {**dash, "id": None}  # Grafana matches on uid; a numeric id is per instance
            r = api.dashboard.update_dashboard(
                {"dashboard": dash, "folderUid": folder_uid, "overwrite": True, "message": message}
            )
            out.append(Pushed(dash["uid"], dash["title"], r.get("version"), r.get("url")))
        return out
    except GrafanaException as e:
        raise PushError(f"Grafana at {url} answered {e.status_code}: {e.message}") from e
