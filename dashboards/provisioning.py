"""Models of the two Grafana provisioning files we ship, so a typo in them is caught by a test with the
file, line and key (via `device_profiles.located_yaml`), and their uids stay tied to the code."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from device_profiles.located_yaml import load_model

HERE = Path(__file__).parent / "provisioning"
DATASOURCE_FILE = HERE / "datasources" / "influxdb.yaml"
PROVIDER_FILE = HERE / "dashboards" / "shelterwatch.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InfluxJsonData(_Strict):
    dbName: str
    httpMode: Literal["GET", "POST"] = "GET"
    timeInterval: str | None = None
    httpHeaderName1: str | None = None


class Datasource(_Strict):
    name: str
    uid: str = Field(pattern=r"^[a-zA-Z0-9\-_]{1,40}$")
    type: Literal["influxdb"]
    access: Literal["proxy", "direct"]
    url: str
    user: str | None = None
    isDefault: bool = False
    editable: bool = False
    jsonData: InfluxJsonData
    secureJsonData: dict[str, str] = {}


class DatasourceFile(_Strict):
    apiVersion: Literal[1]
    datasources: list[Datasource] = Field(min_length=1)


class ProviderOptions(_Strict):
    path: str
    foldersFromFilesStructure: bool = False


class Provider(_Strict):
    name: str
    orgId: int = 1
    folder: str
    folderUid: str = Field(pattern=r"^[a-zA-Z0-9\-_]{1,40}$")
    type: Literal["file"]
    disableDeletion: bool = False
    allowUiUpdates: bool = False
    updateIntervalSeconds: int = 10
    options: ProviderOptions


class ProviderFile(_Strict):
    apiVersion: Literal[1]
    providers: list[Provider] = Field(min_length=1)


def load_datasources(path: Path = DATASOURCE_FILE) -> DatasourceFile:
    return load_model(DatasourceFile, path)


def load_providers(path: Path = PROVIDER_FILE) -> ProviderFile:
    return load_model(ProviderFile, path)
