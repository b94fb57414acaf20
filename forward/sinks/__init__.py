"""The destinations the forwarder delivers to, one module per kind; each meets
:class:`forward.sinks.base.Sink`, and :func:`make_sink` builds the one a destination names."""

from __future__ import annotations

from forward.config import Destination, Files, Otlp, SplunkHec, Syslog, Webhook
from forward.sinks.base import Sink


def make_sink(destination: Destination) -> Sink:
    # Imported here: a forwarder without an OTLP destination need not load protobuf.
    options, timeout = destination.options, destination.timeout
    if isinstance(options, Syslog):
        from forward.sinks.syslog import SyslogSink  # noqa: PLC0415

        return SyslogSink(options, timeout)
    if isinstance(options, Webhook):
        from forward.sinks.webhook import WebhookSink  # noqa: PLC0415

        return WebhookSink(options, timeout)
    if isinstance(options, Files):
        from forward.sinks.files import FileSink  # noqa: PLC0415

        return FileSink(options, timeout)
    if isinstance(options, SplunkHec):
        from forward.sinks.hec import HecSink  # noqa: PLC0415

        return HecSink(destination.name, options, timeout)
    if isinstance(options, Otlp):
        from forward.sinks.otlp import OtlpSink  # noqa: PLC0415

        return OtlpSink(options, timeout)
    raise AssertionError(f"logic error: no sink for {type(options).__name__}")
