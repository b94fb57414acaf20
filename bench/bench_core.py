"""Benchmark the pure core: appending to a tiled log, and building / verifying inclusion proofs.

    .venv/bin/python bench/bench_core.py                       # 10M leaves, rfc6962-sha256
    .venv/bin/python bench/bench_core.py --leaves 1000000 --scheme all

Append: integrate() in batches (default 1,000) up to ``--leaves``, keeping only the right-edge
tiles between batches, exactly what the sealer holds (everything else would be in PostgreSQL),
so memory stays bounded whatever the size. Per-batch cost is printed at 1k, 10k, 100k, 1M and
10M leaves: if integrate is O(batch + log n) the figures stay flat.

Proofs: a tree of ``--proof-size`` leaves is built keeping all tiles; then inclusion proofs are
built from tiles (with and without a node cache) and verified, each for random indices.

Envelope: canonical bytes and leaf hash of a typical Pangea-style event, from bytes
(``Envelope.from_bytes``) and from an object, and the sealer's whole per-record work around
them (``sealer.records.decode``, ``sealer.rows.prepare``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from auditlog.core.entry import leaf_hash
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import HASH_SCHEMES, LogHasher, get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.proof import Node, inclusion_proof, inclusion_tiles, verify_inclusion
from auditlog.core.tiles import TileID
from auditlog.loadtest.events import EventGenerator
from sealer.records import Sealable, decode
from sealer.rows import prepare

try:
    from bench import results
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    import results  # type: ignore[no-redef, import-not-found]

CHECKPOINTS = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_append(hasher: LogHasher, leaves: int, batch: int) -> dict[str, Any]:
    print(f"\n## append: {hasher.name}, {leaves:,} leaves in batches of {batch:,}")
    rng = random.Random(1)
    pool = [rng.randbytes(32) for _ in range(batch)]  # content does not change the cost
    edge: dict[TileID, bytes] = {}
    size = 0
    window: list[float] = []  # seconds per batch since the previous checkpoint
    tiles_written = 0
    total = 0.0
    rows: list[dict[str, Any]] = []
    print(
        f"{'size':>12} {'median µs/batch':>16} {'mean µs/batch':>14} {'leaves/s (median)':>18}"
        f" {'tiles out/batch':>16}"
    )
    while size < leaves:
        count = min(batch, leaves - size)
        chunk = pool[:count]
        t0 = time.perf_counter()
        wanted = {t: edge[t] for t in tiles_to_fetch(size)}
        result = integrate(hasher, size, wanted, chunk)
        dt = time.perf_counter() - t0
        # Keep only what the next batch will ask for; the rest "went to the database".
        edge = {t: result.tiles.get(t, wanted.get(t, b"")) for t in tiles_to_fetch(result.size)}
        size = result.size
        total += dt
        window.append(dt)
        tiles_written += len(result.tiles)
        if size in CHECKPOINTS or size == leaves:
            median = statistics.median(window)
            mean = sum(window) / len(window)
            rows.append(
                {
                    "size": size,
                    "batches": len(window),
                    "median_us_per_batch": median * 1e6,
                    "mean_us_per_batch": mean * 1e6,
                    "leaves_per_s_median": batch / median,
                    "tiles_out_per_batch": tiles_written / len(window),
                }
            )
            print(
                f"{size:>12,} {median * 1e6:>16.1f} {mean * 1e6:>14.1f} "
                f"{batch / median:>18,.0f} {tiles_written / len(window):>16.1f}"
            )
            window, tiles_written = [], 0
    print(
        f"total: {leaves:,} leaves in {total:.2f} s = {leaves / total:,.0f} leaves/s "
        f"(integrate only, mean); peak RSS {rss_mib():.0f} MiB"
    )
    return {
        "scheme": hasher.name,
        "leaves": leaves,
        "batch": batch,
        "checkpoints": rows,
        "total_s": total,
        "leaves_per_s_mean": leaves / total,
        "peak_rss_mib": rss_mib(),
    }


def timed(
    label: str, count: int, fn: Callable[[int], object], into: list[dict[str, Any]] | None = None
) -> float:
    t0 = time.perf_counter()
    for i in range(count):
        fn(i)
    per = (time.perf_counter() - t0) / count
    print(f"{label:<58} {per * 1e6:>9.2f} µs  ({1 / per:>11,.0f}/s)")
    if into is not None:
        into.append({"operation": label, "count": count, "us": per * 1e6, "per_s": 1 / per})
    return per


def bench_proofs(hasher: LogHasher, size: int, samples: int) -> dict[str, Any]:
    print(f"\n## proofs: {hasher.name}, tree of {size:,} leaves, {samples:,} random leaves")
    rng = random.Random(2)
    leaves = [rng.randbytes(32) for _ in range(size)]
    result = integrate(hasher, 0, {}, leaves)
    tiles, root = result.tiles, result.root
    indexes = [rng.randrange(size) for _ in range(samples)]
    proofs = [inclusion_proof(hasher, i, size, tiles) for i in indexes[:200]]
    print(f"proof length {len(proofs[0])} hashes, {len(inclusion_tiles(indexes[0], size))} tiles")
    ops: list[dict[str, Any]] = []
    timed("plan (inclusion_tiles)", samples, lambda k: inclusion_tiles(indexes[k], size), ops)
    timed(
        "build from tiles, no cache (cold: rehash inside tiles)",
        min(samples, 2000),
        lambda k: inclusion_proof(hasher, indexes[k], size, tiles),
        ops,
    )
    cache: dict[Node, bytes] = {}
    for i in indexes:
        inclusion_proof(hasher, i, size, tiles, cache)
    timed(
        "build from tiles, warm node cache",
        samples,
        lambda k: inclusion_proof(hasher, indexes[k], size, tiles, cache),
        ops,
    )
    all_proofs = [inclusion_proof(hasher, i, size, tiles, cache) for i in indexes]
    timed(
        "verify_inclusion",
        samples,
        lambda k: verify_inclusion(
            hasher, indexes[k], size, leaves[indexes[k]], all_proofs[k], root
        ),
        ops,
    )
    return {
        "scheme": hasher.name,
        "tree_size": size,
        "samples": samples,
        "proof_hashes": len(proofs[0]),
        "proof_tiles": len(inclusion_tiles(indexes[0], size)),
        "operations": ops,
    }


class _Record(NamedTuple):
    """The parts of a Kafka record the sealer reads."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def median_event() -> dict[str, Any]:
    """The realistic event (auditlog/loadtest/events.py, seed 0) of median envelope size among
    1,001: the operations below cost more for longer events."""
    generator = EventGenerator(0)
    events = [generator.event() for _ in range(1001)]
    events.sort(key=lambda e: len(Envelope(e, "2024-02-29T23:59:59.999999Z").canonical))
    return events[500]


