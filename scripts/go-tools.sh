#!/usr/bin/env bash
# Installs the pinned Go tools the conformance tests run, outside the clone so that a fresh
# clone on the same machine reuses them: ${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/tools/<name>-<version>/.
# Idempotent: a tool whose directory exists is not rebuilt. Also downloads the modules of the
# Go conformance programs under tests/conformance/, so the tests build them from the cache.
#
# Without a Go toolchain (1.24 or newer) it says so and installs nothing: those tests then skip,
# or fail under CI=true. A failed build fails this script under CI=true only, so that `make up`
# never depends on Go.
set -euo pipefail
cd "$(dirname "$0")/.."

TESSERA_VERSION=v1.0.4  # github.com/transparency-dev/tessera: its hammer; the client is pinned in go.mod
tools="${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/tools"

if ! command -v go >/dev/null 2>&1; then
    echo "go-tools: no Go toolchain on PATH; the Go conformance tests need Go 1.24+" >&2
    exit 0
fi

failed() {
    echo "go-tools: $1" >&2
    if [ "${CI:-}" = true ]; then
        exit 1
    fi
    exit 0
}

# GOTOOLCHAIN=local: never download another Go; CGO off: nothing to link against.
export GOTOOLCHAIN=local CGO_ENABLED=0

hammer="$tools/hammer-$TESSERA_VERSION"
if [ ! -x "$hammer/hammer" ]; then
    echo "go-tools: building Tessera's hammer $TESSERA_VERSION into $hammer"
    rm -rf "$hammer.partial"
    mkdir -p "$hammer.partial"
    GOBIN="$hammer.partial" go install \
        "github.com/transparency-dev/tessera/internal/hammer@$TESSERA_VERSION" ||
        failed "building the hammer failed"
    # Appears whole or not at all: a build cut short is not mistaken for an installed tool.
    rm -rf "$hammer"
    mv "$hammer.partial" "$hammer"
fi

for module in tests/conformance/go tests/conformance/tessera; do
    (cd "$module" && GOFLAGS=-mod=readonly go mod download) ||
        failed "downloading the modules of $module failed"
done
