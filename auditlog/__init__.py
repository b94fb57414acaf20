"""Code every service and tool of auditlog shares, one room per concern.

Imports run one way, from the rooms at the top to the core at the bottom
(``tests/unit/test_structure.py`` enforces it):

- :mod:`auditlog.core`: the pure verifiable core (envelopes and canonical bytes, hashers,
  compact ranges, tiles, proofs, signed notes and checkpoints, cosignatures, receipts, schema
  validation, the search grammar, the auditor). No I/O, no asyncio, nothing else of the project.
- :mod:`auditlog.runtime`: what every process needs at start: settings parsed from the
  environment once, structured logs and metrics, event-loop stall watching.
- :mod:`auditlog.pg`: the PostgreSQL layer (pools, migrations, optional indexes, API tokens).
- :mod:`auditlog.kafka`: Kafka client settings (the durability contract) and topic creation.
- :mod:`auditlog.web`: the HTTP plumbing ingest and query share (the ASGI app, Pangea's response
  envelope, the asynchronous request store).
- :mod:`auditlog.verify`: the verifier tools (audit from the database or the read API, monitor,
  trust state, witness client and server).
- :mod:`auditlog.producer`: the producer library (``from auditlog.producer import AuditProducer``).
- :mod:`auditlog.loadtest`: the load generator behind ``auditlog loadtest``.
- :mod:`auditlog.devstack`: the development stack (Kafka and PostgreSQL on this machine).
- :mod:`auditlog.cli`: the ``auditlog`` command, the only code that imports the services
  (``ingest``, ``sealer``, ``query``: top-level packages, one composition root each).
"""
