"""The pure verifiable core: what a verifier needs, and all a log's math.

Nothing here does I/O, uses asyncio, or imports anything of the project outside this package;
every service and tool builds on it, and a verifier needs only it and the log's public key.
``tests/unit/test_structure.py`` enforces that, and ``tests/unit`` checks the core against a
reference implementation, exhaustive small trees, generated vectors and mutated proofs.

Errors are the tree in :mod:`auditlog.core.errors`.
"""
