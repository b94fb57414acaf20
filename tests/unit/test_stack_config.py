"""The parts of the local stack manager that need no Kafka, PostgreSQL or network but loopback."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditlog.devstack import stack
from auditlog.devstack.config import StackConfig, StackError
from auditlog.devstack.host import port_in_use
from auditlog.devstack.kafka import render_server_properties
from auditlog.devstack.postgres import _render_pg_conf, pg_data_dir


def _free_ports(count: int) -> list[int]:
    # All bound at once, so the kernel cannot hand out the same port twice.
    with contextlib.ExitStack() as stack_of_sockets:
        sockets = [stack_of_sockets.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def _quiet_config(home: Path, **ports: int) -> StackConfig:
    """A config whose ports nobody uses, so nothing is mistaken for a running stack."""
    kafka, controller, pg = _free_ports(3)
    defaults = {"kafka_port": kafka, "controller_port": controller, "pg_port": pg}
    return StackConfig(home=home, **{**defaults, **ports})


def test_from_env_defaults_to_dot_auditlog_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = StackConfig.from_env({})
    assert cfg == StackConfig(home=tmp_path / ".auditlog")
    assert (cfg.kafka_port, cfg.controller_port, cfg.pg_port) == (19092, 19093, 54329)
    assert cfg.kafka_bootstrap == "127.0.0.1:19092"
    assert cfg.database_url == "postgresql://auditlog:auditlog@127.0.0.1:54329/auditlog"


def test_from_env_reads_home_and_ports(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(
        {
            "AUDITLOG_HOME": str(tmp_path / "state"),
            "AUDITLOG_STACK_KAFKA_PORT": "29092",
            "AUDITLOG_STACK_CONTROLLER_PORT": "29093",
            "AUDITLOG_STACK_PG_PORT": " 54339 ",
        }
    )
    assert cfg == StackConfig(
        home=tmp_path / "state", kafka_port=29092, controller_port=29093, pg_port=54339
    )
    assert cfg.kafka_bootstrap == "127.0.0.1:29092"
    assert cfg.database_url == "postgresql://auditlog:auditlog@127.0.0.1:54339/auditlog"


def test_from_env_makes_a_relative_home_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert StackConfig.from_env({"AUDITLOG_HOME": "rel"}).home == tmp_path / "rel"
    # pg_ctl normalises "..", and the stack recognises its servers by their command lines.
    assert StackConfig(home=Path("a/../b")).home == tmp_path / "b"


def test_from_env_treats_empty_values_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = StackConfig.from_env({"AUDITLOG_HOME": "", "AUDITLOG_STACK_PG_PORT": ""})
    assert cfg == StackConfig(home=tmp_path / ".auditlog")


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1"])
def test_from_env_rejects_a_bad_port_naming_the_variable(value: str) -> None:
    with pytest.raises(StackError, match="AUDITLOG_STACK_KAFKA_PORT"):
        StackConfig.from_env({"AUDITLOG_HOME": "/x", "AUDITLOG_STACK_KAFKA_PORT": value})


def test_shared_buffers_come_from_the_environment_into_postgresql_conf(tmp_path: Path) -> None:
    default = StackConfig(home=tmp_path)
    assert "shared_buffers = 1GB\n" in _render_pg_conf(default, tmp_path)
    cfg = StackConfig.from_env(
        {"AUDITLOG_HOME": str(tmp_path), "AUDITLOG_STACK_PG_SHARED_BUFFERS": " 4GB "}
    )
    assert cfg.pg_shared_buffers == "4GB"
    assert "shared_buffers = 4GB\n" in _render_pg_conf(cfg, tmp_path)
    assert StackConfig.from_env({"AUDITLOG_HOME": str(tmp_path)}).pg_shared_buffers == "1GB"


@pytest.mark.parametrize("value", ["4G", "0GB", "4 GB", "lots", "1GB\nfsync = off", "-1MB"])
def test_from_env_rejects_bad_shared_buffers_naming_the_variable(value: str) -> None:
    with pytest.raises(StackError, match="AUDITLOG_STACK_PG_SHARED_BUFFERS"):
        StackConfig.from_env({"AUDITLOG_HOME": "/x", "AUDITLOG_STACK_PG_SHARED_BUFFERS": value})


def test_ports_must_differ() -> None:
    with pytest.raises(StackError, match="needs different ports"):
        StackConfig(home=Path("/x"), kafka_port=5000, controller_port=5001, pg_port=5000)


def _properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_server_properties_describe_one_loopback_kraft_node() -> None:
    cfg = StackConfig(home=Path("/srv/al"), kafka_port=29092, controller_port=29093)
    props = _properties(render_server_properties(cfg))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == "/srv/al/kafka/data"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    # One broker: its logs are flushed every second, since no replica would survive it.
    assert props["log.flush.interval.ms"] == "1000"
    assert props["log.flush.scheduler.interval.ms"] == "1000"
    # Scratch topics' files go with their deletion, not a minute into whatever runs next.
    assert props["log.segment.delete.delay.ms"] == "1000"
    # Nothing may listen beyond loopback.
    assert "0.0.0.0" not in render_server_properties(cfg)


def test_server_properties_escape_backslashes_in_paths() -> None:
    props = _properties(render_server_properties(StackConfig(home=Path("/a\\b"))))
    assert props["log.dirs"] == "/a\\\\b/kafka/data"


def test_port_in_use_sees_a_listener(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert port_in_use(port)
    listener.close()
    assert not port_in_use(port)


def test_start_names_the_port_its_owner_and_the_variable(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    cfg = _quiet_config(tmp_path, kafka_port=port)
    with pytest.raises(StackError) as raised:
        stack.start(cfg, echo=lambda _: None)
    message = str(raised.value)
    assert f"port {port} (Kafka)" in message
    assert "AUDITLOG_STACK_KAFKA_PORT" in message
    assert f"pid {os.getpid()}" in message


def test_start_checks_the_postgres_port_too(tmp_path: Path, listener: socket.socket) -> None:
    cfg = _quiet_config(tmp_path, pg_port=listener.getsockname()[1])
    with pytest.raises(StackError, match="AUDITLOG_STACK_PG_PORT"):
        stack.start(cfg, echo=lambda _: None)


def test_status_of_an_empty_home_is_stopped(tmp_path: Path) -> None:
    cfg = _quiet_config(tmp_path)
    components = stack.status(cfg)
    assert [(c.name, c.running, c.pid) for c in components] == [
        ("kafka", False, None),
        ("postgres", False, None),
    ]
    assert not stack.is_running(cfg)


def test_status_ignores_a_stale_pid_file(tmp_path: Path) -> None:
    cfg = _quiet_config(tmp_path)
    (tmp_path / "kafka").mkdir()
    # Our own pid is alive but is not a Kafka broker.
    (tmp_path / "kafka" / "kafka.pid").write_text(f"{os.getpid()}\n")
    assert stack.status(cfg)[0].pid is None


def test_stop_without_a_home_says_so_and_creates_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    stack.stop(_quiet_config(tmp_path / "absent"), echo=lines.append)
    assert lines == ["kafka: not running", "postgres: not running"]
    assert not (tmp_path / "absent").exists()


def test_pg_data_dir_defaults_under_home(tmp_path: Path) -> None:
    assert pg_data_dir(StackConfig(home=tmp_path)) == tmp_path / "pg" / "data"


def test_main_rejects_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.main(["restart"]) == 2
    assert stack.main([]) == 2
    assert "usage: auditlog stack start|stop|status" in capsys.readouterr().err


def test_main_status_exits_1_when_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _quiet_config(tmp_path)
    monkeypatch.setenv("AUDITLOG_HOME", str(cfg.home))
    monkeypatch.setenv("AUDITLOG_STACK_KAFKA_PORT", str(cfg.kafka_port))
    monkeypatch.setenv("AUDITLOG_STACK_CONTROLLER_PORT", str(cfg.controller_port))
    monkeypatch.setenv("AUDITLOG_STACK_PG_PORT", str(cfg.pg_port))
    assert stack.main(["status"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["kafka", "stopped"], ["postgres", "stopped"]]


def test_main_reports_a_bad_environment_as_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUDITLOG_STACK_PG_PORT", "five")
    assert stack.main(["status"]) == 2
    assert "AUDITLOG_STACK_PG_PORT='five' is not a whole number" in capsys.readouterr().err


def test_main_status_of_a_cluster_names_each_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _quiet_config(tmp_path)
    monkeypatch.setenv("AUDITLOG_HOME", str(cfg.home))
    monkeypatch.setenv("AUDITLOG_STACK_KAFKA_PORT", str(cfg.kafka_port))
    monkeypatch.setenv("AUDITLOG_STACK_CONTROLLER_PORT", str(cfg.controller_port))
    monkeypatch.setenv("AUDITLOG_STACK_PG_PORT", str(cfg.pg_port))
    assert stack.main(["status"], brokers=3) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["kafka-1", "kafka-2", "kafka-3", "postgres"]


def test_the_cli_reads_the_cluster_listener_and_replica_options() -> None:
    from auditlog.cli.main import build_parser

    args = build_parser().parse_args(
        ["stack", "start", "--brokers", "3", "--sasl-ssl-port", "29094", "--pg-replica-port", "5"]
    )
    assert (args.action, args.brokers, args.sasl_ssl_port) == ("start", 3, 29094)
    assert (args.pg_replica_port, args.pg_synchronous) == (5, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["stack", "start", "--brokers", "2"])
