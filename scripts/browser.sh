#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the console's browser tests
# (tests/e2e/test_console*.py; /usr/bin/chromium, /usr/bin/chromedriver), once: Debian's package
# of the release is the pin. Run by scripts/test.sh; `make up` does not need a browser.
# Exits 2 when they are missing and cannot be installed (not root, or no apt-get): the browser
# tests then skip, and fail under CI=true.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: install Debian's chromium and chromium-driver (as root: apt-get install chromium chromium-driver)" >&2
    exit 2
fi
echo "browser: installing chromium and chromium-driver from Debian's packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
