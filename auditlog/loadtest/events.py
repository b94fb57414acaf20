"""Audit events that look like real ones: what every load test and benchmark should send.

Templated events (one message, a counter) flatter a log: every search index, compressor and
cache sees the same few words. Real audit events carry ids, UUIDs, addresses, paths, e-mail
addresses and free text, and vary in size. :class:`EventGenerator` makes such events,
deterministically from a seed:

- **Fields** as services fill Pangea's standard schema: ``actor`` (a person's e-mail address, a
  service account or a user id), ``action`` (one of ~50 verbs, skewed as real traffic is),
  ``target`` (a resource path with ids), ``status`` (``success`` 85 %, ``failure``, ``denied``),
  ``source`` (an IPv4 or IPv6 address or a host name), ``tenant_id`` (one of ``tenants``, a few
  of them much busier than the rest), ``timestamp`` (RFC 3339, a little before now), and on one
  event in five ``old``/``new`` (small JSON documents as strings). One event in ten lacks each
  of ``target``, ``source``, ``tenant_id`` and ``timestamp``, as not every service fills them.
- **Message** text built from sentence patterns filled with the same kinds of values plus free
  words, drawn from a lexicon of ~6,000 pseudo-words with a Zipf law (a few words common, most
  rare) and ~150 common English words. Its length follows a log-normal law, so envelopes (the
  canonical bytes that are hashed and stored) are 200 B to 4 KiB: ~420 B at the median,
  ~1.3 KiB at the 99th percentile, ~2.5 KiB at the 99.9th.
- **Entropy**: message text carries about 5 bits per character (Shannon, over characters),
  and 10,000 messages hold ~35,000 distinct words and ~17,000 distinct character trigrams.
  ``tests/unit/test_loadtest_events.py`` checks these figures (with some slack).

``EventGenerator(templated=True)`` makes the old best-case events (one message pattern and a
counter), kept only to be reported as such.
"""

from __future__ import annotations

import bisect
import math
import random
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["MAX_ENVELOPE", "MIN_ENVELOPE", "EventGenerator"]

MIN_ENVELOPE: Final = 200
MAX_ENVELOPE: Final = 4096
# The envelope around a message: the other fields and the JSON syntax take ~250 bytes, so
# a message of ~75 characters at the median gives envelopes of ~420 bytes.
_MEDIAN_MESSAGE: Final = 75
_MESSAGE_SIGMA: Final = 1.1
_MAX_MESSAGE: Final = 3000

_COMMON: Final = (
    "the", "a", "an", "to", "of", "and", "in", "for", "on", "with", "by", "from", "at", "as",
    "is", "was", "be", "been", "has", "have", "had", "not", "no", "user", "request", "session",
    "token", "key", "role", "policy", "access", "account", "password", "file", "record",
    "service", "job", "task", "queue", "node", "cluster", "host", "port", "region", "zone",
    "bucket", "object", "table", "row", "column", "index", "failed", "succeeded", "denied",
    "granted", "revoked", "expired", "created", "deleted", "updated", "rotated", "started",
    "stopped", "restarted", "retried", "timed", "out", "after", "before", "during", "while",
    "because", "via", "using", "without", "new", "old", "previous", "current", "invalid",
    "missing", "unknown", "duplicate", "blocked", "allowed", "limit", "quota", "error",
    "warning", "notice", "debug", "trace", "audit", "event", "change", "config", "setting",
    "value", "attempt", "attempts", "from", "client", "server", "proxy", "gateway", "agent",
    "admin", "operator", "owner", "member", "group", "team", "org", "project",
)

_VERBS: Final = (
    "failed", "succeeded", "denied", "granted", "revoked", "expired", "created", "deleted",
    "updated", "rotated", "started", "stopped", "restarted", "retried", "blocked", "allowed",
    "exported", "imported", "approved", "rejected",
)
_NOUNS: Final = (
    "user", "request", "session", "token", "key", "role", "policy", "account", "password",
    "file", "record", "service", "job", "task", "queue", "node", "cluster", "host", "bucket",
    "object", "table", "secret", "certificate", "webhook", "invoice",
)

