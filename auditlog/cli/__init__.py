"""The ``auditlog`` command line."""

from auditlog.cli.main import main

__all__ = ["main"]
