"""How forwarder processes share the (destination, log) pairs, and what the forwarder's health
and readiness say."""

from __future__ import annotations

from collections import Counter

from forward.health import LOOP_STALL_SECONDS, ForwardHealth
from forward.membership import Membership, belongs_to


def test_every_pair_belongs_to_exactly_one_member_and_the_logs_spread() -> None:
    members = ["host-a/1", "host-b/2", "host-c/3"]
    views = [Membership(m) for m in members]
    for view in views:
        view.members = members
    for destination in ("siem", "hook", "files"):
        owners = [[v.owner for v in views if v.mine(destination, p)] for p in range(12)]
        assert all(len(o) == 1 for o in owners)
        # Twelve logs over three members: four each.
        assert sorted(Counter(o[0] for o in owners).values()) == [4, 4, 4]
    # Everyone works it out alike; a lone process owns everything.
    assert belongs_to(members, "siem", 5) == belongs_to(list(members), "siem", 5)
    alone = Membership("host-a/1")
    assert all(alone.mine("siem", p) for p in range(8))


def test_health_follows_the_loops() -> None:
    now = [100.0]
    health = ForwardHealth(["a", "b"], clock=lambda: now[0])
    assert not health.readyz().ok
    assert "a, b" in health.readyz().reason
    health.beat("a")
    health.beat("b")
    assert health.readyz().ok
    assert health.healthz().ok
    now[0] += LOOP_STALL_SECONDS + 1
    health.beat("a")
    verdict = health.healthz()
    assert not verdict.ok
    assert verdict.reason.endswith(": b")
    health.stopping = True
    assert health.healthz().ok
    assert not health.readyz().ok
