"""The load generator behind ``auditlog loadtest``."""
