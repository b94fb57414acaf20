"""The witness network's log-list format (auditlog/core/log_list.py) and ``auditlog logs``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from auditlog.core.errors import MalformedNote
from auditlog.core.log_keys import log_vkey
from auditlog.core.log_list import LogListEntry, format_log_list, parse_log_list
from auditlog.core.note import NoteSigner, NoteVerifier

KEY = NoteSigner.generate("list.example").verifier
ORIGINS = [f"list.example/audit.events/{p}" for p in range(3)]

# The shape of the witness network's published lists (lists/testing/log-list.1): a comment
# header, no origin lines (the origin is the key name), free-text contacts with spaces.
PUBLISHED = """#
# This is an experimental list where witnesses can discover logs.
#
logs/v0

vkey arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f
qpd 86400
contact google-ct-logs@googlegroups.com

vkey sigsum.org/v1/tree/4e89cc51651f0d95f3c6127c15e1a42e3ddf7046c5b17b752689c402e773bb4d\
+778629b1+AUZEryq9QPSJWgA7yjUPnVkSqzAaScd/E+W22QXCCl/m
qpd 8640
contact sigsum-logs (at) glasklarteknik.se | https://git.glasklar.is/glasklar/services/\
sigsum-logs/-/blob/main/instances/barreleye.md
"""


def test_our_list_round_trips() -> None:
    entries = [LogListEntry(log_vkey(KEY, o), o, 1440, "ops (at) list.example") for o in ORIGINS]
    text = format_log_list(entries)
    assert text.startswith("logs/v0\n\nvkey list.example/audit.events/0+")
    assert text.count("\n\n") == 3 and text.endswith("contact ops (at) list.example\n")
    assert parse_log_list(text) == entries
    for entry in parse_log_list(text):
        assert NoteVerifier.from_vkey(entry.vkey).name == entry.origin  # origin = key name


def test_the_published_lists_parse() -> None:
    first, second = parse_log_list(PUBLISHED)
    assert first.origin == "arche2025h1.staging.ct.transparency.dev"
    assert (first.qpd, first.contact) == (86400, "google-ct-logs@googlegroups.com")
    assert second.origin.startswith("sigsum.org/v1/tree/4e89")
    assert second.contact.startswith("sigsum-logs (at) glasklarteknik.se | https://")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "starts with"),
        ("logs/v1\n", "starts with"),
        ("logs/v0\nqpd 1\n", "expected vkey"),
        (f"logs/v0\nvkey {log_vkey(KEY, ORIGINS[0])}\nqpd 1\n", "incomplete"),
        (f"logs/v0\nvkey {log_vkey(KEY, ORIGINS[0])}\nqpd 0\ncontact c\n", "positive"),
        (f"logs/v0\nvkey {log_vkey(KEY, ORIGINS[0])}\nqpd x\ncontact c\n", "not a number"),
        (f"logs/v0\nvkey {log_vkey(KEY, ORIGINS[0])}\nqpd 1\ncontact\n", "expected contact"),
        ("logs/v0\nvkey not+a+vkey\nqpd 1\ncontact c\n", "verifier key"),
    ],
)
def test_malformed_lists_are_refused(text: str, why: str) -> None:
    with pytest.raises(MalformedNote, match=why):
        parse_log_list(text)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keygen_writes_each_logs_vkey(tmp_path: Path) -> None:
    key = tmp_path / "log.skey"
    result = _cli("keygen", "--name", "list.example", "--out", str(key), "--partitions", "3")
    assert result.returncode == 0, result.stderr
    deployment = NoteVerifier.from_vkey(key.with_suffix(".vkey").read_text().strip())
    vkeys = key.with_suffix(".vkeys").read_text().split()
    assert vkeys == [log_vkey(deployment, o) for o in ORIGINS]
    assert all(v in result.stdout for v in vkeys)
    # The file is a --key file: one verifier per log.
    from auditlog.cli.args import vkeys as read_vkeys

    assert [v.name for v in read_vkeys([str(key.with_suffix(".vkeys"))])] == ORIGINS


def test_a_witness_takes_logs_by_vkey_pair_or_list(tmp_path: Path) -> None:
    from auditlog.cli.args import UsageError
    from auditlog.cli.witness import witnessed_logs

    vkeys = [log_vkey(KEY, o) for o in ORIGINS]
    by_file = tmp_path / "logs.vkeys"
    by_file.write_text(f"# two logs\n{vkeys[1]}\n\n{vkeys[2]}\n")
    listed = tmp_path / "log-list"
    entries = [LogListEntry(v, o, 24, "ops") for v, o in zip(vkeys, ORIGINS, strict=True)]
    listed.write_text(format_log_list(entries[:1]))
    logs = witnessed_logs([vkeys[0], str(by_file), f"other.example/x/0={KEY.vkey()}"], [])
    assert {o: [v.vkey() for v in keys] for o, keys in logs.items()} == {
        ORIGINS[0]: [vkeys[0]],
        ORIGINS[1]: [vkeys[1]],
        ORIGINS[2]: [vkeys[2]],
        "other.example/x/0": [KEY.vkey()],
    }
    from_list = witnessed_logs([], [str(listed)])
    assert {o: [v.vkey() for v in keys] for o, keys in from_list.items()} == {
        ORIGINS[0]: [vkeys[0]]
    }
    with pytest.raises(UsageError, match="ORIGIN=VKEY"):
        witnessed_logs([f"={vkeys[0]}"], [])
    listed.write_text("logs/v0\nvkey nope\n")
    with pytest.raises(UsageError, match="log list"):
        witnessed_logs([], [str(listed)])
