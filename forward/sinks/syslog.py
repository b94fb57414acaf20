"""Syslog: RFC 5424 messages over TCP or TLS, octet-counted (RFC 6587 3.4.1, RFC 5425).

One message per event::

    <109>1 2026-12-05T00:41:55.123456Z HOSTNAME auditlog - event
      [auditlog@32473 log="audit.events-0" index="12" hash="9f0c..."] {"event":...}

PRI is ``facility * 8 + severity`` (default 13, log audit, and 6, informational); the timestamp
is the event's received time; the structured data carries the log, index and event hash (SD-ID
``auditlog@32473``: 32473 is the private enterprise number RFC 5612 reserves for examples); MSG
is the canonical envelope, byte for byte as sealed, so ``sha256(MSG)`` is the hash.

Syslog has no acknowledgement of its own. A batch counts as delivered once the receiver's TCP
stack acknowledged every byte of it (the socket's send queue, ``SIOCOUTQ``, is empty) and the
receiver has not closed the connection. A receiver can still lose what its TCP stack
acknowledged: stopping, it drops what it had not yet read. So the sink remembers what it sent in
the last ``RESEND_WINDOW`` seconds (at most ``RESEND_MAX`` messages), and when it finds the
connection closed or failed, it sends those messages again, in their order, on the next
connection before anything new: duplicates, never gaps (the hash is the dedup key). What it
remembers lives in the forwarder's memory: a receiver that loses data at the very moment the
forwarder itself dies is beyond what TCP syslog can tell.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import socket
import ssl
import termios
import time
from collections import deque
from collections.abc import Sequence
from typing import Final

from forward.config import Syslog
from forward.records import Record
from forward.sinks.base import DeliveryError

SD_ID: Final = "auditlog@32473"
_ACK_POLL: Final = 0.001
RESEND_WINDOW: Final = 5.0  # seconds before a connection failed whose messages are sent again
RESEND_MAX: Final = 50_000  # messages remembered at most


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def frame(record: Record, options: Syslog) -> bytes:
    """One octet-counted RFC 5424 message for ``record``."""
    pri = options.facility * 8 + options.severity
    header = (
        f"<{pri}>1 {record.received_text} {options.hostname} {options.app_name} - event"
        f' [{SD_ID} log="{_sd_value(record.log_id)}" index="{record.index}"'
        f' hash="{record.hash_hex}"] '
    ).encode()
    message = header + record.envelope
    return b"%d " % len(message) + message


def tls_context(options: Syslog) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)
    if options.cert_file is not None and options.key_file is not None:
        context.load_cert_chain(options.cert_file, options.key_file)
    return context


def unacknowledged_bytes(sock: socket.socket) -> int:
    """Bytes of the socket's send queue the peer has not acknowledged (Linux SIOCOUTQ)."""
    out = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, out, True)
    return out[0]


class SyslogSink:
    def __init__(self, options: Syslog, timeout: float) -> None:
        self.options = options
        self.timeout = timeout
        self.deadline = timeout
        self._context = tls_context(options) if options.tls else None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        # (monotonic time acknowledged, message) of the current connection, oldest first.
        self._sent: deque[tuple[float, bytes]] = deque(maxlen=RESEND_MAX)
        # Messages to send again first, once a connection is up: those acknowledged shortly
        # before the last connection was found broken.
        self._resend: list[bytes] = []

    def _broken(self) -> None:
        """The connection is gone: what it carried lately is sent again on the next one."""
        cutoff = time.monotonic() - RESEND_WINDOW
        recent = [message for at, message in self._sent if at >= cutoff]
        self._resend = (self._resend + recent)[-RESEND_MAX:]
        self._sent.clear()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = self._reader, self._writer
        if reader is not None and writer is not None:
            if not reader.at_eof() and reader.exception() is None and not writer.is_closing():
                return reader, writer
            self._broken()  # the receiver closed or reset it between batches
            await self.close()
        options = self.options
        reader, writer = await asyncio.open_connection(
            options.host,
            options.port,
            ssl=self._context,
            server_hostname=(options.server_name or options.host) if self._context else None,
        )
        self._reader, self._writer = reader, writer
        return reader, writer

    async def deliver(self, records: Sequence[Record]) -> None:
        messages = [frame(r, self.options) for r in records]
        try:
            reader, writer = await self._connect()
            resent = self._resend
            writer.write(b"".join(resent) + b"".join(messages))
            await writer.drain()
            await self._acknowledged(reader, writer)
        except (OSError, ssl.SSLError, EOFError) as exc:
            self._broken()
            await self.close()
            raise DeliveryError(f"syslog {self.options.host}:{self.options.port}: {exc!r}") from exc
        except BaseException:
            self._broken()
            await self.close()  # cut short (a deadline, a stop): the batch goes again, anew
            raise
        now = time.monotonic()
        self._sent.extend((now, message) for message in (*resent, *messages))
        self._resend = []
        while self._sent and self._sent[0][0] < now - RESEND_WINDOW:
            self._sent.popleft()

    async def _acknowledged(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raw = writer.get_extra_info("socket")
        while True:
            if reader.at_eof() or reader.exception() is not None or writer.is_closing():
                raise EOFError("the receiver closed the connection")
            if raw is None:
                break  # not a socket we can ask (not on Linux): drained is all we know
            if raw.fileno() < 0:
                raise EOFError("the connection is closed")
            if unacknowledged_bytes(raw) == 0:
                break
            await asyncio.sleep(_ACK_POLL)
        # A receiver that closed while the batch was on its way has acknowledged our bytes at
        # the TCP level only: give its close a moment to show.
        await asyncio.sleep(0)
        if reader.at_eof() or reader.exception() is not None:
            raise EOFError("the receiver closed the connection")

    async def close(self) -> None:
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()
