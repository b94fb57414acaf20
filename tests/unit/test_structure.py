"""The tree is the architecture: the import rules of docs/architecture.md, checked on the source.

Nothing here lists modules by hand; modules are found by walking the directories, and only the
table of rooms (``ROOMS``) is written down. Every check reads each module's AST, so every import
statement counts: at the top, inside functions (lazy imports) and under ``TYPE_CHECKING``.

1. The core is pure. Every module under ``auditlog/core/`` (sub-packages included):
   a. importing it in a fresh interpreter loads no module of ``FORBIDDEN`` (I/O libraries,
      asyncio, logging, the filesystem; this catches what it imports transitively);
   b. its source imports nothing of the project outside ``auditlog.core`` and nothing outside
      ``PURE_IMPORTS``, and calls no builtin of ``IO_BUILTINS`` (open, print, exec, ...).
2. Rooms. Every module of ``auditlog/``, ``ingest/``, ``sealer/`` and ``query/`` belongs to a room
   of ``ROOMS`` (a new top-level module or package under ``auditlog/`` fails until it is placed),
   and imports only its own room, the ``auditlog`` package itself and the rooms ``ROOMS`` allows
   it. The table runs one way (it is checked to be acyclic), and only ``cli`` imports the
   services, which never import each other.
3. No import cycle between two modules of the project (``auditlog``, the services, ``bench``,
   ``tests``). The graph has an edge from a module to every project module it imports anywhere;
   ``TYPE_CHECKING`` imports are *not* excluded: two modules that need each other's types are
   still one tangle (sealer/records.py and sealer/rows.py were, until the type moved to the
   module that owns it). Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` too, but
   those implicit edges are left out: a package's ``__init__`` re-exporting its submodules is
   not a cycle.
4. Length. No module of ``LENGTH_CHECKED`` has more than ``MAX_LINES`` lines unless its module
   docstring or its leading comment has a line starting with the marker
   ``Longer than 500 lines because`` followed by the reason (at least three words), e.g.
   ``# Longer than 500 lines because the grammar's cases read best side by side.``
5. The checks can fail: each checker is fed a synthetic module or graph that breaks its rule.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = frozenset({"ingest", "sealer", "query", "forward"})
PRODUCT = ("auditlog", *sorted(SERVICES))
PROJECT = (*PRODUCT, "bench", "tests")
LENGTH_CHECKED = PROJECT
MAX_LINES = 500
MARKER = "Longer than 500 lines because"

# The rooms of auditlog/ (one package each, but producer, one module) and the services; each may
# import itself, the `auditlog` package's __init__ (which every import of a room runs) and the
# rooms listed here. Keep docs/architecture.md's table in step.
_SHARED = frozenset({"core", "runtime", "pg", "kafka", "web", "verify", "loadtest", "producer"})
ROOMS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "runtime": frozenset({"core"}),
    "pg": frozenset({"core", "runtime"}),
    "kafka": frozenset({"core", "runtime"}),
    "web": frozenset({"core", "runtime", "pg"}),
    "verify": frozenset({"core", "runtime", "pg", "web"}),  # the witness is an HTTP server
    "devstack": frozenset({"core", "runtime", "kafka"}),
    "loadtest": frozenset({"core", "runtime", "producer"}),  # the kafka scenario
    "producer": frozenset({"core", "runtime", "kafka"}),
    **dict.fromkeys(SERVICES, _SHARED),
    "cli": _SHARED | SERVICES | {"devstack"},
}

FORBIDDEN = [
    "asyncio", "aiokafka", "asyncpg", "aiohttp", "socket", "ssl", "select", "selectors",
    "subprocess", "multiprocessing", "concurrent", "threading", "http", "urllib.request",
    "requests", "httpx", "starlette", "uvicorn", "uvloop", "structlog", "logging",
    "prometheus_client", "sqlite3", "psycopg",
    "os.path",  # a stand-in for filesystem helpers such as pathlib/shutil
    "pathlib", "shutil", "tempfile",
]  # fmt: skip
PURE_IMPORTS = {
    "__future__", "abc", "base64", "binascii", "bisect", "collections", "dataclasses",
    "datetime", "enum", "functools", "hashlib", "heapq", "itertools", "json", "math",
    "operator", "re", "struct", "typing", "orjson", "blake3", "cryptography",
}  # fmt: skip
IO_BUILTINS = {"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint"}


# -- reading the tree ---------------------------------------------------------------------------
def find_modules(packages: Iterable[str] = PROJECT) -> dict[str, Path]:
    """Dotted name -> path of every module under ``packages`` (a package by its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


class Import(NamedTuple):
    target: str  # the module imported, absolute, as precise as the statement says
    line: int


def imports_of(
    tree: ast.AST, module: str, is_package: bool, known: Iterable[str] = ()
) -> list[Import]:
    """Every import in ``tree`` (in functions and TYPE_CHECKING blocks too), resolved.

    ``from x import y`` imports module ``x.y`` when that is a module of ``known``, else ``x``;
    relative imports are resolved against ``module``.
    """
    known = set(known)
    found: list[Import] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module.split(".")[: None if is_package else -1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        found += [Import(target, node.lineno) for target in dict.fromkeys(targets)]
    return found


def room_of(module: str) -> str | None:
    """The room of a module of the product: a service, ``auditlog`` (the package itself) or a
    room under it; None if it is in none."""
    parts = module.split(".")
    if parts[0] in SERVICES:
        return parts[0]
    if parts[0] != "auditlog":
        return None
    if len(parts) == 1:
        return "auditlog"
    return parts[1] if parts[1] in ROOMS else None


@functools.cache
def project() -> dict[str, tuple[Path, ast.Module]]:
    return {
        name: (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for name, path in find_modules().items()
    }


def project_imports(name: str) -> list[Import]:
    path, tree = project()[name]
    return imports_of(tree, name, path.name == "__init__.py", project())


# -- the checkers -------------------------------------------------------------------------------
def impurities(source: str, module: str = "auditlog.core.example") -> list[str]:
    """What makes a core module's source impure: imports outside the pure list or the core,
    calls of I/O builtins."""
    tree = ast.parse(source)
    found = []
    for imported in imports_of(tree, module, False, find_modules(["auditlog"])):
        top = imported.target.split(".")[0]
        if top == "auditlog":
            if not (imported.target + ".").startswith("auditlog.core."):
                found.append(f"imports non-core {imported.target}")
        elif top not in PURE_IMPORTS:
            found.append(f"imports {imported.target}")
    for node in ast.walk(tree):
        call = node.func if isinstance(node, ast.Call) else None
        if isinstance(call, ast.Name) and call.id in IO_BUILTINS:
            found.append(f"calls {call.id}()")
    return found


def layer_violations(module: str, imports: Iterable[Import]) -> list[str]:
    """The imports of product ``module`` that break the table of rooms."""
    room = room_of(module)
    if room is None:
        return [f"{module} is in no room"]
    allowed = (ROOMS.get(room) or frozenset()) | {room, "auditlog"}
    found = []
    for imported in imports:
        top = imported.target.split(".")[0]
        if top not in PROJECT:
            continue
        target_room = room_of(imported.target)
        if target_room not in allowed:
            found.append(
                f"{module}:{imported.line} (room {room}) imports {imported.target}"
                f" (room {target_room or top}); {room} may import only"
                f" {', '.join(sorted(allowed - {room, 'auditlog'})) or 'nothing of the project'}"
            )
    return found


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (a list of nodes, the first repeated at the end) per strongly connected
    component of ``graph`` that has one (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_cycle_through(graph, set(c), min(c)) for c in components)


def _cycle_through(graph: Mapping[str, Iterable[str]], members: set[str], start: str) -> list[str]:
    """The shortest path from ``start`` back to itself within ``members`` (breadth first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    return [*paths[node], start]
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def length_problem(source: str, limit: int = MAX_LINES) -> str | None:
    """Why a module's length breaks the rule, or None: over ``limit`` lines and no reason given
    at its top (module docstring or leading comment) in a line starting with ``MARKER``."""
    lines = len(source.splitlines())
    if lines <= limit:
        return None
    top: list[str] = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        top.append(line.lstrip("#").strip())
    docstring = ast.get_docstring(ast.parse(source))
    top += ["", *(docstring or "").splitlines()]
    for i, line in enumerate(top):
        if line.startswith(MARKER):
            paragraph = " ".join(top[i:][: ([*top[i:], ""].index("") or 1)])
            if len(paragraph[len(MARKER) :].split()) >= 3:
                return None
    return f"{lines} lines and no {MARKER!r} at its top"


# -- 1. the core is pure ------------------------------------------------------------------------
CORE = sorted(name for name in find_modules(["auditlog"]) if room_of(name) == "core")


@functools.cache
def _loaded_at_start() -> frozenset[str]:
    return _forbidden_after("")


def _forbidden_after(import_line: str) -> frozenset[str]:
    probe = (
        f"import sys, json\n{import_line}\n"
        "bad = [m for m in sys.modules"
        f" if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
        "print(json.dumps(sorted(bad)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
        cwd=ROOT,
    )  # fmt: skip
    return frozenset(json.loads(out.stdout))


def forbidden_modules_loaded_by(module: str) -> set[str]:
    """Forbidden modules an import of ``module`` loads in a fresh interpreter (those the
    interpreter loads at start, such as os.path, do not count)."""
    return set(_forbidden_after(f"import {module}") - _loaded_at_start())


def test_the_core_is_found() -> None:
    assert {"auditlog.core", "auditlog.core.hashing", "auditlog.core.envelope"} <= set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_importing_a_core_module_loads_no_io_module(module: str) -> None:
    loaded = forbidden_modules_loaded_by(module)
    assert not loaded, f"importing {module} loads {sorted({m.split('.')[0] for m in loaded})}"


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_only_pure_modules(module: str) -> None:
    assert impurities(project()[module][0].read_text(encoding="utf-8"), module) == []


# -- 2. rooms -----------------------------------------------------------------------------------
def _room_path(room: str) -> Path:
    if room in SERVICES:
        return ROOT / room
    return ROOT / "auditlog" / ("producer.py" if room == "producer" else room)


def test_every_part_of_auditlog_is_in_a_room() -> None:
    unplaced = [
        path.relative_to(ROOT).as_posix()
        for path in sorted((ROOT / "auditlog").iterdir())
        if path.name != "__init__.py"
        and (path.suffix == ".py" or (path.is_dir() and any(path.rglob("*.py"))))
        and room_of(f"auditlog.{path.stem}") is None
    ]
    assert not unplaced, (
        f"{unplaced} belong to no room: move them into the room of their concern, or add the"
        " room to ROOMS in tests/unit/test_structure.py (and to docs/architecture.md)"
    )


def test_every_top_level_package_is_known() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(PROJECT), (
        f"{sorted(packages - set(PROJECT))}: a new top-level package; a service goes into"
        " SERVICES and ROOMS of tests/unit/test_structure.py, anything shared into auditlog/"
    )


def test_every_room_of_the_table_exists() -> None:
    assert [room for room in ROOMS if not _room_path(room).exists()] == []


def test_the_rooms_import_one_way() -> None:
    assert cycles(ROOMS) == []
    assert {room for room, allowed in ROOMS.items() if allowed & SERVICES} == {"cli"}
    assert all(not allowed & {"cli"} for allowed in ROOMS.values())


def test_every_import_follows_the_rooms() -> None:
    product = [name for name in project() if name.split(".")[0] in PRODUCT]
    found = [v for name in product for v in layer_violations(name, project_imports(name))]
    assert not found, "imports against the rooms (docs/architecture.md):\n" + "\n".join(found)


# -- 3. no import cycles ------------------------------------------------------------------------
def module_graph(modules: Mapping[str, tuple[bool, ast.Module]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports; ``modules`` maps each module of the project to
    (whether it is a package, its AST)."""
    graph: dict[str, set[str]] = {}
    for name, (is_package, tree) in modules.items():
        edges = graph.setdefault(name, set())
        for imported in imports_of(tree, name, is_package, modules):
            target = imported.target
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges.add(target)
    return graph


def test_no_import_cycles() -> None:
    found = cycles(
        module_graph({n: (p.name == "__init__.py", t) for n, (p, t) in project().items()})
    )
    assert not found, "import cycles (make the dependency run one way):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )


# -- 4. length ----------------------------------------------------------------------------------
def test_no_module_is_too_long_without_a_reason() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path in find_modules(LENGTH_CHECKED).values()
        if (problem := length_problem(path.read_text(encoding="utf-8")))
    ]
    assert not found, "\n".join(
        [
            *found,
            f"split each by concern, or give the reason at its top (module docstring or leading"
            f" comment) in a line starting with {MARKER!r}",
        ]
    )


# -- 5. the checks can fail ---------------------------------------------------------------------
def test_the_core_checks_catch_impurity() -> None:
    assert "socket" in forbidden_modules_loaded_by("http.client")
    source = (
        "import asyncpg\nimport socket\nfrom asyncio import run\nfrom . import tiles\n"
        "from auditlog.pg.db import y\nfrom auditlog import runtime\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import auditlog.devstack.stack\n"
        "def f():\n    import subprocess\n    open('x')\n"
    )
    assert impurities(source) == [
        "imports asyncpg",
        "imports socket",
        "imports asyncio",
        "imports non-core auditlog.pg.db",
        "imports non-core auditlog.runtime",
        "imports non-core auditlog.devstack.stack",
        "imports subprocess",
        "calls open()",
    ]


def test_the_room_check_catches_a_wrong_import() -> None:
    source = (
        "import asyncpg\nfrom auditlog.core import hashing\nfrom auditlog.pg import db\n"
        "def lazy():\n    from query.app import app\n    import sealer.store\n"
    )
    imports = imports_of(ast.parse(source), "sealer.example", False, find_modules())
    assert [v.split(" (room")[0] for v in layer_violations("sealer.example", imports)] == [
        "sealer.example:5"
    ]
    core = imports_of(ast.parse("from ..pg import db\n"), "auditlog.core.x", False, ())
    assert layer_violations("auditlog.core.x", core) == [
        "auditlog.core.x:1 (room core) imports auditlog.pg (room pg);"
        " core may import only nothing of the project"
    ]
    assert layer_violations("auditlog.attic.x", []) == ["auditlog.attic.x is in no room"]
    assert cycles({**ROOMS, "core": frozenset({"cli"})}) != []


def test_the_cycle_check_catches_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"e"}, "f": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # Imports under TYPE_CHECKING count; a package's __init__ importing its modules does not.
    modules = {
        "sealer": (True, "from sealer import records, rows\n"),
        "sealer.records": (False, "if TYPE_CHECKING:\n    from sealer.rows import Prepared\n"),
        "sealer.rows": (False, "def f():\n    from .records import Sealable\n"),
    }
    graph = module_graph({name: (pkg, ast.parse(src)) for name, (pkg, src) in modules.items()})
    assert cycles(graph) == [["sealer.records", "sealer.rows", "sealer.records"]]


def test_the_length_check_catches_a_long_module() -> None:
    body = "x = 1\n" * 600
    assert length_problem(body) is not None
    assert length_problem('"""Short."""\n' + body) is not None
    assert length_problem(f'"""Long.\n\n{MARKER}\n"""\n' + body) is not None  # no reason
    reason = f'"""Long.\n\n{MARKER} the\ncases read best together.\n"""\n'
    assert length_problem(reason + body) is None
    assert length_problem(f"#!/usr/bin/env python\n# {MARKER} it is a table.\n" + body) is None
    assert length_problem(body + f"# {MARKER} it is a table.\n") is not None  # not at its top
    assert length_problem("x = 1\n" * 500) is None
