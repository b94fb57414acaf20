#!/usr/bin/env bash
# Builds the auditlog OCI image from Debian's packages, without any container registry:
#   1. the base: a minimal Debian bookworm root filesystem made by mmdebstrap from the Debian
#      mirror (Python 3.11, ca-certificates), imported into containers-storage with
#      `podman import` (built once; reused while its package list is unchanged);
#   2. a wheel of this checkout and of every dependency at constraints.txt's versions, fetched
#      by the host's pip (cached between builds);
#   3. deploy/image/Containerfile built by buildah on that base, without network: a venv in
#      /opt/auditlog installed from those wheels, uid 10001, no writes outside /tmp;
#   4. a smoke run: `podman run --rm --read-only IMAGE auditlog --help`, and every service's
#      module imported the same way.
# Usage: deploy/image/build.sh [--no-smoke]   (as root, or a user podman runs rootless for)
# Prints the image name last; the podman run flags the smoke run needed on this machine are
# kept in ${XDG_CACHE_HOME:-~/.cache}/auditlog/image/podman-run-flags.
# Environment: AUDITLOG_IMAGE (default localhost/auditlog), PYTHON (default .venv/bin/python),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), BUILDAH_ISOLATION (default chroot:
# works without user namespaces or a nested runtime), STORAGE_DRIVER (default: podman's),
# PODMAN_RUN_FLAGS (extra flags for the smoke run, e.g. "--runtime runc").
set -euo pipefail
cd "$(dirname "$0")/../.."

smoke=1
[ "${1:-}" = "--no-smoke" ] && smoke=0

image=${AUDITLOG_IMAGE:-localhost/auditlog}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
storage=()
[ -n "${STORAGE_DRIVER:-}" ] && storage=(--storage-driver "$STORAGE_DRIVER")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/image
python=${PYTHON:-.venv/bin/python}

# What the base holds. Debian's mirror serves only the current version of each package, so the
# pin is the suite and the Python minor version; the exact versions installed are written to
# packages.txt beside the image and into its label.
suite=bookworm
packages=python3.11,python3.11-venv,ca-certificates,tzdata,passwd

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "build.sh: installing $2 from Debian's packages" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        echo "build.sh: $1 is missing; install the Debian package $2" >&2
        exit 2
    fi
}
need mmdebstrap mmdebstrap
need buildah buildah
need podman podman
[ -x "$python" ] || { echo "build.sh: $python missing (run scripts/bootstrap.sh)" >&2; exit 2; }

mkdir -p "$cache"
base_key=$(printf '%s\n' "$suite" "$packages" "$mirror" "$security" | sha256sum | cut -c1-12)
base=localhost/auditlog-base:$suite-$base_key
if ! podman "${storage[@]}" image exists "$base"; then
    echo "build.sh: making the base $base with mmdebstrap (a few minutes)" >&2
    rootfs=$cache/rootfs-$base_key.tar
    mmdebstrap --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='chroot "$1" dpkg-query -W -f="\${Package}=\${Version}\n" > "'"$cache/packages-$base_key.txt"'"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$suite" "$rootfs" \
        "deb $mirror $suite main" "deb $mirror $suite-updates main" \
        "deb $security $suite-security main"
    podman "${storage[@]}" import \
        --change 'CMD ["/bin/sh"]' \
        --change "LABEL org.opencontainers.image.base.name=debian:$suite" \
        "$rootfs" "$base" >/dev/null
    rm -f "$rootfs"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp constraints.txt deploy/image/Containerfile "$context/"
# The wheels are fetched here, by the host's pip (its index, proxy and certificates), into a
# cache kept between builds; the image build then installs them with no network at all.
wheels=$cache/wheels
# Debian bookworm has glibc 2.36: a wheel of any manylinux tag up to it runs there.
arch=$(uname -m)
platforms=(--platform "manylinux2014_$arch")
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
mkdir -p "$wheels" "$context/wheels"
"$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$context/wheels" . >&2
"$python" -m pip download --quiet --only-binary=:all: --python-version 3.11 \
    "${platforms[@]}" --implementation cp \
    -c constraints.txt -d "$wheels" "$context"/wheels/auditlog-*.whl >&2
find "$wheels" -name '*.whl' ! -name 'auditlog-*' -exec cp {} "$context/wheels/" \;
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
tag=$version-$revision

buildah "${storage[@]}" bud --isolation "$BUILDAH_ISOLATION" --layers \
    --build-arg BASE="$base" \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.revision="$revision" \
    --label io.auditlog.debian-packages="$(tr '\n' ' ' <"$cache/packages-$base_key.txt" 2>/dev/null || true)" \
    -f "$context/Containerfile" -t "$image:$tag" -t "$image:latest" "$context" >&2

# The smoke run. Some machines cannot start a container with podman's defaults (crun refuses
# hybrid cgroups; the default open-files and process limits exceed what the sandbox allows):
# then it says why and runs again with runc and lower limits (deploy/image/README.md).
smoke_run() {
    podman "${storage[@]}" run --rm --read-only "$@" "$image:$tag" auditlog --help >/dev/null &&
        podman "${storage[@]}" run --rm --read-only "$@" "$image:$tag" python -c \
            'import os, ingest.app, query.app, sealer.main, auditlog.cli.main; assert os.getuid() == 10001'
}
if [ "$smoke" = 1 ]; then
    echo "build.sh: smoke run (read-only root filesystem)" >&2
    read -r -a run_flags <<<"${PODMAN_RUN_FLAGS:-}"
    if ! failure=$(smoke_run "${run_flags[@]}" 2>&1); then
        echo "build.sh: podman run ${run_flags[*]} failed: $failure" >&2
        need runc runc
        run_flags=(--runtime runc --ulimit nofile=16384:16384 --ulimit nproc=4096:4096)
        echo "build.sh: smoke run again with ${run_flags[*]}" >&2
        smoke_run "${run_flags[@]}"
    fi
    echo "build.sh: smoke run passed (podman run ${run_flags[*]} --read-only)" >&2
    # What it took to run a container here, for the tests and the next runs on this machine.
    printf '%s\n' "${run_flags[*]}" >"$cache/podman-run-flags"
fi
echo "$image:$tag"
