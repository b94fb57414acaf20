#!/usr/bin/env bash
# Creates .venv with Python 3.11+ and installs the project with its dev extra, every package at
# the version constraints.txt pins (build back-ends too, through PIP_CONSTRAINT).
# Idempotent: reinstalls only when pyproject.toml or constraints.txt changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd-analyze verifies deploy/systemd's units in the tests (tests/unit/test_deploy_systemd.py).
if ! command -v systemd-analyze >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing systemd (for systemd-analyze)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    py=$(find_python) || {
        echo "bootstrap: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
        exit 2
    }
    if ! "$py" -m venv .venv 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "bootstrap: installing python3-venv"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            "$py" -m venv .venv
        else
            echo "bootstrap: '$py -m venv' failed; install the venv module for $py" >&2
            exit 2
        fi
    fi
fi

stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
export PIP_CONSTRAINT="$PWD/constraints.txt"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing auditlog and its dev dependencies into .venv"
    if ! { .venv/bin/python -m pip install --quiet --upgrade pip &&
        .venv/bin/python -m pip install --quiet setuptools wheel &&
        .venv/bin/python -m pip install --quiet -e '.[dev]'; } >.venv/pip.log 2>&1; then
        cat .venv/pip.log >&2
        echo "bootstrap: pip install failed (log above, also in .venv/pip.log)" >&2
        exit 2
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi

