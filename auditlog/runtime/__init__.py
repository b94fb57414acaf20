"""What every service process shares at run time: settings, logs, metrics and stall watching.

Settings are read from ``AUDITLOG_*`` variables once, by each composition root
(:mod:`auditlog.runtime.settings`); :mod:`auditlog.runtime.observability` configures structlog
(JSON lines) and the shared metrics; :mod:`auditlog.runtime.listener` serves them (and a
service's health checks) on a port of their own; :mod:`auditlog.runtime.textfile` writes a
periodic command's outcome for node-exporter; :mod:`auditlog.runtime.stalls` tunes the
collector and measures event-loop lag.
"""
