"""`auditlog stack status` lists the PostgreSQL replica when the home has one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auditlog.devstack import postgres_replica, stack
from auditlog.devstack.config import StackConfig


def test_a_home_without_a_replica_has_no_replica_line(tmp_path: Path) -> None:
    assert postgres_replica.replica_status(StackConfig(home=tmp_path)) is None


def test_a_replica_that_is_not_running_is_listed_as_stopped(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    data = postgres_replica.replica_files(cfg).data
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    # A stale pid file naming a live process that is not this cluster's postmaster.
    (data / "postmaster.pid").write_text(f"{os.getpid()}\n{data}\n0\n54330\n")
    status = postgres_replica.replica_status(cfg)
    assert status is not None
    assert (status.name, status.running, status.pid) == ("replica", False, None)
    assert str(data) in status.detail


def test_stack_status_prints_the_replica_without_changing_the_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUDITLOG_HOME", str(tmp_path))
    # Ports of its own: the status of the developer's running stack must not leak in.
    monkeypatch.setenv("AUDITLOG_STACK_KAFKA_PORT", "29871")
    monkeypatch.setenv("AUDITLOG_STACK_CONTROLLER_PORT", "29872")
    monkeypatch.setenv("AUDITLOG_STACK_PG_PORT", "29873")
    cfg = StackConfig.from_env()
    data = postgres_replica.replica_files(cfg).data
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    assert stack.main(["status"]) == 1  # nothing runs in this home
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines()][-1] == ["replica", "stopped"]
