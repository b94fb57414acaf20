"""Files: JSON lines appended to a current file, rotated into gzip files.

Each event is one line (the JSON object of :func:`forward.records.json_record`). A batch is
acknowledged once its lines are written and fsynced to ``current-<start>.jsonl``. Past
``max_bytes``, or once older than ``max_age`` (checked at each batch), the current file is
compressed into ``events-<start>.jsonl.gz`` (written aside, fsynced, then renamed, so a
``.gz`` file is always whole) and a new current file begins. ``<start>`` is the UTC time the
file was begun, so the names sort in delivery order.

A forwarder killed mid-write leaves a partial last line: the next start cuts it off, and the
batch is written again from the cursor (lines of an unacknowledged batch may be there twice;
the hash is the dedup key). One forwarder process writes one directory.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from forward.config import Files
from forward.records import Record, json_record
from forward.sinks.base import DeliveryError

_STAMP: Final = "%Y%m%dT%H%M%S.%fZ"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink:
    def __init__(self, options: Files, timeout: float) -> None:
        self.options = options
        self.deadline = timeout
        self._current: Path | None = None
        self._begun = 0.0  # time.time() the current file was begun
        self._recovered = False

    async def deliver(self, records: Sequence[Record]) -> None:
        lines = b"".join(json_record(r) + b"\n" for r in records)
        try:
            await asyncio.to_thread(self._append, lines)
        except OSError as exc:
            raise DeliveryError(f"file {self.options.directory}: {exc!r}") from exc

    def _append(self, lines: bytes) -> None:
        current = self._open()
        with current.open("ab") as out:
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())
        size = current.stat().st_size
        if size >= self.options.max_bytes or time.time() - self._begun >= self.options.max_age:
            self._rotate(current)

    def _open(self) -> Path:
        if self._current is not None and self._current.exists():
            return self._current
        directory = self.options.directory
        directory.mkdir(parents=True, exist_ok=True)
        if not self._recovered:
            self._recover(directory)
            self._recovered = True
        found = sorted(directory.glob("current-*.jsonl"))
        if found:
            current = found[-1]
            stamp = current.stem.removeprefix("current-")
            self._begun = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC).timestamp()
        else:
            begun = datetime.now(UTC)
            self._begun = begun.timestamp()
            current = directory / f"current-{begun.strftime(_STAMP)}.jsonl"
            current.touch()
            _fsync_dir(directory)
        self._current = current
        return current

    def _recover(self, directory: Path) -> None:
        """Cut a partial last line left by a crash; finish a rotation a crash interrupted."""
        for current in directory.glob("current-*.jsonl"):
            rotated = directory / f"events-{current.stem.removeprefix('current-')}.jsonl.gz"
            if rotated.exists():
                current.unlink()
                continue
            data_size = current.stat().st_size
            if data_size == 0:
                continue
            with current.open("rb+") as f:
                keep = data_size
                f.seek(max(0, data_size - 1))
                if f.read(1) != b"\n":
                    text = current.read_bytes()
                    keep = text.rfind(b"\n") + 1
                    f.truncate(keep)
                    os.fsync(f.fileno())
        for partial in directory.glob("*.jsonl.gz.tmp"):
            partial.unlink()

    def _rotate(self, current: Path) -> None:
        stamp = current.stem.removeprefix("current-")
        final = current.with_name(f"events-{stamp}.jsonl.gz")
        partial = final.with_name(final.name + ".tmp")
        with current.open("rb") as src, gzip.open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        with partial.open("rb") as done:
            os.fsync(done.fileno())
        partial.rename(final)
        _fsync_dir(current.parent)
        current.unlink()
        _fsync_dir(current.parent)
        self._current = None

    async def close(self) -> None:
        self._current = None
