"""Auditing a whole log from its stored data, trusting nothing but the log's public key.

The auditor rebuilds the tree ``R`` from the entries themselves (event rows' envelope bytes, or
entry bundles when all we have is the read API), and holds it against two other accounts of the
same log: the stored tiles ``T`` and the signed checkpoints ``C``. Only ``C`` is authenticated
(by the key); the tiles are what lets a finding name the exact record:

* a leaf where ``R`` and ``T`` differ is decided one level up. If the rebuilt tile's root is the
  hash the stored parent tile holds (or, at the right edge, if ``R``'s root is the signed root),
  the entries are authentic and the stored tile was damaged (``tile-mismatch``); otherwise the
  entry is not the one sealed (``leaf-mismatch``, or ``reordered`` when it is the entry sealed at
  another index). A missing entry is named and its sealed leaf taken from ``T`` (or its bundle),
  so one deleted row does not make every later checkpoint disagree.
* a signed checkpoint whose root ``R`` does not reproduce is ``inconsistent-checkpoints`` when a
  larger signed checkpoint *does* match ``R`` (that proves ``R``'s prefix authentic, so the two
  signed statements cannot both hold), and ``checkpoint-root-mismatch`` when no entry-level
  finding below its size already explains it.

Everything here is pure and push-driven, so that an asyncpg edge and an HTTP edge can both feed
it and memory stays bounded whatever the log's size; :mod:`auditlog.core.audit.auditor` describes
the protocol the edges follow and how the parts fit together:

* :mod:`~auditlog.core.audit.stored`: what the edges hand in (head, rows, checkpoints);
* :mod:`~auditlog.core.audit.findings`: what comes out (finding kinds, findings, the outcome);
* :mod:`~auditlog.core.audit.checkpoints`, :mod:`~auditlog.core.audit.entries`,
  :mod:`~auditlog.core.audit.tree`, :mod:`~auditlog.core.audit.tiles` and
  :mod:`~auditlog.core.audit.discrepancies`: the accounts ``C``, ``R`` and ``T``, and the
  naming of their differences;
* :mod:`~auditlog.core.audit.auditor`: :class:`LogAuditor`, which composes them.

The names below are the package's public face; the edges import them from here.
"""

from __future__ import annotations

from auditlog.core.audit.auditor import LogAuditor
from auditlog.core.audit.findings import DEFAULT_MAX_FINDINGS, KINDS, AuditedLog, Erased, Finding
from auditlog.core.audit.statements import StoredStatements
from auditlog.core.audit.stored import (
    COLUMN_NAMES,
    StoredCheckpoint,
    StoredEvent,
    StoredHead,
    expected_columns,
)

__all__ = [
    "COLUMN_NAMES",
    "DEFAULT_MAX_FINDINGS",
    "KINDS",
    "AuditedLog",
    "Erased",
    "Finding",
    "LogAuditor",
    "StoredCheckpoint",
    "StoredEvent",
    "StoredHead",
    "StoredStatements",
    "expected_columns",
]
