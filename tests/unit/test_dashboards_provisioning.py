"""The shipped provisioning files parse, and name the data source and folder the dashboards use."""

from __future__ import annotations

import pytest

from dashboards import provisioning, schema
from dashboards.push import FOLDER_UID
from device_profiles.located_yaml import ConfigError


def test_datasource_matches_dashboards() -> None:
    ds = provisioning.load_datasources().datasources[0]
    assert (ds.uid, ds.type, ds.jsonData.dbName) == (schema.DATASOURCE_UID, "influxdb", schema.DATABASE)


def test_provider_folder_matches_push() -> None:
    p = provisioning.load_providers().providers[0]
    assert p.folderUid == FOLDER_UID and p.type == "file"


def test_typo_is_reported_with_line(tmp_path) -> None:
    text = provisioning.DATASOURCE_FILE.read_text().replace("dbName:", "dbname:")
    bad = tmp_path / "influxdb.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as e:
        provisioning.load_datasources(bad)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "dbname:" in ln)
    typo = [i for i in e.value.issues if i.key == "datasources[0].jsonData.dbname"]
    assert typo and typo[0].line == line and "unknown key" in typo[0].message
