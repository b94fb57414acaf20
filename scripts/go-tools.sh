#!/usr/bin/env bash
# Builds the pinned Go tools the tests run, once, from the Go module proxy with
# `go install module/cmd@version`, into ${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/tools/<name>-<version>/,
# outside the clone, so a fresh clone on the same machine reuses them; and downloads the modules
# of the Go programs under tests/conformance/, so the tests build them from the module cache.
#   helm       lints and renders the chart (tests/unit/test_deploy_chart.py)
#   promtool   unit-tests the Prometheus rules (tests/unit/test_deploy_rules.py); a large build,
#              several minutes on 2 cores the first time
#   hammer     Tessera's load and read tester (tests/e2e/test_tessera_client.py)
# Idempotent: a cached tool is not rebuilt. Exits 2 when Go is missing or a build fails;
# scripts/test.sh then stops under CI=true, and elsewhere lets those tests skip. `make up` needs
# none of them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep these pins in step with tests/unit/deploy_tools.py, tests/e2e/test_tessera_client.py and
# tests/conformance/tessera/go.mod.
HELM_VERSION=v4.3.2
PROMTOOL_VERSION=v0.316.0
TESSERA_VERSION=v1.0.4

tools_dir=${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/tools

if ! command -v go >/dev/null 2>&1; then
    echo "go-tools: Go is required to build the test tools (Go 1.24 or newer)" >&2
    exit 2
fi
# GOTOOLCHAIN=local: never download another Go; CGO off: static binaries, nothing to link.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

install_tool() {
    local name=$1 package=$2 version=$3
    local dir=$tools_dir/$name-$version
    [ -x "$dir/$name" ] && return 0
    echo "go-tools: building $name $version from the Go module proxy (once)" >&2
    local staging
    staging=$(mktemp -d "$tools_dir/.build-$name-XXXXXX")
    if ! GOBIN="$staging" go install "$package@$version"; then
        rm -rf "$staging"
        echo "go-tools: go install $package@$version failed" >&2
        exit 2
    fi
    mkdir -p "$dir"
    # The rename is atomic: a concurrent run sees either no tool or a whole one.
    mv "$staging/$name" "$dir/.$name.tmp" && mv "$dir/.$name.tmp" "$dir/$name"
    rm -rf "$staging"
}

mkdir -p "$tools_dir"
install_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
install_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION"
install_tool hammer github.com/transparency-dev/tessera/internal/hammer "$TESSERA_VERSION"

for module in tests/conformance/go tests/conformance/tessera; do
    if ! (cd "$module" && GOFLAGS=-mod=readonly go mod download); then
        echo "go-tools: downloading the modules of $module failed" >&2
        exit 2
    fi
done