_ACTIONS: Final = (
    "login", "logout", "login_failed", "mfa_challenge", "mfa_verified", "password_reset",
    "password_changed", "token_created", "token_revoked", "key_rotated", "role_granted",
    "role_revoked", "user_created", "user_deleted", "user_updated", "group_joined",
    "group_left", "policy_updated", "policy_attached", "bucket_created", "object_read",
    "object_written", "object_deleted", "export_started", "export_finished", "config_changed",
    "secret_read", "secret_written", "deploy_started", "deploy_finished", "rollback",
    "vm_started", "vm_stopped", "firewall_rule_added", "firewall_rule_removed", "api_key_used",
    "session_expired", "invite_sent", "invite_accepted", "billing_updated", "payment_failed",
    "record_viewed", "record_updated", "record_deleted", "approval_requested",
    "approval_granted", "approval_denied", "backup_started", "backup_finished",
    "restore_started",
)

_DOMAINS: Final = (
    "example.com", "acme.io", "globex.net", "initech.org", "umbrella.co", "hooli.dev",
    "stark.industries", "wayne.enterprises", "cyberdyne.ai", "soylent.co.uk",
)

_PATTERNS: Final = (
    "{actor} {verb} {noun} {id} from {ip} via {host}",
    "request {uuid} for {path} {verb} after {ms} ms ({status_code})",
    "{noun} {id} {verb} by {email} in project {project}",
    "{count} {noun}s {verb} under policy {policy} for tenant {tenant}",
    "session {hex} of {email} {verb}: {words}",
    "GET {url} returned {status_code} in {ms} ms for client {ip}",
    "{verb} {noun} at {path}; checksum {hex}",
    "role {role} {verb} for {email} on {path} by {actor}",
    "job {uuid} on node {host} {verb} ({words})",
    "{words} {id} {words} {ip}",
    "key {hex} {verb} for service account {svc}@{project}.iam.{domain}",
    "firewall rule {id} allows {ip}/{prefix} to port {port} ({words})",
)


def _lexicon(rng: random.Random, size: int) -> list[str]:
    """Pronounceable pseudo-words, distinct, in a random order (their Zipf ranks)."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v",
              "w", "z", "br", "cl", "dr", "fr", "gr", "pl", "pr", "sh", "st", "th", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "x"]
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.choice((1, 2, 2, 2, 3, 3, 4))
        words.add("".join(
            rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(syllables)
        ))
    out = sorted(words)
    rng.shuffle(out)
    return out


class _Zipf:
    """Draws indexes 0..n-1 with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float) -> None:
        weights = [1.0 / (rank + 1) ** s for rank in range(n)]
        total = 0.0
        self.cumulative: list[float] = []
        for w in weights:
            total += w
            self.cumulative.append(total)

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])


