"""The development stack: one Kafka broker and one PostgreSQL cluster on this machine's loopback.

:mod:`auditlog.devstack.stack` is the entry point (``auditlog stack``, ``auditlog up``, the test
fixtures, ``python -m auditlog.devstack``); the other modules are its parts, one per concern
(docs/local-stack.md).
"""
