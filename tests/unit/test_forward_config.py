"""The destinations file: what it accepts, and every mistake it refuses at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditlog.runtime.settings import SettingsError
from forward.config import Files, Otlp, SplunkHec, Syslog, Webhook, parse_destinations
from forward.settings import Settings

ENV = {"HOOK_SECRET": "s3cret", "HEC_TOKEN": "tok", "OTLP_AUTH": "Bearer x"}

FULL = """
[[destination]]
name = "siem"
kind = "syslog"
host = "syslog.example"
tls = true
tenants = ["acme"]
query = 'action:login -status:ok'

[[destination]]
name = "hook"
kind = "webhook"
url = "https://hooks.example/audit"
secret_env = "HOOK_SECRET"
batch_size = 100
timeout = 5

[[destination]]
name = "archive"
kind = "file"
directory = "/var/lib/auditlog/forward"
max_bytes = 1048576
start = "end"

[[destination]]
name = "splunk"
kind = "splunk_hec"
url = "https://splunk.example:8088"
token_env = "HEC_TOKEN"
ack = true

[[destination]]
name = "otel"
kind = "otlp"
url = "http://collector:4318/v1/logs"
headers_env = { Authorization = "OTLP_AUTH" }
"""


def test_a_full_file_parses() -> None:
    siem, hook, archive, splunk, otel = parse_destinations(FULL, ENV)
    assert isinstance(siem.options, Syslog)
    assert (siem.options.port, siem.options.tls, siem.options.facility) == (6514, True, 13)
    assert siem.filter.tenants == frozenset({"acme"})
    assert siem.filter.query is not None
    assert isinstance(hook.options, Webhook)
    assert hook.options.secret.value == "s3cret"
    assert "s3cret" not in repr(hook)
    assert (hook.batch_size, hook.timeout) == (100, 5.0)
    assert isinstance(archive.options, Files)
    assert (archive.options.max_bytes, archive.start) == (1048576, "end")
    assert isinstance(splunk.options, SplunkHec)
    assert splunk.options.ack
    assert isinstance(otel.options, Otlp)
    assert otel.options.headers["Authorization"].value == "Bearer x"


A = "[[destination]]\nname='a'\n"
FILE = A + "kind='file'\ndirectory='/x'\n"
HOOK = A + "kind='webhook'\n"
SYSLOG = A + "kind='syslog'\nhost='h'\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[destination]]"),
        ("[destination]\nname='x'", "no [[destination]]"),
        ("[[destination]]\nkind='file'\ndirectory='/x'", "name is required"),
        ("[[destination]]\nname='Bad Name'\nkind='file'", "must be lower-case"),
        (A + "kind='kafka'", "kind 'kafka' is not one of"),
        (FILE + "colour='red'", "unknown keys colour"),
        (FILE + "batch_size=0", "batch_size must be 1 to"),
        (FILE + "batch_size=true", "must be an integer"),
        (FILE + "query='actor:'", "query:"),
        (FILE + "query='colour:red'", "unknown field"),
        (FILE + "start='middle'", "start must be"),
        (FILE + FILE, "unique: a"),
        (HOOK + "url='https://h/x'\nsecret_env='NOPE'", "NOPE, which is unset"),
        (HOOK + "url='ftp://h/x'\nsecret_env='HOOK_SECRET'", "http(s) URL"),
        (SYSLOG + "ca_file='/etc/hostname'", "need tls = true"),
        (SYSLOG + "tls=true\nca_file='/no/such'", "not a readable file"),
        (SYSLOG + "facility=24", "facility must be 0 to 23"),
        (SYSLOG + "hostname='a b'", "printable ASCII"),
        (SYSLOG + "receipts=true", "carry no receipt"),
        ("x = 1", "unknown top-level keys x"),
        ("[[destination]\n", "not TOML"),
    ],
)
def test_mistakes_are_refused_with_their_place(text: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_destinations(text, ENV)
    assert message in str(caught.value)


def test_settings_need_the_destinations_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="AUDITLOG_FORWARD_DESTINATIONS_FILE"):
        Settings.from_env({})
    settings = Settings.from_env(
        {
            "AUDITLOG_FORWARD_DESTINATIONS_FILE": str(tmp_path / "d.toml"),
            "AUDITLOG_FORWARD_LEASE": "5",
            "AUDITLOG_FORWARD_METRICS_PORT": "9105",
        }
    )
    assert (settings.lease, settings.metrics_port) == (5.0, 9105)
    with pytest.raises(SettingsError, match="RETRY_MAX"):
        Settings.from_env(
            {
                "AUDITLOG_FORWARD_DESTINATIONS_FILE": "d.toml",
                "AUDITLOG_FORWARD_RETRY_MIN": "10",
                "AUDITLOG_FORWARD_RETRY_MAX": "1",
            }
        )


def test_the_example_file_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "forward-destinations.toml"
    env = {"AUDITLOG_HOOK_SECRET": "s", "AUDITLOG_HEC_TOKEN": "t"}
    names = [d.name for d in parse_destinations(example.read_text(encoding="utf-8"), env)]
    assert names == ["siem", "security-alerts", "archive", "splunk", "otel"]
