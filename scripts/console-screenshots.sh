#!/usr/bin/env bash
# Regenerates docs/console/*.png, the screenshots in docs/console.md: runs the console's browser
# tests (tests/e2e/test_console.py) with AUDITLOG_CONSOLE_SCREENSHOTS pointing there, against the
# local stack or AUDITLOG_KAFKA_BOOTSTRAP / AUDITLOG_DATABASE_URL as every e2e test does.
# Needs Debian's chromium and chromium-driver (scripts/browser.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/browser.sh
AUDITLOG_CONSOLE_SCREENSHOTS="$PWD/docs/console" .venv/bin/python -m pytest -q tests/e2e/test_console.py "$@"
