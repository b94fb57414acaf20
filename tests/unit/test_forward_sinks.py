"""What each destination puts on the wire, byte for byte: syslog frames, webhook signatures,
HEC events, OTLP requests, JSON records, and the file sink's rotation and crash recovery."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from auditlog.core.envelope import canonical_json
from auditlog.core.search_query import parse_query
from auditlog.runtime.settings import Secret
from forward.config import Files, SplunkHec, Syslog
from forward.records import Filter, Record, json_record
from forward.sinks.files import FileSink
from forward.sinks.hec import channel_of, hec_event
from forward.sinks.otlp import export_request
from forward.sinks.syslog import frame
from forward.sinks.webhook import body_of, sign

ENVELOPE = {
    "event": {"message": 'héllo "x" ] \\ 🦕', "actor": "alice", "tenant_id": "acme"},
    "received_at": "2026-12-05T00:41:55.123456Z",
}


def record(index: int = 12, envelope: dict[str, object] = ENVELOPE) -> Record:
    data = canonical_json(envelope)
    event = envelope["event"]
    assert isinstance(event, dict)
    return Record(
        "audit.events-0",
        index,
        hashlib.sha256(data).digest(),
        data,
        datetime(2026, 12, 5, 0, 41, 55, 123456, tzinfo=UTC),
        {"tenant_id": event.get("tenant_id"), "actor": event.get("actor"),
         "message": event.get("message")},
    )  # fmt: skip


def test_a_syslog_frame_is_octet_counted_rfc5424_with_the_envelope_as_msg() -> None:
    r = record()
    out = frame(r, Syslog("h", 514, hostname="fwd.example"))
    count, _, message = out.partition(b" ")
    assert int(count) == len(message)
    assert message == (
        b"<110>1 2026-12-05T00:41:55.123456Z fwd.example auditlog - event"
        b' [auditlog@32473 log="audit.events-0" index="12" hash="'
        + r.hash_hex.encode()
        + b'"] '
        + r.envelope
    )
    assert hashlib.sha256(message.split(b"] ", 1)[1]).digest() == r.event_hash
    odd = Record(
        'a"b]c\\', 1, r.event_hash, r.envelope, r.received_at, r.fields
    )  # SD values escape ", ] and \
    assert b'log="a\\"b\\]c\\\\"' in frame(odd, Syslog("h", 514, facility=4, severity=2))
    assert frame(odd, Syslog("h", 514, facility=4, severity=2)).split(b" ", 2)[1] == b"<34>1"


def test_a_json_record_splices_the_sealed_bytes() -> None:
    r = record()
    parsed = orjson.loads(json_record(r))
    assert parsed["log"] == "audit.events-0"
    assert parsed["index"] == 12
    assert parsed["hash"] == r.hash_hex
    assert parsed["received_at"] == "2026-12-05T00:41:55.123456Z"
    assert r.envelope in json_record(r)  # the stored bytes, not a re-serialisation
    assert canonical_json(parsed["envelope"]) == r.envelope


def test_a_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = body_of([record(1), record(2)])
    assert [e["index"] for e in orjson.loads(body)["events"]] == [1, 2]
    signature = sign(b"secret", 1764895315, body)
    want = hmac.new(b"secret", b"1764895315." + body, hashlib.sha256).hexdigest()
    assert signature == "v1=" + want
    assert sign(b"secret", 1764895316, body) != signature
    assert sign(b"other", 1764895315, body) != signature


def test_a_hec_event_carries_time_metadata_and_the_record() -> None:
    options = SplunkHec("https://s:8088", Secret("t"), index="audit", host="fwd")
    r = record()
    event = orjson.loads(hec_event(r, options))
    assert event["time"] == pytest.approx(r.received_at.timestamp())
    assert (event["index"], event["host"], event["source"]) == ("audit", "fwd", "auditlog")
    assert event["event"] == orjson.loads(json_record(r))
    # The channel is a GUID that stays the same across restarts.
    assert channel_of("splunk", options) == channel_of("splunk", options)
    assert channel_of("splunk", options) != channel_of("other", options)
    assert len(channel_of("splunk", options)) == 36


def test_an_otlp_request_holds_one_log_record_per_event() -> None:
    r = record()
    data = export_request([r, record(13)], "auditlog-test").SerializeToString()
    parsed = ExportLogsServiceRequest()
    parsed.ParseFromString(data)
    (resource,) = parsed.resource_logs
    assert resource.resource.attributes[0].value.string_value == "auditlog-test"
    (scope,) = resource.scope_logs
    first, second = scope.log_records
    assert first.body.string_value.encode() == r.envelope
    assert first.time_unix_nano == 1796431315123456000  # 2026-12-05T00:41:55.123456Z
    attrs = {a.key: a.value for a in first.attributes}
    assert attrs["auditlog.hash"].string_value == r.hash_hex
    assert attrs["auditlog.index"].int_value == 12
    assert attrs["tenant_id"].string_value == "acme"
    assert second.attributes[1].value.int_value == 13


def test_filters_by_tenant_and_query() -> None:
    r = record()
    assert Filter().admits(r)
    assert Filter(frozenset({"acme"})).admits(r)
    assert not Filter(frozenset({"other"})).admits(r)
    assert Filter(query=parse_query("actor:ali")).admits(r)
    assert not Filter(query=parse_query("-actor:alice")).admits(r)


def deliver(sink: FileSink, records: list[Record]) -> None:
    asyncio.run(sink.deliver(records))


def test_files_rotate_into_gzip_and_a_torn_line_is_cut_at_restart(tmp_path: Path) -> None:
    sink = FileSink(Files(tmp_path, max_bytes=2000, max_age=3600), 10)
    records = [record(i) for i in range(20)]
    for start in range(0, 20, 4):
        deliver(sink, records[start : start + 4])
    rotated = sorted(tmp_path.glob("events-*.jsonl.gz"))
    assert rotated
    (current,) = tmp_path.glob("current-*.jsonl")
    current.write_bytes(current.read_bytes() + b'{"log":"audit.ev')  # a crash mid-write
    restarted = FileSink(Files(tmp_path, max_bytes=2000, max_age=3600), 10)
    deliver(restarted, [record(20)])
    lines = [
        orjson.loads(line)
        for path in [*sorted(tmp_path.glob("events-*.jsonl.gz")), *tmp_path.glob("current-*")]
        for line in (gzip.decompress(path.read_bytes()) if path.suffix == ".gz"
                     else path.read_bytes()).splitlines()
    ]  # fmt: skip
    assert [x["index"] for x in lines] == list(range(21))
    assert not list(tmp_path.glob("*.tmp"))


def test_files_finish_a_rotation_a_crash_interrupted(tmp_path: Path) -> None:
    sink = FileSink(Files(tmp_path, max_bytes=10**9, max_age=3600), 10)
    deliver(sink, [record(1)])
    (current,) = tmp_path.glob("current-*.jsonl")
    stamp = current.stem.removeprefix("current-")
    # Crashed after the .gz was renamed into place, before the current file was removed.
    (tmp_path / f"events-{stamp}.jsonl.gz").write_bytes(gzip.compress(current.read_bytes()))
    restarted = FileSink(Files(tmp_path, max_bytes=10**9, max_age=3600), 10)
    deliver(restarted, [record(2)])
    (current,) = tmp_path.glob("current-*.jsonl")
    assert [orjson.loads(x)["index"] for x in current.read_bytes().splitlines()] == [2]
