"""Search latency against the number of search-block generations it probes.

    .venv/bin/python -m bench.bench_search_generations [--events 200000]
        [--generations 1 10 100 400] [--rounds 40]

Each generation has its own GIN index over its blocks' keys (auditlog/pg/search_generations.py),
and a search probes every one: what does a generation add to a search? Loads ``--events``
realistic events into one log as bench_search does (:func:`bench.bench_search.load`), then, for
each count K of ``--generations``, rewrites the same blocks spread evenly over K new generations
(the ones before, left empty, are dropped as retention drops them, but for the two newest, which
stay empty), vacuums, and times ``POST /v1/search`` first pages with bench_search's queries
against one ``auditlog query``. The events stay the same, so only the number of indexes probed
changes; a database with K generations of 2M entries each would also have K times the events.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from auditlog.core.note import NoteSigner
from auditlog.pg import search_generations
from auditlog.pg.search_blocks import block_rows, copy_blocks
from bench import results
from bench.bench_search import Samples, load, search
from bench.harness import bench_stack, free_port, wait_http, wait_idle
from bench.query_data import build_log

_TEXT = "tenant_id, actor, action, target, status, source, message, new_value, old_value"


async def _spread(url: str, log_id: str, count: int) -> int:
    """The log's blocks, rewritten over ``count`` new generations; returns how many
    generations there are now."""
    conn = await asyncpg.connect(url)
    try:
        events = await conn.fetch(
            f"SELECT idx, received_at, {_TEXT} FROM events"
            " WHERE log_id = $1 ORDER BY idx",
            log_id,
        )
        rows = block_rows(log_id, [tuple(e) for e in events])
        await conn.execute("DELETE FROM search_blocks")
        await search_generations.drop_empty(conn)
        per = -(-len(rows) // count)
        for start in range(0, per * count, per):
            await search_generations.open_next(conn)
            async with conn.transaction():
                await copy_blocks(conn, rows[start : start + per])
        await conn.execute("VACUUM (ANALYZE) search_blocks")
        return len(await search_generations.generations(conn))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--generations", type=int, nargs="+", default=[1, 10, 100, 400])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    results.add_option(parser)
    args = parser.parse_args()
    if min(args.generations) < 1:
        parser.error("--generations: counts of at least 1")
    started = results.now()
    figures: dict[str, Any] = {"runs": []}
    with bench_stack(Path(".auditlog/bench"), partitions=1) as bench:
        log_id = bench.topic + "-0"
        signer = NoteSigner.from_skey(bench.key_file.read_text().strip())
        asyncio.run(build_log(bench.database_url, log_id, bench.topic, args.events, signer))
        samples: Samples
        samples, figures["load_s"], _ = asyncio.run(
            load(bench.database_url, log_id, args.events, args.seed, 0)
        )
        port = free_port()
        proc = bench.spawn("query", AUDITLOG_PORT=str(port))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        for count in args.generations:
            total = asyncio.run(_spread(bench.database_url, log_id, count))
            wait_idle()
            print(f"{count} generations with blocks, {total} in all:", flush=True)
            measured = asyncio.run(search(base, bench.token, samples, args.rounds))
            figures["runs"].append(
                {"generations_with_blocks": count, "generations": total, "search": measured}
            )
        proc.terminate()
        proc.wait(30)
    path = results.write("bench_search_generations", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
