"""The event envelope and its one canonical byte form.

An envelope is ``{"event": {...}, "received_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ"}`` plus the
optional ``signature`` and ``public_key`` strings, which are omitted when absent, never null.

Its canonical bytes are exactly what Pangea's SDK hashes::

    json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
               allow_nan=False).encode()

and the event hash returned to clients is ``sha256(canonical bytes)``. The canonical bytes are
computed once, when the :class:`Envelope` is built, and everything downstream (the Kafka record,
the stored row, the log entry, the leaf hash) uses those same bytes: nothing re-serializes.

orjson is used only where tests prove it produces the same bytes as the rule above (strings of
every code point, key order, ints within 64 bits, exact built-in types). Floats are the one JSON
type where orjson's shortest-repr formatting differs from Python's (``1e-05`` vs ``0.00001``), so
any float, big int, or subclass of a JSON type takes the stdlib path instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import orjson

from auditlog.core.errors import InvalidEvent, NonCanonicalEnvelope

__all__ = [
    "ENVELOPE_KEYS",
    "Envelope",
    "canonical_json",
    "format_received_at",
    "parse_received_at",
]

ENVELOPE_KEYS: Final = frozenset({"event", "received_at", "signature", "public_key"})

_RECEIVED_AT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})Z"
)

# orjson serializes exactly the integers in [-2**63, 2**64); outside it raises, and the stdlib
# path takes over, but deciding up front saves the failed attempt.
_ORJSON_INT_MIN: Final = -(2**63)
_ORJSON_INT_MAX: Final = 2**64 - 1


def _check(obj: object, active: set[int]) -> bool:
    """Validate ``obj`` as canonical-JSON input; return True when the orjson path is exact.

    Raises InvalidEvent for what the canonical rule rejects and json.dumps would silently accept
    (non-string keys, which it would stringify) or reject later with a less useful error.
    ``active`` holds the ids of the containers on the current path, to turn cycles into errors
    instead of endless walks.
    """
    t = type(obj)
    if t is str or t is bool or obj is None:
        return True
    if t is int:
        return _ORJSON_INT_MIN <= obj <= _ORJSON_INT_MAX  # type: ignore[operator]
    if t is float:
        return False
    if isinstance(obj, dict | list | tuple):
        key = id(obj)
        if key in active:
            raise InvalidEvent("circular reference in event")
        active.add(key)
        fast = _check_container(obj, active)
        active.discard(key)
        return fast and (t is dict or t is list or t is tuple)
    if isinstance(obj, str | int | float):
        # Subclasses (str-based enums, IntEnum, ...): json.dumps encodes them as their base type.
        return False
    raise InvalidEvent(f"{t.__name__} is not a JSON type")


def _check_container(
    obj: dict[object, object] | list[object] | tuple[object, ...], active: set[int]
) -> bool:
    fast = True
    if isinstance(obj, dict):
        for k, v in obj.items():
            if type(k) is not str:
                if not isinstance(k, str):
                    raise InvalidEvent(f"object key {k!r} is not a string")
                fast = False
            if not _check(v, active):
                fast = False
        return fast
    for v in obj:
        if not _check(v, active):
            fast = False
    return fast


def canonical_json(obj: object) -> bytes:
    """Return the canonical JSON bytes of ``obj`` (the Pangea hashing rule, see module docs).

    Raises InvalidEvent for NaN or infinities, non-string keys, lone surrogates, cycles,
    nesting too deep to serialize, and anything that is not a JSON type.
    """
    try:
        fast = _check(obj, set())
    except RecursionError as exc:
        raise InvalidEvent("event is nested too deeply") from exc
    if fast:
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            # Lone surrogates and orjson's own depth limit; the stdlib path decides.
            pass
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        # ValueError covers NaN/inf, UnicodeEncodeError for lone surrogates, and huge ints.
        raise InvalidEvent(f"cannot be canonical JSON: {exc}") from exc


def format_received_at(dt: datetime) -> str:
    """Format ``dt`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC; a naive datetime is taken as UTC.

    Always six fraction digits: Pangea's SDK re-formats ``received_at`` this way before hashing,
    so any other spelling of the same instant would hash differently.
    """
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}Z"
    )


def parse_received_at(value: str) -> datetime:
    """Parse a ``received_at`` string in the one accepted format into an aware UTC datetime."""
    if _RECEIVED_AT.fullmatch(value) is None:
        raise InvalidEvent(f"received_at {value!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        # The pattern fixed the spelling; fromisoformat (which reads the Z since Python 3.11)
        # range-checks every field and is ~4x faster than converting the groups by hand.
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEvent(f"received_at {value!r} is not a valid date and time") from exc


@dataclass(frozen=True, slots=True, eq=False)
class Envelope:
    """An event as sealed: the event object, the server's receive time, optional client signature.

    The canonical bytes are computed and validated at construction, so an Envelope that exists
    can always be hashed. The ``event`` mapping is not copied: do not mutate it afterwards.
    Equality and hashing are by canonical bytes: ``{"n": 1}`` and ``{"n": 1.0}`` are equal
    Python dicts but different envelopes.
    """

    event: Mapping[str, object]
    received_at: str
    signature: str | None = None
    public_key: str | None = None
    _canonical: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        if not isinstance(self.event, Mapping):
            raise InvalidEvent(f"event must be a JSON object, not {type(self.event).__name__}")
        if not isinstance(self.received_at, str):
            raise InvalidEvent("received_at must be a string")
        parse_received_at(self.received_at)
        for name in ("signature", "public_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidEvent(f"{name} must be a string when present")
        # A frozen dataclass has no other way to fill a derived field.
        object.__setattr__(self, "_canonical", canonical_json(self.to_dict()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self._canonical == other._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)

    def to_dict(self) -> dict[str, object]:
        """The envelope as a JSON object; optional keys are omitted when absent, never null."""
        event = self.event if isinstance(self.event, dict) else dict(self.event)
        out: dict[str, object] = {"event": event, "received_at": self.received_at}
        if self.signature is not None:
            out["signature"] = self.signature
        if self.public_key is not None:
            out["public_key"] = self.public_key
        return out

    @property
    def canonical(self) -> bytes:
        """The canonical bytes: what is stored, sent to Kafka, and hashed."""
        return self._canonical

    @property
    def event_hash(self) -> bytes:
        """``sha256(canonical)``, the Pangea event hash (32 bytes; ``.hex()`` for the wire)."""
        return hashlib.sha256(self._canonical).digest()

    @classmethod
    def from_obj(cls, obj: Mapping[str, object]) -> Envelope:
        """Build from a decoded JSON object, with the same checks as :meth:`from_bytes`.

        The object's own serialization is not compared: this is for envelopes assembled in
        memory, whose canonical bytes are then computed here.
        """
        if not isinstance(obj, Mapping):
            raise InvalidEvent(f"envelope must be a JSON object, not {type(obj).__name__}")
        extra = set(obj) - ENVELOPE_KEYS
        if extra:
            raise InvalidEvent(f"envelope has unexpected keys: {sorted(map(str, extra))}")
        if "event" not in obj or "received_at" not in obj:
            raise InvalidEvent("envelope needs both 'event' and 'received_at'")
        event = obj["event"]
        if not isinstance(event, Mapping):
            raise InvalidEvent("envelope 'event' must be a JSON object")
        received_at = obj["received_at"]
        if not isinstance(received_at, str):
            raise InvalidEvent("envelope 'received_at' must be a string")
        optional: dict[str, str] = {}
        for name in ("signature", "public_key"):
            if name in obj:
                value = obj[name]
                if not isinstance(value, str):
                    # null included: absent keys are omitted, so a null is never canonical.
                    raise InvalidEvent(f"envelope '{name}' must be a string when present")
                optional[name] = value
        return cls(event, received_at, **optional)

    @classmethod
    def _from_canonical(cls, obj: dict[str, object], raw: bytes) -> Envelope | None:
        """The sealer's hot path: ``raw`` parsed by orjson must come back from it unchanged.

        This is :func:`canonical_json`'s own orjson path, so bytes it accepts are canonical by
        the same proof; only the envelope's shape is left to check. An event of plain strings
        (the standard schema) needs no walk; anything else is walked by the same check
        :func:`canonical_json` uses. Returns None whenever the full path must decide.
        """
        event = obj.get("event")
        if type(event) is not dict or not obj.keys() <= ENVELOPE_KEYS:
            return None
        for v in event.values():
            if type(v) is not str:
                try:
                    if not _check(event, set()):
                        return None  # floats, big ints: the stdlib formats them
                except (InvalidEvent, RecursionError):
                    return None
                break
        try:
            if orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) != raw:
                return None
        except orjson.JSONEncodeError:
            return None
        received_at = obj.get("received_at")
        signature = obj.get("signature")
        public_key = obj.get("public_key")
        if (
            type(received_at) is not str
            or ("signature" in obj and type(signature) is not str)
            or ("public_key" in obj and type(public_key) is not str)
        ):
            return None
        parse_received_at(received_at)
        env = object.__new__(cls)
        # The frozen dataclass's fields, set through their slots (as its own __init__ would, but
        # without object.__setattr__'s lookup: this runs once per record the sealer reads).
        _SET_EVENT(env, event)
        _SET_RECEIVED_AT(env, received_at)
        _SET_SIGNATURE(env, signature)
        _SET_PUBLIC_KEY(env, public_key)
        _SET_CANONICAL(env, raw)
        return env

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse envelope bytes strictly: they must already be exactly the canonical form.

        Raises NonCanonicalEnvelope when the JSON is a valid envelope but spelled differently
        (key order, spacing, escapes, number format), InvalidEvent for everything else.
        """
        raw = bytes(raw)
        try:
            # orjson parses big ints as floats, so its result is only trusted if it round-trips.
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict:
            fast = cls._from_canonical(obj, raw)
            if fast is not None:
                return fast
            env = cls.from_obj(obj)
            if env.canonical == raw:
                return env
        # Slow path: exact ints, and the stdlib's view of NaN/lone surrogates (rejected above).
        try:
            obj = json.loads(bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidEvent(f"envelope is not valid UTF-8 JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise InvalidEvent("envelope must be a JSON object")
        env = cls.from_obj(obj)
        if env.canonical != raw:
            raise NonCanonicalEnvelope("envelope bytes are not in canonical form")
        return env


def _slot_setter(name: str) -> Callable[[Envelope, object], None]:
    setter: Callable[[Envelope, object], None] = vars(Envelope)[name].__set__
    return setter


# Slot setters of the frozen Envelope, for Envelope._from_canonical.
_SET_EVENT = _slot_setter("event")
_SET_RECEIVED_AT = _slot_setter("received_at")
_SET_SIGNATURE = _slot_setter("signature")
_SET_PUBLIC_KEY = _slot_setter("public_key")
_SET_CANONICAL = _slot_setter("_canonical")
