"""Where the deployment checks find their tools: helm, promtool (built once by
scripts/deploy-tools.sh into the user's cache) and the chart validator (deploy/helm/validate,
built from source per session with Go).

A missing tool skips its tests on a developer's machine and fails them under ``CI=true``: CI
must never pass by checking nothing (scripts/test.sh runs scripts/deploy-tools.sh first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "auditlog"
VALIDATOR = DEPLOY / "helm" / "validate"
RULES = DEPLOY / "prometheus"

# Keep in step with scripts/deploy-tools.sh.
HELM_VERSION = "v4.3.2"
PROMTOOL_VERSION = "v0.316.0"


def missing(what: str) -> None:
    """Skip, or fail under CI: a check that cannot run there must not look like a pass."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: scripts/test.sh runs scripts/deploy-tools.sh first)")
    pytest.skip(what)


def cached_tool(name: str, version: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = cache / "auditlog" / "tools" / f"{name}-{version}" / name
    if not path.is_file():
        missing(f"{name} {version} is not built: scripts/deploy-tools.sh builds it into {path}")
    return path


def build_validator(out_dir: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        missing("Go is not on PATH: the chart validator (deploy/helm/validate) is built with it")
    out = out_dir / "validate"
    env = {
        **os.environ,
        "GOFLAGS": "-mod=readonly",  # go.sum is committed: never rewrite it
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    result = subprocess.run(
        [str(go), "build", "-o", str(out), "."],
        cwd=VALIDATOR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"go build of deploy/helm/validate failed:\n{result.stderr}")
    return out
