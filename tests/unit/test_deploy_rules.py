"""The Prometheus rules (deploy/prometheus/) load, and each alert fires on the situation it names
and stays quiet next to it: `promtool check rules` and `promtool test rules`, with the pinned
promtool scripts/go-tools.sh builds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.deploy_tools import PROMTOOL_VERSION, RULES, cached_tool


@pytest.fixture(scope="module")
def promtool() -> Path:
    return cached_tool("promtool", PROMTOOL_VERSION)


def run(*command: str | Path, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_load(promtool: Path) -> None:
    result = run(promtool, "check", "rules", "auditlog.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests(promtool: Path) -> None:
    result = run(promtool, "test", "rules", "auditlog.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_unit_tests_catch_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    for name in ("auditlog.rules.yml", "auditlog.rules.test.yml"):
        shutil.copy(RULES / name, tmp_path / name)
    rules = tmp_path / "auditlog.rules.yml"
    text = rules.read_text(encoding="utf-8")
    owned = "sum(auditlog_sealer_owned_partitions) > "
    broken = text.replace(owned + "0", owned + "1")
    assert broken != text
    rules.write_text(broken, encoding="utf-8")
    result = run(promtool, "test", "rules", "auditlog.rules.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "AuditlogPartitionsWithoutOwner" in result.stdout + result.stderr
