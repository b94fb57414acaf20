#!/usr/bin/env bash
# Re-resolves the newest versions pyproject.toml allows in a scratch venv and rewrites
# constraints.txt from them. Run it on purpose (never from CI), run `make test`, commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
"$scratch/venv/bin/python" -m pip install --quiet -e '.[dev]'
{
    sed -n '1,3p' constraints.txt
    "$scratch/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^auditlog'
} >constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt rewritten; run make test before committing it"
