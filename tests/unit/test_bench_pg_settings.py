"""bench/harness.py writes PostgreSQL's settings into pipeline results in the units an operator
writes them, so that a result says which configuration it measured."""

from __future__ import annotations

import pytest

from bench.harness import _with_unit


@pytest.mark.parametrize(
    ("setting", "unit", "written"),
    [
        ("131072", "8kB", "1GB"),  # shared_buffers 1GB
        ("8192", "MB", "8GB"),  # max_wal_size 8GB
        ("64", "8kB", "512kB"),  # backend_flush_after 512kB
        ("4096", "kB", "4MB"),  # gin_pending_list_limit
        ("900", "s", "900s"),  # checkpoint_timeout: time units as they are
        ("lz4", None, "lz4"),
        ("0.9", None, "0.9"),
        ("-1", "kB", "-1kB"),  # off
        ("3", "8kB", "24kB"),
    ],
)
def test_settings_in_the_units_operators_write(
    setting: str, unit: str | None, written: str
) -> None:
    assert _with_unit(setting, unit) == written
