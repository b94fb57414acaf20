"""Search latency over HTTP on a log of realistic events, as the sealer would have written it.

    .venv/bin/python -m bench.bench_search [--events 2000000] [--rounds 40] [--trigram]
        [--generation-entries N]

Makes ``--events`` events with :mod:`auditlog.loadtest.events` (received one millisecond apart),
writes them as ``events`` rows with the search blocks the sealer writes
(:func:`auditlog.pg.search_blocks.block_rows`; a new generation of blocks every
``--generation-entries`` events, the sealer's default, as its merging sealer opens them), builds
the schema's secondary indexes afterwards
(``--trigram``: the optional trigram index too, as ``auditlog search-index create`` would), then
times ``POST /v1/search`` first pages (``limit`` 20, up to 10,000 results counted, as Pangea's
default ``max_results``) against one ``auditlog query`` (its default worker processes), one
request at a time. The queries use values drawn from the events written: an actor, a target, a
source address, a UUID from a message (all whole tokens, which the blocks narrow), a status and
action pair (not selective), and an actor's substring (no whole token: it reads its range
unless the trigram index is there). Prints p50/p95 per query and writes bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
import orjson

from auditlog.core.columns import searchable_values
from auditlog.core.note import NoteSigner
from auditlog.loadtest.events import EventGenerator
from auditlog.pg import search_generations, search_index
from auditlog.pg.search_blocks import block_rows, copy_blocks
from bench import results
from bench.harness import Bench, bench_stack, free_port, percentile, wait_http, wait_idle
from bench.query_data import build_log, rebuilding_indexes
from sealer.index_merge import DEFAULT_GENERATION_ENTRIES
from sealer.partitions import Partitions
from sealer.rows import EVENT_COLUMNS
from sealer.timestamps import micros

UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
_CHUNK: Final = 64 * 160  # events per COPY: whole blocks
_BASE: Final = datetime(2026, 11, 2, tzinfo=UTC)


class Samples:
    """Values of events written, to search for: every 997th event's."""

    def __init__(self) -> None:
        self.actors: list[str] = []
        self.targets: list[str] = []
        self.sources: list[str] = []
        self.uuids: list[str] = []
        self.pairs: list[tuple[str, str]] = []

    def add(self, event: dict[str, Any]) -> None:
        self.actors.append(event["actor"])
        self.pairs.append((event["status"], event["action"]))
        if "target" in event:
            self.targets.append(event["target"])
        if "source" in event:
            self.sources.append(event["source"])
        self.uuids += UUID.findall(event["message"])


