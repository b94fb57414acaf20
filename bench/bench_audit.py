"""Benchmark the pure auditor: entries per minute on one core.

    .venv/bin/python bench/bench_audit.py                      # 1M entries, rfc6962-sha256
    .venv/bin/python bench/bench_audit.py --entries 200000 --mode bundles

A log of ``--entries`` realistic events (auditlog/loadtest/events.py; ``--templated``: one
message pattern, the old best case) is sealed in memory first (integrate in batches of
``--batch``, one signed checkpoint per batch, rows with their searchable columns, tiles and entry
bundles kept in dicts), then audited exactly as ``auditlog audit`` does it, chunk by chunk, with
the stored tiles it asks for answered from the dicts. Only the audit is timed: what is measured
is the auditor's own work (JSON parse and column comparison, two SHA-256 per entry, tree
rebuild, tile, bundle and checkpoint comparison); a database or HTTP edge adds its transfer time.

``--mode rows`` audits from event rows (database audit), ``bundles`` from entry bundles (API audit
with a token), ``tiles`` from tiles alone (API audit without one).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlog.core.audit import (
    LogAuditor,
    StoredCheckpoint,
    StoredEvent,
    StoredHead,
    expected_columns,
)
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import leaf_hash, log_entry
from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.tiles import TILE_WIDTH, TileID, encode_bundle
from auditlog.loadtest.events import EventGenerator

try:
    from bench import results
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    import results  # type: ignore[no-redef, import-not-found]

ORIGIN = "bench.auditlog.test/audit.events/0"


def envelope(i: int, t0: datetime, generator: EventGenerator | None = None) -> Envelope:
    """Entry ``i``: a realistic event from ``generator``, or the templated best case."""
    received = format_received_at(t0 + timedelta(microseconds=i))
    if generator is not None:
        return Envelope(event=generator.event(t0), received_at=received)
    event: dict[str, object] = {
        "message": f"User {i % 977} updated the record {i}",
        "actor": f"user-{i % 977}@example.com",
        "action": "update",
        "target": f"record-{i % 10_007}",
        "status": "success",
        "source": "web",
        "tenant_id": f"tenant-{i % 13}",
        "new": '{"state": "active"}',
        "old": '{"state": "pending"}',
        "timestamp": "2025-03-01T12:00:00.000000Z",
    }
    return Envelope(event=event, received_at=received)


def build(
    n: int, batch: int, scheme: str, templated: bool = False
) -> tuple[dict[int, list[StoredEvent]], ...]:
    """Seal ``n`` entries in memory; rows by chunk, tiles, bundles, checkpoints, head."""
    generator = None if templated else EventGenerator(0)
    hasher = get_hasher(scheme)
    signer = NoteSigner.generate("bench.auditlog.test")
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    rows: dict[int, list[StoredEvent]] = {}
    tiles: dict[TileID, bytes] = {}
    bundles: dict[int, list[bytes]] = {}
    notes: list[StoredCheckpoint] = []
    size = 0
    root = hasher.empty_root()
    while size < n:
        envs = [envelope(i, t0, generator) for i in range(size, min(size + batch, n))]
        canon = [e.canonical for e in envs]
        edge = {t: tiles[t] for t in tiles_to_fetch(size)}
        result = integrate(hasher, size, edge, [leaf_hash(hasher, c) for c in canon])
        tiles.update(result.tiles)
        for i, (env, c) in enumerate(zip(envs, canon, strict=True)):
            index = size + i
            columns = expected_columns(env.to_dict())
            rows.setdefault(index // TILE_WIDTH, []).append(
                StoredEvent(index, env.event_hash, c, columns)
            )
            bundles.setdefault(index // TILE_WIDTH, []).append(log_entry(c))
        size, root = result.size, result.root
        note = sign_note(Checkpoint(ORIGIN, size, root).to_text(), [signer])
        notes.append(StoredCheckpoint(note, size, root))
    encoded = {k: encode_bundle(v) for k, v in bundles.items()}
    head = StoredHead("bench-0", ORIGIN, scheme, size, root, notes[-1].note)
    return rows, tiles, encoded, notes, head, signer  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000, help="entries per checkpoint")
    parser.add_argument("--scheme", default="rfc6962-sha256")
    parser.add_argument("--mode", choices=["rows", "bundles", "tiles"], default="rows")
    parser.add_argument(
        "--templated", action="store_true", help="the best case: templated events, not realistic"
    )
    results.add_option(parser)
    args = parser.parse_args()
    run_started = results.now()

    started = time.perf_counter()
    rows, tiles, bundles, notes, head, signer = build(
        args.entries, args.batch, args.scheme, args.templated
    )
    built = time.perf_counter() - started
    print(f"sealed {args.entries:,} entries in memory in {built:.1f}s ({len(notes):,} checkpoints)")

    hasher = get_hasher(args.scheme)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    auditor = LogAuditor(head, hasher, [signer.verifier], notes, entries_from=args.mode)
    for chunk in range(-(-head.size // TILE_WIDTH)):
        auditor.add_chunk(
            chunk,
            rows.get(chunk, []) if args.mode == "rows" else [],
            tiles.get(TileID(0, chunk)),
            bundles.get(chunk) if args.mode != "tiles" else None,
        )
        while wanted := auditor.wanted_tiles():
            auditor.add_tiles({t: tiles.get(t) for t in wanted})
    auditor.end_of_entries()
    while wanted := auditor.wanted_tiles():
        auditor.add_tiles({t: tiles.get(t) for t in wanted})
    result = auditor.finish()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures: dict[str, Any] = {
        "build": {"entries": args.entries, "seconds": built, "checkpoints": len(notes)},
        "audit": {
            "mode": args.mode,
            "scheme": args.scheme,
            "entries": result.entries,
            "checkpoints_verified": result.checkpoints,
            "findings": len(result.findings),
            "first_findings": [str(f) for f in result.findings[:3]],
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_us_per_entry": cpu / max(result.entries, 1) * 1e6,
            "entries_per_min_per_core_cpu": result.entries / cpu * 60,
            "entries_per_min_wall": result.entries / wall * 60,
        },
        "peak_rss_mib": rss,
    }
    path = results.write(
        "bench_audit",
        run_started,
        vars(args),
        figures,
        args.results_dir,
        status="findings" if result.findings else "ok",
    )
    if result.findings:
        print(f"unexpected findings: {result.findings[:3]}", file=sys.stderr)
        print(f"result: {path}")
        return 1
    print(
        f"audited {result.entries:,} entries ({args.mode}, {args.scheme}), "
        f"{result.checkpoints:,} checkpoints verified, 0 findings"
    )
    print(f"  wall {wall:.2f}s, cpu {cpu:.2f}s")
    print(f"  {result.entries / cpu * 60:,.0f} entries per minute per core (cpu time)")
    print(f"  {result.entries / wall * 60:,.0f} entries per minute (wall)")
    print(f"  peak RSS {rss:,.0f} MiB (the in-memory log included)")
    print(f"  python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus")
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
