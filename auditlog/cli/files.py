"""Files the command line writes that hold secrets: readable by their owner only, from birth."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing what was there.

    The file is created 0600 (never world-readable for an instant, as write-then-chmod would
    leave it), and an existing file is set to 0600 before it is truncated.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
