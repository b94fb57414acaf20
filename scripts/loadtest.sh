#!/usr/bin/env bash
# `make loadtest`: the standard load scenario against the local stack; the report goes to
# loadtest-report/ (report.html and report.json). Extra arguments go to `auditlog loadtest`.
#
# Which stack: the one named by AUDITLOG_URL and PANGEA_AUDIT_TOKEN when both are set and it
# answers, else the one `make up` is running (.auditlog/dev.env), else one started here with
# `auditlog up --exit-after` for the length of the run (stopped again afterwards), on port
# LOADTEST_PORT (default 8000).
#
# The standard scenario (docs/loadtest.md): `mixed` (single events, some bulk and async
# requests, a console's reads), ramping to 100 requests/s in 10 s, holding 30 s, ramping down
# in 5 s. LOADTEST_STAGES and LOADTEST_OUT change the stages and the report's directory.
set -euo pipefail
cd "$(dirname "$0")/.."

args=(
    loadtest --scenario mixed
    --stages "${LOADTEST_STAGES:-10s:100,30s:100,5s:0}"
    --out "${LOADTEST_OUT:-loadtest-report}"
    "$@"
)

answers() {
    .venv/bin/python - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=3) as resp:
        sys.exit(0 if resp.status == 200 else 1)
except OSError:
    sys.exit(1)
PY
}

if [ -n "${AUDITLOG_URL:-}" ] && [ -n "${PANGEA_AUDIT_TOKEN:-}" ] && answers "$AUDITLOG_URL"; then
    exec .venv/bin/auditlog "${args[@]}"
fi
if [ -f .auditlog/dev.env ]; then
    set -a
    # shellcheck disable=SC1091
    . .auditlog/dev.env
    set +a
    if answers "$AUDITLOG_URL"; then
        exec .venv/bin/auditlog "${args[@]}"
    fi
fi
echo "loadtest: no running stack answers; starting one with \`auditlog up\` for this run"
exec .venv/bin/auditlog up --port "${LOADTEST_PORT:-8000}" --exit-after \
    --then "$(printf '%q ' .venv/bin/auditlog "${args[@]}")"
