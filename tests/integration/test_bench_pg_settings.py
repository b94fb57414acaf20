"""The PostgreSQL settings bench_sealer and bench_race record, read from a real server."""

from __future__ import annotations

import asyncio
import re

import pytest

from bench.harness import PG_SETTINGS, postgres_settings
from tests.conftest import Services

pytestmark = pytest.mark.integration


def test_every_recorded_setting_is_read_with_its_unit(services: Services) -> None:
    settings = asyncio.run(postgres_settings(services.database_url))
    assert list(settings) == list(PG_SETTINGS)
    assert re.fullmatch(r"\d+(\.\d+)?.*", settings["server_version"])
    for size in ("shared_buffers", "max_wal_size"):
        assert re.fullmatch(r"\d+(kB|MB|GB|B)", settings[size]), settings[size]
    assert re.fullmatch(r"\d+(s|min|ms)", settings["checkpoint_timeout"])
    assert settings["synchronous_commit"] in {"on", "off", "local", "remote_write", "remote_apply"}
