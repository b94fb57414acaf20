"""The verifier tools: they trust nothing but a log's public key (and a witness policy).

Each fetches what it checks (from the database, the read API, or a file) and checks it with
:mod:`auditlog.core`: whole-log audits (:mod:`auditlog.verify.audit_db`,
:mod:`auditlog.verify.audit_http`), the checkpoint monitor and the state both remember
(:mod:`auditlog.verify.monitor`, :mod:`auditlog.verify.trust_state`,
:mod:`auditlog.verify.audit_state`), and both sides of the
C2SP tlog-witness protocol (:mod:`auditlog.verify.witness_client`,
:mod:`auditlog.verify.witness_server`).
"""
