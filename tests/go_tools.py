"""The Go toolchain and the Go tools tests run: found, built and cached one way for every test.

A missing tool skips its tests on a developer's machine and fails them under ``CI=true``: CI
must never pass by checking nothing. scripts/go-tools.sh, which scripts/test.sh runs first, puts
them in the user's cache, ``auditlog/tools/<name>-<version>/``
under ``$XDG_CACHE_HOME`` or ``~/.cache``, outside the clone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]


def missing(what: str) -> NoReturn:
    """Skip, or fail under CI: a check that cannot run there must not look like a pass."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: scripts/test.sh installs the tools first)")
    pytest.skip(what)


def go_env() -> dict[str, str]:
    # go.sum is committed: never rewrite it; never download another toolchain; nothing to link.
    return {**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def go_toolchain(minimum: tuple[int, int] = (1, 22)) -> str:
    """The ``go`` command, at least version ``minimum``."""
    go = shutil.which("go")
    if go is None:
        missing("Go toolchain not on PATH: the Go checks need it")
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()  # "go1.26.8"
    numbers = re.match(r"go(\d+)\.(\d+)", version)
    if numbers is None or (int(numbers[1]), int(numbers[2])) < minimum:
        missing(f"{version}: these checks need Go {minimum[0]}.{minimum[1]}+")
    return go


def go_build(module: Path, out: Path, *, minimum: tuple[int, int] = (1, 22)) -> Path:
    """Build the Go program in ``module`` (its own go.mod, modules from the cache) to ``out``."""
    result = subprocess.run(
        [go_toolchain(minimum), "build", "-o", str(out), "."],
        cwd=module,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"go build of {module.relative_to(ROOT)} failed:\n{result.stderr}")
    return out


def cached_tool(name: str, version: str) -> Path:
    """A tool built by scripts/go-tools.sh into the user's cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = cache / "auditlog" / "tools" / f"{name}-{version}" / name
    if not path.is_file():
        missing(f"{name} {version} is not built: scripts/go-tools.sh builds it into {path}")
    return path
