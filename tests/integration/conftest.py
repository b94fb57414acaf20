"""Fixtures integration modules share.

The sealer drills: a scratch topic, and sealers with a signing key of their own (a module that
needs another topic, or a stack of its own, defines its own ``topic`` and ``services``; ``fleet``
then uses those). The tamper drills: a sealed template database per module and a fresh clone of
it per case (tests/integration/tamper_harness.py). The outage drills: one stack of their own for
the session.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.devstack.config import StackConfig
from auditlog.kafka.clients import dlq_topic, ensure_topics
from tests.conftest import Services, delete_topics, migrate_database
from tests.integration.own_stack import separate_stack
from tests.integration.sealer_harness import SealerFleet
from tests.integration.tamper_harness import Pristine, cloned, sealed_template


@pytest.fixture
async def topic(services: Services, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A scratch events topic (2 partitions unless parametrized), deleted with its DLQ after."""
    name = f"{services.topic}.drill-{secrets.token_hex(4)}"
    partitions = getattr(request, "param", 2)
    await ensure_topics(services.kafka_bootstrap, name, partitions=partitions)
    yield name
    await delete_topics(services.kafka_bootstrap, [name, dlq_topic(name)])


@pytest.fixture
def fleet(services: Services, topic: str, tmp_path: Path) -> Iterator[SealerFleet]:
    """Sealers of ``topic`` signing with a key made for the test; stopped after it."""
    key = tmp_path / "log.skey"
    write_signing_key(key, "drill.auditlog.test")
    fleet = SealerFleet(services, topic, key, tmp_path)
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def pristine(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pristine]:
    """The sealed database every case clones (tests/integration/tamper_harness.py)."""
    yield from sealed_template(services, tmp_path_factory)


@pytest.fixture
def clone(pristine: Pristine) -> Iterator[str]:
    """A fresh copy of the pristine sealed database; its URL."""
    yield from cloned(pristine)


@pytest.fixture(scope="session")
def retention_sealed(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The database the retention, erasure and archive cases clone, sealed once over four
    months (tests/integration/retention_harness.py)."""
    from tests.integration import retention_harness

    yield from retention_harness.sealed_template(services, tmp_path_factory)


@pytest.fixture(scope="session")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    """A Kafka and PostgreSQL the outage drills may kill and restart (ports 29592-29594: below
    Linux's ephemeral range, where a client connection's local port could hold them), migrated;
    started once for every module that takes it down (each drill on topics of its own), always
    stopped at the end. The stack other tests share is never touched."""
    home = tmp_path_factory.mktemp("outage-stack")
    with separate_stack(
        home, kafka_port=29592, controller_port=29593, pg_port=29594, seed_jars=True
    ) as cfg:
        migrate_database(cfg.database_url)
        yield cfg
