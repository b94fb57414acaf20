"""One JSON file per benchmark run, under ``bench/results/``: what docs/performance.md quotes.

Light on purpose (standard library only, no devstack), so the pure benches use it too::

    started = results.now()
    ...                                      # measure, print as before
    path = results.write("bench_core", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")

The file, ``<results_dir>/<bench>-<UTC start, yyyymmddThhmmssZ>.json``, holds (format
``auditlog-bench-result/1``):

* ``bench``, ``command`` (the command line as typed, quoted for a POSIX shell, to be run from
  ``cwd``, relative to the repository root) and ``argv``;
* ``started_at``, ``ended_at`` (UTC, ISO 8601) and ``seconds``;
* ``git``: ``commit`` (``git rev-parse HEAD``), ``dirty`` (tracked files differ from it) and
  ``dirty_paths``;
* ``host``: Python version and implementation, platform, machine, CPU count (and how many this
  process may use), CPU model (``/proc/cpuinfo``), memory (``/proc/meminfo``), load averages at
  start and end (other work on the machine shows there);
* ``parameters``: the bench's options;
* ``status``: ``ok`` unless the bench says otherwise (a failed check);
* ``figures``: every number the bench printed, structured, with units in the key names
  (``_us``, ``_ms``, ``_s``, ``_per_s``, ``_bytes``, ``_mib``), plus raw per-phase data where the
  bench has it. NaN and infinities are written as ``null``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "auditlog-bench-result/1"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(__file__).resolve().parent / "results"


_loadavg_at_start: list[float] | None = None


def now() -> datetime:
    """The start time to pass to :func:`write` (UTC; it also names the file). Also notes the
    load averages, which the result reports beside those at the end."""
    global _loadavg_at_start  # noqa: PLW0603 - one run per process
    _loadavg_at_start = _loadavg()
    return datetime.now(UTC)


def add_option(parser: Any) -> None:
    """``--results-dir`` on an ``argparse`` parser (default ``bench/results``)."""
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_DIR,
        help="where to write this run's JSON result (default bench/results)",
    )


def write(
    bench: str,
    started: datetime,
    parameters: Mapping[str, Any],
    figures: Mapping[str, Any],
    results_dir: Path | str | None = None,
    *,
    status: str = "ok",
) -> Path:
    """Write the run's result file and return its path (relative to the working directory
    when under it)."""
    ended = datetime.now(UTC)
    directory = Path(results_dir) if results_dir is not None else DEFAULT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{bench}-{stamp}.json"
    for n in range(2, 100):
        if not path.exists():
            break
        path = directory / f"{bench}-{stamp}-{n}.json"
    document = {
        "format": FORMAT,
        "bench": bench,
        "command": _command(),
        "cwd": _cwd(),
        "argv": list(sys.argv),
        "started_at": _iso(started),
        "ended_at": _iso(ended),
        "seconds": round((ended - started).total_seconds(), 3),
        "git": _git(),
        "host": _host(),
        "parameters": {k: v for k, v in parameters.items() if k != "results_dir"},
        "status": status,
        "figures": figures,
    }
    partial = path.with_suffix(".partial")
    partial.write_text(
        json.dumps(_clean(document), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    )
    partial.rename(path)
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(Path.cwd())
    return path


def percentiles(values: list[float], scale: float = 1.0) -> dict[str, float]:
    """p50, p90, p95, p99, p99.9 and max of ``values`` times ``scale`` (nearest rank, as the
    benches' own ``percentile``), with the count."""
    ordered = sorted(values)
    out: dict[str, float] = {"n": len(ordered)}
    for name, p in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9)):
        out[name] = (
            ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * scale
            if ordered
            else math.nan
        )
    out["max"] = ordered[-1] * scale if ordered else math.nan
    return out


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _command() -> str:
    """The command line as typed (``sys.orig_argv``: interpreter, ``-m module`` or script)."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    return shlex.join(argv)


def _cwd() -> str:
    cwd = Path.cwd().resolve()
    with contextlib.suppress(ValueError):
        return str(cwd.relative_to(REPO)) or "."
    return str(cwd)


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = [line[3:] for line in git("status", "--porcelain", "-uno").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "dirty_paths": []}
    return {"commit": commit, "dirty": bool(changed), "dirty_paths": changed}


def _host() -> dict[str, Any]:
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    usable = None
    with contextlib.suppress(AttributeError, OSError):
        usable = len(os.sched_getaffinity(0))
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": cpu_model,
        "memory_bytes": memory,
        "loadavg_at_start": _loadavg_at_start,
        "loadavg_at_end": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities to null, tuples to lists, paths to strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
