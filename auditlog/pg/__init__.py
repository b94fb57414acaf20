"""The PostgreSQL layer: pools, migrations, optional indexes, API tokens.

Connections are made by the composition roots and passed in; nothing here connects at import.
Migrations are plain SQL in ``auditlog/pg/migrations`` applied in order by ``auditlog migrate``.
"""
