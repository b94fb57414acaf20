"""The forwarder: sealed events, in index order per log, to syslog, webhooks, files, Splunk HEC
and OTLP (docs/forwarding.md). One composition root, :mod:`forward.main`."""
