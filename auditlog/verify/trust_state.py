"""A verifier's memory: the largest signed checkpoint it has verified, per log origin.

The read API serves only the latest checkpoint, and a database can be rolled back wholesale, so
the one defence against a log that shrinks or forks between two looks is for the verifier to
remember what it saw. The file is JSON ``{"version": 1, "logs": {origin: signed note}}``; it is
written to a temporary file and renamed over the old one, so a crash never leaves half a state.
Notes are kept verbatim and re-verified on every load by whoever uses them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["StateError", "load_state", "save_state"]


class StateError(Exception):
    """The state file exists but cannot be read as a state file."""


def load_state(path: Path) -> dict[str, str]:
    """origin -> signed note; empty when the file does not exist yet."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateError(f"cannot read state file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{path} is not JSON: {exc}") from exc
    logs = data.get("logs") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("version") != 1
        or not isinstance(logs, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in logs.items())
    ):
        raise StateError(f"{path} is not an auditlog state file (version 1)")
    return dict(logs)


def save_state(path: Path, logs: dict[str, str]) -> None:
    """Replace the state file atomically (write, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "logs": dict(sorted(logs.items()))}, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
