"""Secrets the command line writes are its owner's alone; ``auditlog up`` can bind again at once."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from auditlog.cli.files import write_private
from auditlog.cli.up import _port_free


def test_a_new_private_file_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dev.env"
    write_private(path, "TOKEN=x\n")
    assert path.read_text() == "TOKEN=x\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_readable_file_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text("old and longer\n")
    path.chmod(0o644)
    write_private(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_port_left_in_time_wait_counts_as_free() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    assert _port_free(port)


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not _port_free(server.getsockname()[1])
