#!/usr/bin/env bash
# The project's test command (`make test`, and what .ci/run calls): set up, lint, type-check,
# then the whole suite. Integration and e2e tests start the local Kafka and PostgreSQL on their
# own (or use AUDITLOG_KAFKA_BOOTSTRAP / AUDITLOG_DATABASE_URL) and stop what they started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# The tests' Go tools (helm, promtool, Tessera's hammer), built once into the user's cache. Not
# in bootstrap: `make up` does not need them. Without them those tests skip, except under CI.
if ! scripts/go-tools.sh; then
    [ "${CI:-}" = true ] && exit 2
    echo "test: the Go tools are missing; the tests that need them will be skipped" >&2
fi

# Debian's chromium and chromedriver for the console's browser tests; likewise skipped without
# them, except under CI.
if ! scripts/browser.sh; then
    [ "${CI:-}" = true ] && exit 2
    echo "test: chromium is missing; the console's browser tests will be skipped" >&2
fi
# rsyslog from Debian for the forwarder's tests (tests/integration/test_forward*.py).
if ! scripts/forward-tools.sh; then
    [ "${CI:-}" = true ] && exit 2
    echo "test: rsyslog is missing; the forwarder's syslog tests will be skipped" >&2
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
