"""What every service process shares at run time: settings, logs, metrics and stall watching.

Settings are read from ``AUDITLOG_*`` variables once, by each composition root
(:mod:`auditlog.runtime.settings`); :mod:`auditlog.runtime.observability` configures structlog
(JSON lines) and serves Prometheus metrics; :mod:`auditlog.runtime.stalls` tunes the collector
and measures event-loop lag.
"""
