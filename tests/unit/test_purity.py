"""The verifiable core does no I/O: it imports no I/O library, no asyncio, and calls no I/O builtin.

Two independent checks: importing each core module in a fresh interpreter must not load any
forbidden module (this catches transitive imports), and each module's source may only import from
an allow-list (this catches imports hidden behind functions or TYPE_CHECKING).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import auditlog

CORE_MODULES = [
    "auditlog.core.errors",
    "auditlog.core.envelope",
    "auditlog.core.hashing",
    "auditlog.core.entry",
    "auditlog.core.tiles",
    "auditlog.core.compact",
    "auditlog.core.integrate",
    "auditlog.core.proof",
    "auditlog.core.note",
    "auditlog.core.checkpoint",
    "auditlog.core.receipt",
    "auditlog.core.pangea_proof",
    "auditlog.core.audit",
    "auditlog.core.columns",
    "auditlog.core.cosignature",
    "auditlog.core.policy",
    "auditlog.core.consistency",
]

FORBIDDEN = [
    "asyncio",
    "aiokafka",
    "asyncpg",
    "socket",
    "ssl",
    "select",
    "selectors",
    "subprocess",
    "multiprocessing",
    "concurrent",
    "threading",
    "http",
    "urllib.request",
    "requests",
    "httpx",
    "starlette",
    "uvicorn",
    "structlog",
    "logging",
    "sqlite3",
    "psycopg",
    "os.path",  # a stand-in for filesystem helpers such as pathlib/shutil
    "pathlib",
    "shutil",
    "tempfile",
]

ALLOWED_IMPORTS = {
    "__future__",
    "base64",
    "binascii",
    "bisect",
    "collections",
    "dataclasses",
    "datetime",
    "functools",
    "hashlib",
    "json",
    "re",
    "typing",
    "orjson",
    "blake3",
    "cryptography",
    "auditlog",
}

IO_BUILTINS = {"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint"}


def module_path(name: str) -> Path:
    return Path(auditlog.__file__).parent / (name.rsplit(".", 1)[-1] + ".py")


def forbidden_modules_loaded_by(module: str) -> set[str]:
    """Forbidden modules present after importing ``module`` in a fresh interpreter."""
    probe = (
        "import sys, json\n"
        "{import_line}"
        "bad = [m for m in sys.modules"
        f" if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
        "print(json.dumps(sorted(bad)))\n"
    )

    def run(import_line: str) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-c", probe.format(import_line=import_line)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return set(json.loads(out.stdout))

    # The interpreter loads a few modules (os.path) at start-up; only what the import adds counts.
    return run(f"import {module}\n") - run("")


def impurities(source: str) -> list[str]:
    """Imports outside the allow-list, imports of non-core auditlog modules, I/O builtin calls."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        for name in names:
            if name.split(".")[0] not in ALLOWED_IMPORTS:
                found.append(f"imports {name}")
            elif name.startswith("auditlog") and name not in CORE_MODULES:
                found.append(f"imports non-core {name}")
        call = node.func if isinstance(node, ast.Call) else None
        if isinstance(call, ast.Name) and call.id in IO_BUILTINS:
            found.append(f"calls {call.id}()")
    return found


@pytest.mark.parametrize("module", CORE_MODULES)
def test_importing_loads_no_io_module(module: str) -> None:
    assert forbidden_modules_loaded_by(module) == set()


@pytest.mark.parametrize("module", CORE_MODULES)
def test_source_imports_only_pure_modules(module: str) -> None:
    assert impurities(module_path(module).read_text()) == []


def test_the_checks_catch_impurity() -> None:
    assert "socket" in forbidden_modules_loaded_by("http.client")
    source = (
        "import socket\nfrom asyncio import run\nfrom . import x\n"
        "from auditlog.pg.db import y\nimport auditlog.devstack.stack\n"
        "def f():\n    import subprocess\n    open('x')\n"
    )
    assert impurities(source) == [
        "imports socket",
        "imports asyncio",
        "imports .",
        "imports non-core auditlog.pg.db",
        "imports non-core auditlog.devstack.stack",
        "imports subprocess",
        "calls open()",
    ]


def test_core_module_list_is_complete() -> None:
    for module in CORE_MODULES:
        assert module_path(module).exists(), module
