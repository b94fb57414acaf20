# The two commands a newcomer needs (see README.md):
#   make up    set up everything, start Kafka, PostgreSQL and the services, log an event with the
#              official Pangea SDK and verify its receipt; Ctrl-C stops everything.
#   make test  set up everything and run the whole test suite (what CI runs).
#   make loadtest  the standard load scenario against the local stack (started for the run when
#              `make up` is not running); HTML and JSON report in loadtest-report/.
.PHONY: up test bootstrap lint bench clean loadtest

up: bootstrap
	.venv/bin/auditlog up --then '.venv/bin/python examples/demo.py'

test:
	scripts/test.sh

bootstrap:
	scripts/bootstrap.sh

loadtest: bootstrap
	scripts/loadtest.sh

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/mypy

clean:
	-.venv/bin/auditlog stack stop
	rm -rf .auditlog
