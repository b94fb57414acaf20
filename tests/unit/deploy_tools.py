"""Where the deployment checks find their tools: helm, promtool (built once by
scripts/go-tools.sh into the user's cache) and the chart validator (deploy/helm/validate,
built from source per session with Go).

A missing tool skips its tests on a developer's machine and fails them under ``CI=true``
(tests/go_tools.py; scripts/test.sh runs scripts/go-tools.sh first).
"""

from __future__ import annotations

from pathlib import Path

from tests import go_tools

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "auditlog"
VALIDATOR = DEPLOY / "helm" / "validate"
RULES = DEPLOY / "prometheus"

# Keep in step with scripts/go-tools.sh.
HELM_VERSION = "v4.3.2"
PROMTOOL_VERSION = "v0.316.0"


def cached_tool(name: str, version: str) -> Path:
    return go_tools.cached_tool(name, version)


def build_validator(out_dir: Path) -> Path:
    return go_tools.go_build(VALIDATOR, out_dir / "validate")
