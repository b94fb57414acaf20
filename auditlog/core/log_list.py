"""The witness network's log-list format, ``logs/v0``: how witnesses learn which logs to cosign.

A list is a ``logs/v0`` header line, then one block per log::

    vkey <the log's vkey>
    origin <origin line>        (optional: without it the origin is the vkey's key name)
    qpd <add-checkpoint requests a day the log may send, > 0>
    contact <how to reach the operator, free text>

Blank lines and lines starting with ``#`` are ignored, as is white space around a line. This is
the grammar of the witness network's own validator (github.com/transparency-dev/witness-network,
``cmd/validate``); the format is described at https://witness-network.org/log-list-format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from auditlog.core.errors import MalformedNote
from auditlog.core.note import NoteVerifier

__all__ = ["HEADER", "LogListEntry", "format_log_list", "parse_log_list"]

HEADER = "logs/v0"


@dataclass(frozen=True, slots=True)
class LogListEntry:
    vkey: str
    origin: str
    qpd: int
    contact: str

    def __post_init__(self) -> None:
        NoteVerifier.from_vkey(self.vkey)  # MalformedNote when it is not a vkey
        if self.qpd <= 0:
            raise MalformedNote(f"qpd must be positive, not {self.qpd}")
        for what, value in (("origin", self.origin), ("contact", self.contact)):
            if not value or value != value.strip() or "\n" in value:
                raise MalformedNote(f"{what} must be one non-empty line without outer spaces")

    def lines(self) -> list[str]:
        return [
            f"vkey {self.vkey}",
            f"origin {self.origin}",
            f"qpd {self.qpd}",
            f"contact {self.contact}",
        ]


def format_log_list(entries: Iterable[LogListEntry]) -> str:
    """The list text: the header, then each log's block after a blank line."""
    blocks = ["\n".join(entry.lines()) + "\n" for entry in entries]
    return HEADER + "\n" + "".join("\n" + block for block in blocks)


def parse_log_list(text: str) -> list[LogListEntry]:
    """The logs of a list; MalformedNote (with the line number) for anything else."""
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.split("\n"), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not lines or lines[0][1] != HEADER:
        raise MalformedNote(f"a log list starts with the line {HEADER!r}")
    entries: list[LogListEntry] = []
    at = 1
    while at < len(lines):
        fields: dict[str, str] = {}
        for keyword in ("vkey", "origin", "qpd", "contact"):
            if at >= len(lines):
                raise MalformedNote(f"line {lines[-1][0]}: the last log's block is incomplete")
            number, line = lines[at]
            word, _, value = line.partition(" ")
            if keyword == "origin" and word != "origin":
                continue  # optional: the origin is the key name
            one_word = keyword in ("vkey", "qpd")
            if word != keyword or not value.strip() or (one_word and " " in value.strip()):
                raise MalformedNote(f"line {number}: expected {keyword} <value>, got {line!r}")
            fields[keyword] = value.strip()
            at += 1
        if not fields["qpd"].isascii() or not fields["qpd"].isdigit():
            raise MalformedNote(f"line {number}: qpd {fields['qpd']!r} is not a number")
        try:
            entries.append(_entry(fields))
        except MalformedNote as exc:
            raise MalformedNote(f"line {number}: {exc}") from exc
    return entries


def _entry(fields: dict[str, str]) -> LogListEntry:
    origin = fields.get("origin") or NoteVerifier.from_vkey(fields["vkey"]).name
    return LogListEntry(fields["vkey"], origin, int(fields["qpd"]), fields["contact"])