async def load(
    url: str, log_id: str, size: int, seed: int, generation_entries: int
) -> tuple[Samples, float, int]:
    """``size`` realistic events and their blocks; returns the samples, the seconds taken and
    the generations of blocks written."""
    generator = EventGenerator(seed)
    samples = Samples()
    generations = 1
    conn = await asyncpg.connect(url)
    began = time.perf_counter()
    try:
        last = _BASE + timedelta(milliseconds=size)
        await Partitions().ensure(conn, log_id, [micros(_BASE), micros(last)])
        for lo in range(0, size, _CHUNK):
            while generation_entries and generations <= lo // generation_entries:
                await search_generations.open_next(conn, entries=lo)
                generations += 1
            rows = []
            for idx in range(lo, min(size, lo + _CHUNK)):
                received = _BASE + timedelta(milliseconds=idx)
                event = generator.event(received)
                if idx % 997 == 0:
                    samples.add(event)
                envelope = orjson.dumps(
                    {"event": event, "received_at": received.isoformat()},
                    option=orjson.OPT_SORT_KEYS,
                )
                rows.append(
                    (log_id, idx, hashlib.sha256(envelope).digest(), envelope, received, idx,
                     *searchable_values(event), None, None)
                )  # fmt: skip
            await conn.copy_records_to_table("events", columns=EVENT_COLUMNS, records=rows)
            blocks = block_rows(log_id, [(r[1], r[4], *r[6:15]) for r in rows])
            await copy_blocks(conn, blocks)
            if (lo // _CHUNK) % 20 == 0:
                print(f"  events: {lo + len(rows):,} ({time.perf_counter() - began:.0f} s)")
    finally:
        await conn.close()
    return samples, time.perf_counter() - began, generations


@contextlib.contextmanager
def loaded_log(events: int, seed: int) -> Iterator[tuple[Bench, str, Samples, float]]:
    """A bench stack with one log of ``events`` realistic events and their blocks in one
    generation (:func:`load`), its tiles and checkpoint (a topic of one partition); yields the
    stack, the log's id, the samples and the load's seconds."""
    with bench_stack(Path(".auditlog/bench"), partitions=1) as bench:
        log_id = bench.topic + "-0"
        signer = NoteSigner.from_skey(bench.key_file.read_text().strip())
        asyncio.run(build_log(bench.database_url, log_id, bench.topic, events, signer))
        samples, load_s, _ = asyncio.run(load(bench.database_url, log_id, events, seed, 0))
        yield bench, log_id, samples, load_s


def cases(samples: Samples, rng: random.Random) -> dict[str, Callable[[], str]]:
    return {
        "actor=<an actor>": lambda: f'actor="{rng.choice(samples.actors)}"',
        "target=<a target>": lambda: f'target="{rng.choice(samples.targets)}"',
        "source=<an address>": lambda: f'source="{rng.choice(samples.sources)}"',
        "<a UUID from a message> (bare term)": lambda: rng.choice(samples.uuids),
        "status=<s> action=<a> (not selective)": lambda: "status={} action={}".format(
            *rng.choice(samples.pairs)
        ),
        "actor:<part of an actor> (no whole token)": lambda: (
            f'actor:"{rng.choice(samples.actors)[1:-3]}"'
        ),
    }


async def search(base: str, token: str, samples: Samples, rounds: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    measured: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for name, make in cases(samples, rng).items():
            latencies: list[float] = []
            counts: list[int] = []
            for _ in range(rounds):
                body = {"query": make(), "limit": 20, "verbose": False}
                began = time.perf_counter()
                async with session.post(f"{base}/v1/search", data=json.dumps(body)) as resp:
                    payload = await resp.json()
                latencies.append((time.perf_counter() - began) * 1000)
                assert payload["status"] == "Success", payload
                counts.append(payload["result"]["count"])
            median = sorted(counts)[len(counts) // 2]
            print(
                f"search {name}: p50 {percentile(latencies, 50):.0f} ms"
                f"  p95 {percentile(latencies, 95):.0f} ms  max {max(latencies):.0f} ms"
                f"  (n={rounds}, median count {median:,})"
            )
            measured.append(
                {
                    "query": name,
                    "latency_ms": results.percentiles(latencies),
                    "median_count": median,
                    "counts": counts,
                }
            )
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trigram", action="store_true", help="build the trigram index too")
    parser.add_argument(
        "--generation-entries",
        type=int,
        default=DEFAULT_GENERATION_ENTRIES,
        metavar="N",
        help="open the search blocks' next generation every N events (0: one generation)",
    )
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    figures: dict[str, Any] = {}
    with bench_stack(Path(".auditlog/bench"), partitions=1) as bench:
        log_id = bench.topic + "-0"
        signer = NoteSigner.from_skey(bench.key_file.read_text().strip())
        figures["tiles_built_s"] = asyncio.run(
            build_log(bench.database_url, log_id, bench.topic, args.events, signer)
        )

        async def fill(url: str) -> Samples:
            samples, seconds, generations = await load(
                url, log_id, args.events, args.seed, args.generation_entries
            )
            figures["load_s"] = seconds
            figures["search_generations"] = generations
            return samples

        samples, figures["indexes"] = asyncio.run(rebuilding_indexes(bench.database_url, fill))
        if args.trigram:

            async def trigram() -> float:
                conn = await asyncpg.connect(bench.database_url)
                try:
                    began = time.perf_counter()
                    await search_index.create(conn, lambda _: None)
                    return time.perf_counter() - began
                finally:
                    await conn.close()

            figures["trigram_build_s"] = asyncio.run(trigram())
        figures["idle_after_s"] = wait_idle()
        port = free_port()
        proc = bench.spawn("query", AUDITLOG_PORT=str(port))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        figures["search"] = asyncio.run(search(base, bench.token, samples, args.rounds))
        proc.terminate()
        proc.wait(30)
    path = results.write("bench_search", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
