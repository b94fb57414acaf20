# The two commands a newcomer needs (see README.md):
#   make up    set up everything, start Kafka, PostgreSQL and the services, log an event with the
#              official Pangea SDK and verify its receipt; Ctrl-C stops everything.
#   make test  set up everything and run the whole test suite (what CI runs).
.PHONY: up test bootstrap lint bench clean

up: bootstrap
	.venv/bin/auditlog up --then '.venv/bin/python examples/demo.py'

test:
	scripts/test.sh

bootstrap:
	scripts/bootstrap.sh

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/mypy

clean:
	-.venv/bin/auditlog stack stop
	rm -rf .auditlog