def bench_envelope(samples: int) -> dict[str, Any]:
    print("\n## envelope: canonical bytes + leaf hash of a typical (median realistic) event")
    event = median_event()
    env = Envelope(event, "2024-02-29T23:59:59.999999Z")
    raw = env.canonical
    sha = get_hasher("rfc6962-sha256")
    print(f"canonical envelope: {len(raw)} bytes")
    ops: list[dict[str, Any]] = []
    timed(
        "Envelope(...) from an object (validate + canonical bytes)",
        samples,
        lambda _: Envelope(event, env.received_at),
        ops,
    )
    timed(
        "Envelope.from_bytes (parse + strict canonical check)",
        samples,
        lambda _: Envelope.from_bytes(raw),
        ops,
    )
    record = _Record(0, 0, None, raw, ())
    timed(
        "sealer: decode a record (envelope, schema, received_at)",
        samples,
        lambda _: decode(record),
        ops,
    )
    item = decode(record)
    assert isinstance(item, Sealable)
    timed(
        "sealer: prepare a record (events row, log entry, leaf hash)",
        samples,
        lambda _: prepare(item, sha),
        ops,
    )
    timed("leaf_hash rfc6962-sha256", samples, lambda _: leaf_hash(sha, raw), ops)
    timed(
        "sha256 of the envelope (event hash)",
        samples,
        lambda _: hashlib.sha256(raw).digest(),
        ops,
    )
    return {"canonical_bytes": len(raw), "samples": samples, "operations": ops}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leaves", type=int, default=10_000_000, help="append this many leaves")
    parser.add_argument("--batch", type=int, default=1_000, help="leaves per integrate() call")
    parser.add_argument("--scheme", default="rfc6962-sha256", help="hash scheme, or 'all'")
    parser.add_argument("--proof-size", type=int, default=1_000_000, help="tree size for proofs")
    parser.add_argument("--samples", type=int, default=20_000, help="proofs to build / verify")
    parser.add_argument("--skip-append", action="store_true")
    parser.add_argument("--skip-proofs", action="store_true")
    results.add_option(parser)
    args = parser.parse_args(argv)
    started = results.now()
    schemes = HASH_SCHEMES if args.scheme == "all" else (args.scheme,)
    print(
        f"# bench_core: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.platform()}"
    )
    figures: dict[str, Any] = {"append": [], "proofs": []}
    for scheme in schemes:
        hasher = get_hasher(scheme)
        if not args.skip_append:
            figures["append"].append(bench_append(hasher, args.leaves, args.batch))
        if not args.skip_proofs:
            figures["proofs"].append(bench_proofs(hasher, args.proof_size, args.samples))
    figures["envelope"] = bench_envelope(args.samples)
    figures["peak_rss_mib"] = rss_mib()
    path = results.write("bench_core", started, vars(args), figures, args.results_dir)
    print(f"\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
