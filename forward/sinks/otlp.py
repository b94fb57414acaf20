"""OTLP/HTTP logs: each batch one ``ExportLogsServiceRequest``, protobuf-encoded with the
OpenTelemetry project's own generated classes (``opentelemetry-proto``).

One resource (``service.name``, the destination's ``service_name``), one scope
(``auditlog.forward``), one log record per event: ``time_unix_nano`` is the received time,
``severity_number`` INFO, ``body`` the canonical envelope as a string (byte for byte as sealed),
and the attributes ``auditlog.log``, ``auditlog.index``, ``auditlog.hash``,
``auditlog.receipt`` (when the destination asks for receipts) and ``tenant_id`` (when the event
has one). A 2xx answer acknowledges the batch, unless its ``partial_success`` counts rejected
records: the batch is then refused (:class:`Rejected`), and the forwarder narrows it down to
the records at fault (the others may arrive twice).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import (
    SEVERITY_NUMBER_INFO,
    LogRecord,
    ResourceLogs,
    ScopeLogs,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from forward.config import Otlp
from forward.records import Record
from forward.sinks.base import DeliveryError, Rejected
from forward.sinks.http import HttpClient

SCOPE = "auditlog.forward"


def _text(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def log_record(record: Record, observed: int) -> LogRecord:
    attributes = [
        _text("auditlog.log", record.log_id),
        KeyValue(key="auditlog.index", value=AnyValue(int_value=record.index)),
        _text("auditlog.hash", record.hash_hex),
    ]
    if record.receipt is not None:
        attributes.append(_text("auditlog.receipt", record.receipt))
    tenant = record.fields.get("tenant_id")
    if isinstance(tenant, str):
        attributes.append(_text("tenant_id", tenant))
    received = record.received_at
    nanos = int(received.timestamp()) * 1_000_000_000 + received.microsecond * 1000
    return LogRecord(
        time_unix_nano=nanos,
        observed_time_unix_nano=observed,
        severity_number=SEVERITY_NUMBER_INFO,
        severity_text="INFO",
        body=AnyValue(string_value=record.envelope.decode("utf-8")),
        attributes=attributes,
    )


def export_request(records: Sequence[Record], service_name: str) -> ExportLogsServiceRequest:
    observed = time.time_ns()
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[_text("service.name", service_name)]),
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name=SCOPE),
                        log_records=[log_record(r, observed) for r in records],
                    )
                ],
            )
        ]
    )


class OtlpSink:
    def __init__(self, options: Otlp, timeout: float) -> None:
        self.options = options
        self.deadline = timeout
        self.http = HttpClient(timeout)
        self.headers = {name: secret.value for name, secret in options.headers.items()}
        self.headers["Content-Type"] = "application/x-protobuf"

    async def deliver(self, records: Sequence[Record]) -> None:
        body = export_request(records, self.options.service_name).SerializeToString()
        answer = await self.http.post(self.options.url, body, self.headers)
        response = ExportLogsServiceResponse()
        try:
            response.ParseFromString(answer)
        except DecodeError as exc:
            raise DeliveryError(f"OTLP answer is not an ExportLogsServiceResponse: {exc}") from exc
        rejected = response.partial_success.rejected_log_records
        if rejected:
            raise Rejected(
                f"OTLP rejected {rejected} of {len(records)} records:"
                f" {response.partial_success.error_message[:200]}"
            )

    async def close(self) -> None:
        await self.http.close()
