"""Search keys: what the search-block index stores about a run of events, and what a query asks.

Search matches substrings (Pangea's ``field:value`` is a case-sensitive *contains*), yet an index
of every substring (pg_trgm's trigrams) costs PostgreSQL ~120-200 µs per realistic event, most of
what a seal costs. The block index is cheaper and still exact, because it only ever narrows:

* A **token** is a maximal run of bytes of a text field's UTF-8 that are not ASCII separators
  (every ASCII byte but ``0-9A-Za-z``; other bytes, so every non-ASCII character, belong to
  tokens). ``alice.smith@example.com`` holds ``alice``, ``smith``, ``example`` and ``com``.
* A **key** is a token's CRC-32, in 31 bits (a PostgreSQL ``integer``). Different tokens may share
  a key; that costs a few more rows read, never a wrong answer.
* A **block** is up to :data:`BLOCK_SIZE` consecutive entries of one log, sealed together; its
  row holds the set of keys of every token in their nine text fields, and of the whole value of
  each of the short fields (:data:`VALUE_FIELDS`: ``actor``, ``target``, ...), so that an exact
  ``actor=alice@example.com`` needs the one block key of that value, not of four common words.
  Common words and values repeat within a block: a block stores ~20 keys per event where the
  events hold ~45 tokens and values each.
* A query value's **whole tokens** are the ones it shows complete: those with a separator (or,
  for an exact ``field=value`` match, the field's edge) on both sides. Any text containing the
  value contains those tokens whole, so their keys are in its block's set. A search that needs
  such a token reads only the blocks holding all its keys, then checks every field exactly as
  before. A value with no whole token (``deleted`` may be inside ``undeleted``) cannot use the
  index; search then reads the events of its time range (or pg_trgm's index, where an operator
  built it: :mod:`auditlog.pg.search_index`).

An event's tokens are defined by :func:`tokens`; the sealer computes a block's keys in one go
when it seals (:func:`block_keys`, the same keys); search computes a value's keys
(:func:`value_keys`). Both sides run this module, so they cannot disagree.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Final

__all__ = [
    "BLOCK_SIZE",
    "VALUE_FIELDS",
    "block_keys",
    "blocks",
    "field_value_key",
    "key",
    "tokens",
    "value_keys",
]

# Entries per block. Larger blocks store fewer keys per event (a token repeated within a block
# is stored once: ~24 keys per event at 16, ~16 at 64, ~11 at 256, bench/bench_search_cost.py)
# but make a search read more rows per matching block.
BLOCK_SIZE: Final = 64

_SEPARATOR: Final = 0x20
# bytes.translate table: ASCII separators become spaces, every other byte stays.
_TABLE: Final = bytes(
    b if (0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or b >= 0x80) else _SEPARATOR
    for b in range(256)
)


# The short text fields whose whole values are keys too, in the order of the searchable values
# (auditlog.core.columns.TEXT_COLUMNS starts with them). message, new and old are left out: long,
# nearly always unique, and rarely matched whole.
VALUE_FIELDS: Final = ("tenant_id", "actor", "action", "target", "status", "source")


def _utf8(text: str) -> bytes:
    # PostgreSQL refuses lone surrogates before any token could matter; never raise here.
    return text.encode("utf-8", "surrogatepass")


def _value_mark(position: int, value: str) -> bytes:
    # NUL never occurs in a token (it is a separator), so a mark and a token never coincide.
    return b"\0%d\0" % position + _utf8(value)


def tokens(values: Sequence[object]) -> list[bytes]:
    """What an event contributes to its block's keys, from its searchable values (in
    TEXT_COLUMNS order; non-strings are skipped): its tokens, and the whole values of the
    :data:`VALUE_FIELDS`, as they come (repeats are dropped per block, by :func:`block_keys`)."""
    text = " ".join([v for v in values if v.__class__ is str])
    found = _utf8(text).translate(_TABLE).split()
    found += [
        _value_mark(i, v) for i, v in enumerate(values[: len(VALUE_FIELDS)]) if v.__class__ is str
    ]
    return found


def key(token: bytes) -> int:
    """A token's key: CRC-32 in 31 bits, so that it fits PostgreSQL's signed ``integer``."""
    return binascii.crc32(token) & 0x7FFFFFFF


def field_value_key(field: str, value: str) -> int:
    """The key of ``field`` (one of :data:`VALUE_FIELDS`) holding exactly ``value``."""
    return key(_value_mark(VALUE_FIELDS.index(field), value))


def block_keys(events: Sequence[Sequence[object]]) -> list[int]:
    """The keys of a block whose events have the searchable values ``events`` (each in
    TEXT_COLUMNS order, as :func:`tokens` takes them), each once, in no particular order (GIN
    sorts them; sorting here cost the sealer ~3 µs per event). The same keys as those of every
    event's :func:`tokens`, found for the whole block at once: one split of all its text and one
    set, instead of a list per event (the sealer's largest cost with real text, ~11 µs per event
    that way against ~8 this way)."""
    text = " ".join([v for values in events for v in values if v.__class__ is str])
    distinct = set(_utf8(text).translate(_TABLE).split())
    # Short fields repeat within a block (statuses, actions): each distinct value marked once.
    marks = {
        (i, v)
        for values in events
        for i, v in enumerate(values[: len(VALUE_FIELDS)])
        if v.__class__ is str
    }
    distinct.update([_value_mark(i, v) for i, v in marks])
    crc32 = binascii.crc32
    return [crc32(t) & 0x7FFFFFFF for t in distinct]


def blocks(first: int, count: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of each block of entries ``first .. first + count - 1``, as offsets
    into the seal's items. No block crosses a multiple of :data:`BLOCK_SIZE` in the log: a seal
    that ends inside such a range leaves the rest of it to a block of the next seal, so a log has
    about one block per 64 entries when seals are large, and one per seal when they are small."""
    out = []
    offset = 0
    while offset < count:
        index = first + offset
        length = min(count - offset, BLOCK_SIZE - index % BLOCK_SIZE)
        out.append((offset, length))
        offset += length
    return out


def value_keys(value: str, *, whole: bool) -> list[int]:
    """The keys of the tokens ``value`` shows complete, ascending; empty when there are none.

    ``whole`` is for an exact match of a whole field: its first and last tokens are complete too.
    Otherwise they may continue into the text around the match, and are left out.
    """
    pieces: Sequence[bytes] = _utf8(value).translate(_TABLE).split(b" ")
    if not whole:
        pieces = pieces[1:-1]
    return sorted({key(p) for p in pieces if p})
