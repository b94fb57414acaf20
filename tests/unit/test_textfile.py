"""`--textfile`: a periodic command's outcome for node-exporter's textfile collector, written
whole (renamed into place), also when the command could not run at all."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from auditlog.cli.main import main
from auditlog.core.note import NoteSigner
from auditlog.runtime.textfile import write_run_metrics


def read_metrics(path: Path) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_the_file_holds_the_run_and_nothing_else_is_left(tmp_path: Path) -> None:
    path = tmp_path / "auditlog_audit.prom"
    counts = {"entries_checked": (1234.0, "Entries")}
    write_run_metrics(path, "audit", success=True, counts=counts, finished_at=1_800_000_000.5)
    assert read_metrics(path) == {
        "auditlog_audit_last_run_timestamp_seconds": 1_800_000_000.5,
        "auditlog_audit_last_run_success": 1.0,
        "auditlog_audit_entries_checked": 1234.0,
    }
    write_run_metrics(path, "audit", success=False, counts={"entries_checked": (0.0, "Entries")})
    assert read_metrics(path)["auditlog_audit_last_run_success"] == 0.0
    assert [p.name for p in tmp_path.iterdir()] == ["auditlog_audit.prom"]  # no temporary file
    with pytest.raises(FileNotFoundError):
        write_run_metrics(tmp_path / "no" / "such.prom", "audit", success=True, counts={})


def _vkey(tmp_path: Path) -> Path:
    path = tmp_path / "log.vkey"
    path.write_text(NoteSigner.generate("textfile.test").vkey() + "\n")
    return path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_an_audit_that_cannot_run_is_a_failed_run(tmp_path: Path) -> None:
    prom = tmp_path / "audit.prom"
    url = f"postgresql://nobody:x@127.0.0.1:{_closed_port()}/nothing"
    args = ["audit", "--key", str(_vkey(tmp_path)), "--database-url", url, "--no-state"]
    assert main([*args, "--textfile", str(prom)]) == 2
    metrics = read_metrics(prom)
    assert metrics["auditlog_audit_last_run_success"] == 0.0
    assert metrics["auditlog_audit_entries_checked"] == 0.0
    assert metrics["auditlog_audit_logs_checked"] == 0.0
    assert metrics["auditlog_audit_last_run_timestamp_seconds"] > 1.7e9


def test_a_monitor_round_against_an_unreachable_server_is_a_failed_run(tmp_path: Path) -> None:
    prom = tmp_path / "monitor.prom"
    url = f"http://127.0.0.1:{_closed_port()}"
    args = ["monitor", "--url", url, "--key", str(_vkey(tmp_path)), "--no-state", "--once"]
    assert main([*args, "--textfile", str(prom)]) == 2
    metrics = read_metrics(prom)
    assert metrics["auditlog_monitor_last_run_success"] == 0.0
    assert metrics["auditlog_monitor_logs_checked"] == 0.0


def test_an_unwritable_textfile_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    prom = tmp_path / "missing-dir" / "monitor.prom"
    args = ["monitor", "--url", url, "--key", str(_vkey(tmp_path)), "--no-state", "--once"]
    assert main([*args, "--textfile", str(prom)]) == 2
    assert f"cannot write --textfile {prom}" in capsys.readouterr().err
