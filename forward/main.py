"""The forwarder's composition root: settings and the destinations file read, the pool opened,
one loop per destination run (:class:`forward.pump.Pump`).

Several forwarder processes may run against one database: they share the (destination, log)
pairs out among those alive (forward/membership.py), and each pair's cursor is leased to one
of them at a time (forward/cursors.py), so a dead one's pairs move after
``AUDITLOG_FORWARD_LEASE`` seconds.

Shutdown order (SIGTERM/SIGINT): every loop finishes the delivery under way (up to its
deadline) and advances its cursor, or leaves it where it was; the leases are released; the
destinations' connections and files close; the pool closes.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket

import structlog

from auditlog.pg import db
from auditlog.runtime import stalls
from auditlog.runtime.eventloop import run_main
from auditlog.runtime.listener import MetricsListener, serve_metrics
from auditlog.runtime.observability import configure_logging, declare_build_info
from auditlog.runtime.settings import describe
from forward import cursors
from forward.config import Destination, load_destinations
from forward.health import ForwardHealth
from forward.membership import Membership
from forward.pump import Pump
from forward.settings import Settings
from forward.sinks import make_sink

log = structlog.get_logger("forward")


def start_listener(settings: Settings, health: ForwardHealth) -> MetricsListener | None:
    if not settings.metrics_port:
        return None
    return serve_metrics(
        settings.metrics_host,
        settings.metrics_port,
        checks={"/healthz": health.healthz, "/readyz": health.readyz},
    )


async def run(settings: Settings) -> None:
    configure_logging(settings.log_level)
    stalls.tune_collector()
    destinations = load_destinations(settings.destinations_file)
    log.info(
        "starting",
        **describe(settings),
        destinations={d.name: d.kind for d in destinations},
    )
    declare_build_info("forward")
    health = ForwardHealth(d.name for d in destinations)
    listener = start_listener(settings, health)
    try:
        await _run(settings, destinations, health)
    finally:
        if listener is not None:
            listener.close()


async def _run(settings: Settings, destinations: list[Destination], health: ForwardHealth) -> None:
    # One connection per destination's loop, one for the heartbeat and the short look-ups.
    pool = await db.connect_pool(settings.database_url.value, max_size=len(destinations) + 2)
    try:
        await db.check_schema(pool)
        await cursors.register(pool, destinations)
        owner = f"{socket.gethostname()}/{secrets.token_hex(4)}"
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        membership = Membership(owner)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(membership.keep(pool, settings.lease, stopping), name="membership")
            for destination in destinations:
                pump = Pump(
                    destination,
                    make_sink(destination),
                    pool,
                    settings,
                    owner,
                    stopping,
                    health,
                    membership,
                )
                tg.create_task(pump.run(), name=f"forward-{destination.name}")
            tg.create_task(stalls.watch_event_loop(stopping), name="loop-watch")
        health.stopping = True
        log.info("stopped")
    finally:
        await pool.close()


def main() -> None:
    run_main(run(Settings.from_env()))
