"""Helpers for the forwarder's tests: a real rsyslog, small real HTTP receivers (webhook,
Splunk HEC, OTLP), forwarder processes, and the check that a destination got exactly the
sealed events in order."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from tests.conftest import Services, stop_processes

RSYSLOGD = "/usr/sbin/rsyslogd"


def need_rsyslog() -> str:
    """rsyslogd's path; skips without it (fails under CI=true: scripts/forward-tools.sh
    installs it before the tests run)."""
    path = shutil.which("rsyslogd") or (RSYSLOGD if Path(RSYSLOGD).exists() else None)
    gtls = list(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))
    if path and gtls:
        return path
    message = "rsyslogd with its gtls driver is missing: run scripts/forward-tools.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# -- sealed truth ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sealed:
    log_id: str
    index: int
    hash: str
    envelope: bytes
    tenant: str | None


async def sealed_events(services: Services, topic: str) -> list[Sealed]:
    conn = await asyncpg.connect(services.database_url)
    try:
        rows = await conn.fetch(
            "SELECT log_id, idx, event_hash, envelope, tenant_id FROM events"
            " WHERE log_id LIKE $1 ORDER BY log_id, idx",
            f"{topic}-%",
        )
    finally:
        await conn.close()
    return [
        Sealed(r["log_id"], r["idx"], bytes(r["event_hash"]).hex(), bytes(r["envelope"]),
               r["tenant_id"])
        for r in rows
    ]  # fmt: skip


def first_seen(got: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """(log, index, hash) in arrival order, each hash's first arrival only (at-least-once:
    a redelivery after a failure repeats what may have arrived)."""
    seen: set[str] = set()
    out = []
    for item in got:
        if item[2] not in seen:
            seen.add(item[2])
            out.append(item)
    return out


def assert_in_order(got: list[tuple[str, int, str]], expected: list[Sealed]) -> None:
    """Every expected event arrived, none other, and per log in index order."""
    unique = first_seen(got)
    assert sorted(h for _, _, h in unique) == sorted(e.hash for e in expected)
    for log_id in {e.log_id for e in expected}:
        mine = [(i, h) for lg, i, h in unique if lg == log_id]
        want = [(e.index, e.hash) for e in expected if e.log_id == log_id]
        assert mine == want, f"{log_id}: out of order or wrong"


# -- rsyslog -----------------------------------------------------------------------------------
def make_certs(directory: Path) -> None:
    """A CA, and certificates it signed for 127.0.0.1 (server.pem, server.key) and for a
    client (client.pem, client.key)."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(name: str, signer: Any = None, issuer: Any = None) -> tuple[Any, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )  # fmt: skip
        if signer is None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        else:
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
        return key, builder.sign(signer or key, hashes.SHA256())

    ca_key, ca = issue("auditlog test CA")
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    for name in ("server", "client"):
        key, cert = issue("localhost", ca_key, ca.subject)
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(pem))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


_SD = re.compile(r'\[auditlog@32473 log="([^"]+)" index="(\d+)" hash="([0-9a-f]{64})"\]')


