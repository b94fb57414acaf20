"""HTTP plumbing shared by the ingest and query services.

The Starlette application with request ids, one log line per request and ``/metrics``
(:mod:`auditlog.web.app`); Pangea's response envelope, errors and bearer tokens
(:mod:`auditlog.web.pangea`); the store behind Pangea's asynchronous requests
(:mod:`auditlog.web.requests_store`); rate limits per token and tenant
(:mod:`auditlog.web.ratelimit`).
"""
