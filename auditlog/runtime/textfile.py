"""The outcome of a periodic command (``auditlog audit``, ``auditlog monitor --once``) as a file
for node-exporter's textfile collector, so an audit that stopped running, or failed, alerts.

The file is written whole and renamed into place: the collector never reads half a file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile


def write_run_metrics(
    path: Path,
    job: str,
    *,
    success: bool,
    counts: Mapping[str, tuple[float, str]],
    finished_at: float | None = None,
) -> None:
    """Write ``auditlog_<job>_last_run_timestamp_seconds``, ``auditlog_<job>_last_run_success``
    (1 or 0) and one ``auditlog_<job>_<name>`` gauge per entry of ``counts`` (value, help).

    Raises :class:`OSError` when the file cannot be written (its directory must exist).
    """
    registry = CollectorRegistry()
    Gauge(
        f"auditlog_{job}_last_run_timestamp_seconds",
        f"Unix time the last auditlog {job} run ended",
        registry=registry,
    ).set(time.time() if finished_at is None else finished_at)
    Gauge(
        f"auditlog_{job}_last_run_success",
        f"1 if the last auditlog {job} run found everything consistent, else 0",
        registry=registry,
    ).set(1 if success else 0)
    for name, (value, text) in counts.items():
        Gauge(f"auditlog_{job}_{name}", text, registry=registry).set(value)
    write_to_textfile(str(path), registry)