@dataclass
class Rsyslog:
    """rsyslogd in the foreground: a plain TCP input, a TLS one, and a TLS one that requires a
    client certificate the test CA signed; every message written to ``out.log`` as timestamp,
    hostname, app, msgid, pri, structured data and MSG."""

    directory: Path
    tcp_port: int = 0
    tls_port: int = 0
    mtls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.directory / "out.log"

    def config(self) -> str:
        d = self.directory
        return f"""
global(maxMessageSize="256k" workDirectory="{d}"
       defaultNetstreamDriverCAFile="{d}/ca.pem"
       defaultNetstreamDriverCertFile="{d}/server.pem"
       defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imtcp" maxSessions="100")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}"
      listenPortFileName="{d}/tcp.port" ruleset="out")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}"
      listenPortFileName="{d}/tls.port" ruleset="out"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{self.mtls_port}"
      listenPortFileName="{d}/mtls.port" ruleset="out"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
template(name="raw" type="string"
         string="%timereported:::date-rfc3339%\\t%hostname%\\t%app-name%\\t%msgid%\\t%pri%\\t%structured-data%\\t%msg%\\n")
ruleset(name="out") {{
  action(type="omfile" file="{d}/out.log" template="raw")
}}
"""

    def start(self) -> None:
        binary = need_rsyslog()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "ca.pem").exists():
            make_certs(self.directory)
        for name in ("tcp.port", "tls.port", "mtls.port"):
            (self.directory / name).unlink(missing_ok=True)
        conf = self.directory / "rsyslog.conf"
        conf.write_text(self.config())
        with (self.directory / "rsyslogd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-n", "-f", str(conf), "-i", str(self.directory / "rsyslogd.pid")],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "rsyslogd did not start: " + (self.directory / "rsyslogd.log").read_text()
                )
            time.sleep(0.05)

    def _listening(self) -> bool:
        if not self.tcp_port:
            # First start: the ports rsyslog chose (it writes them once listening); later
            # starts listen on the same ones, as a restarted receiver would.
            files = [self.directory / f"{n}.port" for n in ("tcp", "tls", "mtls")]
            if not all(f.exists() and f.read_text().strip() for f in files):
                return False
            self.tcp_port, self.tls_port, self.mtls_port = (int(f.read_text()) for f in files)
        for port in (self.tcp_port, self.tls_port, self.mtls_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def messages(self) -> list[dict[str, Any]]:
        """Every message written so far (complete lines only)."""
        if not self.out.exists():
            return []
        found = []
        for line in self.out.read_bytes().split(b"\n")[:-1]:
            stamp, host, app, msgid, pri, sd, msg = line.split(b"\t", 6)
            match = _SD.fullmatch(sd.decode())
            assert match is not None, sd
            found.append({
                "timestamp": stamp.decode(), "hostname": host.decode(), "app": app.decode(),
                "msgid": msgid.decode(), "pri": int(pri), "log": match[1],
                "index": int(match[2]), "hash": match[3], "msg": msg,
            })  # fmt: skip
        return found


# -- HTTP receivers ----------------------------------------------------------------------------
@dataclass
class Receivers:
    """One aiohttp server: ``/hook`` (webhook, verifies every signature), ``/services/collector``
    (Splunk HEC with acks) and ``/v1/logs`` (OTLP). Each records (log, index, hash) as it
    accepts; ``fail_next`` answers 503 to that many requests first; ``refuse`` hashes make
    the webhook answer 422 to any batch holding one."""

    secret: bytes
    hec_token: str
    port: int = 0
    webhook: list[tuple[str, int, str]] = field(default_factory=list)
    webhook_bodies: list[dict[str, Any]] = field(default_factory=list)
    hec: list[tuple[str, int, str]] = field(default_factory=list)
    hec_events: list[dict[str, Any]] = field(default_factory=list)
    otlp: list[tuple[str, int, str]] = field(default_factory=list)
    otlp_bodies: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    fail_next: int = 0
    refuse: set[str] = field(default_factory=set)
    delay: float = 0.0
    _acks: dict[int, list[tuple[str, int, str]]] = field(default_factory=dict)
    _ack_polls: dict[int, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/services/collector/event", self._hec_event)
        app.router.add_post("/services/collector/ack", self._hec_ack)
        app.router.add_post("/v1/logs", self._otlp)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _gate(self) -> web.Response | None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503, text="busy")
        return None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Auditlog-Timestamp"]
        want = (
            "v1=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        if (
            not hmac.compare_digest(want, request.headers["X-Auditlog-Signature"])
            or abs(time.time() - int(stamp)) > 300
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        if (gate := await self._gate()) is not None:
            return gate
        parsed = orjson.loads(body)
        events = parsed["events"]
        if any(e["hash"] in self.refuse for e in events):
            return web.Response(status=422, text="refused")
        self.webhook_bodies.append(parsed)
        self.webhook += [(e["log"], e["index"], e["hash"]) for e in events]
        return web.json_response({"ok": True})

    async def _hec_event(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Splunk {self.hec_token}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        if (gate := await self._gate()) is not None:
            return gate
        body = await request.read()
        events = [orjson.loads(line) for line in body.split(b"\n") if line]
        ack_id = len(self._acks)
        self._acks[ack_id] = [
            (e["event"]["log"], e["event"]["index"], e["event"]["hash"]) for e in events
        ]
        self.hec_events += events
        return web.json_response({"text": "Success", "code": 0, "ackId": ack_id})

    async def _hec_ack(self, request: web.Request) -> web.Response:
        assert request.query["channel"] == request.headers["X-Splunk-Request-Channel"]
        wanted = orjson.loads(await request.read())["acks"]
        answer = {}
        for ack_id in wanted:
            # Indexed on the second poll: the forwarder must wait for it.
            polls = self._ack_polls[ack_id] = self._ack_polls.get(ack_id, 0) + 1
            answer[str(ack_id)] = polls >= 2
            if polls == 2:
                self.hec += self._acks[ack_id]
        return web.json_response({"acks": answer})

    async def _otlp(self, request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/x-protobuf"
        if (gate := await self._gate()) is not None:
            return gate
        export = ExportLogsServiceRequest()
        export.ParseFromString(await request.read())
        for resource in export.resource_logs:
            for scope in resource.scope_logs:
                for record in scope.log_records:
                    attrs = {a.key: a.value for a in record.attributes}
                    self.otlp.append((
                        attrs["auditlog.log"].string_value, attrs["auditlog.index"].int_value,
                        attrs["auditlog.hash"].string_value,
                    ))  # fmt: skip
                    self.otlp_bodies.append(record.body.string_value)
        return web.Response(
            body=ExportLogsServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


# -- forwarder processes -----------------------------------------------------------------------
@dataclass
class Forwarders:
    services: Services
    topic: str
    workdir: Path
    destinations: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "AUDITLOG_DATABASE_URL": self.services.database_url,
            "AUDITLOG_TOPIC": self.topic,
            "AUDITLOG_FORWARD_DESTINATIONS_FILE": str(self.destinations),
            "AUDITLOG_FORWARD_POLL_INTERVAL": "0.1",
            "AUDITLOG_FORWARD_RETRY_MIN": "0.1",
            "AUDITLOG_FORWARD_RETRY_MAX": "0.5",
            "AUDITLOG_FORWARD_LEASE": "2",
            **self.extra_env,
            **extra,
        }
        log = self.workdir / f"forward-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "auditlog.cli", "forward"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("forward-*.log")))

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                entry = orjson.loads(line)
                if entry.get("event") == name:
                    found.append(entry)
        return found

    def close(self) -> None:
        stop_processes(self.procs)

    async def aclose(self) -> None:
        """:meth:`close` off the event loop, so receivers on it answer the last deliveries."""
        await asyncio.to_thread(self.close)


def cli(services: Services, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "forward", *args],
        env={**os.environ, "AUDITLOG_DATABASE_URL": services.database_url},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def wait_for(
    check: Any, what: str, within: float = 60, forwarders: Forwarders | None = None
) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            tail = forwarders.logs()[-3000:] if forwarders else ""
            raise AssertionError(f"{what} not within {within} s\n{tail}")
        await asyncio.sleep(0.1)


async def caught_up(services: Services, like: str, within: float = 30) -> list[tuple[str, str]]:
    """Waits until every cursor of the destinations named ``LIKE like`` is at its log's size
    (a cursor moves just after the receiver answered); their (destination, log)."""
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(services.database_url)
    try:
        while True:
            rows = await conn.fetch(
                "SELECT c.destination, c.log_id, l.size - c.next_idx AS lag"
                " FROM forward_cursors c JOIN logs l USING (log_id) WHERE c.destination LIKE $1",
                like,
            )
            if rows and all(r["lag"] == 0 for r in rows):
                return sorted((r["destination"], r["log_id"]) for r in rows)
            assert time.monotonic() < deadline, f"cursors not caught up: {rows}"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