class EventGenerator:
    """Realistic audit events, deterministic from ``seed``; ``templated`` for the best case."""

    def __init__(self, seed: int = 0, *, tenants: int = 50, templated: bool = False) -> None:
        self.rng = random.Random(seed)
        self.templated = templated
        self.count = 0
        # The lexicon is the same for every seed: vocabularies of two runs should overlap as
        # real services' do; only the draws from it vary.
        self.words = _lexicon(random.Random(0x5EED), 6000)
        self._word_rank = _Zipf(len(self.words), 1.05)
        self._action_rank = _Zipf(len(_ACTIONS), 1.2)
        self.tenants = [f"tenant-{self._word(random.Random(i))}-{i}" for i in range(tenants)]
        self._tenant_rank = _Zipf(tenants, 1.1)
        self.people = [
            f"{self._word(self.rng)}.{self._word(self.rng)}@{self.rng.choice(_DOMAINS)}"
            for _ in range(2000)
        ]
        self._person_rank = _Zipf(len(self.people), 0.9)
        self.fill = self._fillers()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.event()

    def event(self, now: datetime | None = None) -> dict[str, Any]:
        """One event of Pangea's standard schema (no ``received_at``: the server sets it)."""
        self.count += 1
        if self.templated:
            return {
                "message": f"Security updated {self.count}",
                "action": "Off",
                "actor": "dennis.nedry@ingen.com",
                "target": "Visitor center",
            }
        rng = self.rng
        when = (now or datetime.now(UTC)) - timedelta(milliseconds=rng.randrange(0, 5000))
        event: dict[str, Any] = {
            "actor": self._actor(),
            "action": _ACTIONS[self._action_rank.draw(rng)],
            "target": self._path(),
            "status": rng.choices(("success", "failure", "denied"), (85, 10, 5))[0],
            "source": self._source(),
            "tenant_id": self.tenants[self._tenant_rank.draw(rng)],
            "timestamp": when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "message": self._message(),
        }
        # Not every service fills every field.
        for optional in ("target", "source", "tenant_id", "timestamp"):
            if rng.random() < 0.1:
                del event[optional]
        if rng.random() < 0.2:
            key = self._word(rng)
            event["old"] = f'{{"{key}":"{self._word(rng)}","version":{rng.randrange(1, 99)}}}'
            event["new"] = f'{{"{key}":"{self._word(rng)}","version":{rng.randrange(1, 99)}}}'
        return event

    # Values ---------------------------------------------------------------------------------

    def _word(self, rng: random.Random) -> str:
        return self.words[self._word_rank.draw(rng)]

    def _email(self) -> str:
        return self.people[self._person_rank.draw(self.rng)]

    def _actor(self) -> str:
        kind = self.rng.random()
        if kind < 0.7:
            return self._email()
        if kind < 0.9:
            return f"svc-{self._word(self.rng)}@{self._word(self.rng)}.iam.gserviceaccount.com"
        return f"user:{self._uuid()}"

    def _uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"

    def _hex(self, n: int = 16) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def _ipv4(self) -> str:
        r = self.rng
        return f"{r.randrange(1, 224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def _source(self) -> str:
        kind = self.rng.random()
        if kind < 0.6:
            return self._ipv4()
        if kind < 0.75:
            return ":".join(f"{self.rng.getrandbits(16):x}" for _ in range(8))
        return self._host()

    def _host(self) -> str:
        return f"{self._word(self.rng)}-{self.rng.randrange(1, 40)}.{self.rng.choice(_DOMAINS)}"

    def _path(self) -> str:
        r = self.rng
        parts = [
            f"projects/{self._word(r)}-{r.randrange(1000)}",
            r.choice(("buckets", "databases", "users", "secrets", "clusters", "repos")),
            f"{self._word(r)}{r.choice(('', '-' + str(r.randrange(100))))}",
        ]
        if r.random() < 0.5:
            parts.append(f"{self._word(r)}.{r.choice(('json', 'csv', 'log', 'tar.gz', 'yaml'))}")
        return "/".join(parts)

    def _fillers(self) -> dict[str, Callable[[], str]]:
        """What fills each slot of a sentence pattern (built once: a dict of closures)."""
        r = self.rng
        return {
            "actor": self._actor, "email": self._email, "uuid": self._uuid, "ip": self._ipv4,
            "host": self._host, "path": self._path,
            "hex": lambda: self._hex(r.choice((12, 16, 32, 40))),
            "id": lambda: f"{r.choice(string.ascii_lowercase)}{r.randrange(10**7):07d}",
            "verb": lambda: r.choice(_VERBS),
            "noun": lambda: r.choice(_NOUNS),
            "ms": lambda: str(int(r.lognormvariate(3, 1.2))),
            "status_code": lambda: str(r.choice((200, 201, 204, 301, 400, 401, 403, 404, 409,
                                                 429, 500, 502, 503))),
            "project": lambda: f"{self._word(r)}-{r.randrange(1000)}",
            "policy": lambda: f"pol-{self._hex(8)}",
            "tenant": lambda: r.choice(self.tenants),
            "count": lambda: str(r.randrange(2, 500)),
            "role": lambda: f"roles/{self._word(r)}.{r.choice(('viewer', 'editor', 'admin'))}",
            "svc": lambda: self._word(r),
            "domain": lambda: r.choice(_DOMAINS),
            "url": lambda: f"https://{self._host()}/{self._path()}?id={self._hex(8)}",
            "prefix": lambda: str(r.choice((8, 16, 24, 32))),
            "port": lambda: str(r.choice((22, 80, 443, 3306, 5432, 6379, 8080, 9092))),
            "words": lambda: " ".join(self._free_word() for _ in range(r.randrange(2, 7))),
        }

    def _free_word(self) -> str:
        return self.rng.choice(_COMMON) if self.rng.random() < 0.45 else self._word(self.rng)

    def _message(self) -> str:
        r = self.rng
        target = min(_MAX_MESSAGE, int(r.lognormvariate(math.log(_MEDIAN_MESSAGE), _MESSAGE_SIGMA)))
        parts: list[str] = []
        length = 0
        while length < target:
            pattern = r.choice(_PATTERNS)
            sentence = string.Formatter().vformat(pattern, (), _Slots(self))
            parts.append(sentence[0].upper() + sentence[1:])
            length += len(sentence) + 2
        text = ". ".join(parts)
        return text[: max(target, 60)].rstrip() + "."


class _Slots(dict[str, str]):
    """A format mapping that fills each slot afresh, so repeated slots get different values."""

    def __init__(self, generator: EventGenerator) -> None:
        super().__init__()
        self.generator = generator

    def __missing__(self, key: str) -> str:
        return self.generator.fill[key]()
