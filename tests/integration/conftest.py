"""Fixtures the sealer drills share: a scratch topic, and sealers with a signing key of their own.

A module that needs another topic (more partitions, its own stack) defines its own ``topic``
(and ``services``) fixture; ``fleet`` then uses those.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.kafka.clients import dlq_topic, ensure_topics
from tests.conftest import Services, delete_topics
from tests.integration.sealer_harness import SealerFleet


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
