#!/usr/bin/env bash
# Builds the pinned Go tools the deployment checks use (tests/unit/test_deploy_*.py): helm, to
# lint and render the chart, and promtool, to unit-test the Prometheus rules. Both are built from
# the Go module proxy with `go install module/cmd@version`, once, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/tools/<name>-<version>/, outside the clone, so a fresh
# clone on the same machine reuses them. Idempotent: a cached tool is not rebuilt.
# Needs Go (1.26 here); promtool is a large build (several minutes on 2 cores, the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep these pins in step with tests/unit/deploy_tools.py.
HELM_PACKAGE=helm.sh/helm/v4/cmd/helm
HELM_VERSION=v4.3.2
PROMTOOL_PACKAGE=github.com/prometheus/prometheus/cmd/promtool
PROMTOOL_VERSION=v0.316.0

tools_dir=${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/tools

install_tool() {
    local name=$1 package=$2 version=$3
    local dir=$tools_dir/$name-$version
    [ -x "$dir/$name" ] && return 0
    if ! command -v go >/dev/null 2>&1; then
        echo "deploy-tools: Go is required to build $name $version (apt-get install golang-go, or Go 1.26)" >&2
        return 2
    fi
    echo "deploy-tools: building $name $version from the Go module proxy (once)" >&2
    local staging
    staging=$(mktemp -d "$tools_dir/.build-$name-XXXXXX")
    # CGO off: a static binary that does not depend on the machine's C libraries.
    if ! GOBIN="$staging" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
        go install "$package@$version"; then
        rm -rf "$staging"
        echo "deploy-tools: go install $package@$version failed" >&2
        return 2
    fi
    mkdir -p "$dir"
    # The rename is atomic: a concurrent run sees either no tool or a whole one.
    mv "$staging/$name" "$dir/.$name.tmp" && mv "$dir/.$name.tmp" "$dir/$name"
    rm -rf "$staging"
}

mkdir -p "$tools_dir"
install_tool helm "$HELM_PACKAGE" "$HELM_VERSION"
install_tool promtool "$PROMTOOL_PACKAGE" "$PROMTOOL_VERSION"
