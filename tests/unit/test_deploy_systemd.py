"""deploy/systemd: every unit passes `systemd-analyze verify` without a warning, and the template
units give each instance its own unprivileged ports (systemd has no arithmetic; sh adds the
instance number to a base port, and refuses an instance that is not a number)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED = "/opt/auditlog/.venv/bin/auditlog"
# The instances verified: the templates as an operator enables them, and every other unit.
VERIFIED = [
    "auditlog-ingest@0.service",
    "auditlog-query@3.service",
    "auditlog-sealer@1.service",
    "auditlog-sealer@42.service",
    "auditlog-forward@7.service",
    "auditlog-audit.service",
    "auditlog-audit.timer",
    "auditlog-compact.service",
    "auditlog-compact.timer",
    "auditlog-monitor.service",
    "auditlog-monitor.timer",
]


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze is missing (Debian package systemd; scripts/bootstrap.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _copy_units(to: Path) -> None:
    """The units, running this checkout's `auditlog` where the installed one would be."""
    auditlog = Path(sys.executable).parent / "auditlog"
    assert auditlog.exists(), auditlog
    for unit in sorted(UNITS.glob("auditlog*.*")):
        if unit.suffix in (".service", ".timer"):
            (to / unit.name).write_text(unit.read_text().replace(INSTALLED, str(auditlog)))


def _verify(
    systemd_analyze: str, where: Path, units: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, "verify", *units],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_unit_verifies_without_a_warning(systemd_analyze: str, tmp_path: Path) -> None:
    _copy_units(tmp_path)
    listed = {p.name for p in UNITS.iterdir() if p.suffix in (".service", ".timer")}
    verified_files = {re.sub(r"@[0-9]+\.", "@.", name) for name in VERIFIED}
    assert verified_files == listed, "a unit is not verified here"
    result = _verify(systemd_analyze, tmp_path, VERIFIED)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_verify_fails_on_a_broken_unit(systemd_analyze: str, tmp_path: Path) -> None:
    (tmp_path / "broken.service").write_text("[Service]\nExecStart=/nonexistent/auditlog\n")
    (tmp_path / "typo.service").write_text("[Service]\nExecStart=/bin/true\nUser=x\nFoo=1\n")
    assert _verify(systemd_analyze, tmp_path, ["broken.service"]).returncode != 0
    assert "Unknown key 'Foo'" in _verify(systemd_analyze, tmp_path, ["typo.service"]).stderr


def _instance_env(tmp_path: Path, template: str, instance: str) -> tuple[int, dict[str, str]]:
    """Run the template's ExecStart for ``instance`` with a probe in place of `auditlog` that
    prints the environment it was given; (exit status, AUDITLOG_* variables)."""
    [line] = [
        ln for ln in (UNITS / template).read_text().splitlines() if ln.startswith("ExecStart=")
    ]
    probe = tmp_path / "probe"
    probe.write_text('#!/bin/sh\nenv | grep "^AUDITLOG_"\necho "ARGS=$*"\n')
    probe.chmod(0o755)
    # The two systemd rewrites this line relies on: the %i specifier and $$ for a literal $.
    command = line.removeprefix("ExecStart=").replace("%i", instance).replace("$$", "$")
    argv = shlex.split(command.replace(INSTALLED, str(probe)))
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=10, check=False, env={"PATH": "/usr/bin:/bin"}
    )
    found = dict(ln.split("=", 1) for ln in result.stdout.splitlines() if "=" in ln)
    return result.returncode, found


@pytest.mark.parametrize(
    ("template", "instance", "expected"),
    [
        ("auditlog-sealer@.service", "0", {"AUDITLOG_SEALER_METRICS_PORT": "9300"}),
        ("auditlog-sealer@.service", "1", {"AUDITLOG_SEALER_METRICS_PORT": "9301"}),
        ("auditlog-sealer@.service", "42", {"AUDITLOG_SEALER_METRICS_PORT": "9342"}),
        ("auditlog-sealer@.service", "899", {"AUDITLOG_SEALER_METRICS_PORT": "10199"}),
        ("auditlog-forward@.service", "7", {"AUDITLOG_FORWARD_METRICS_PORT": "9407"}),
        (
            "auditlog-ingest@.service",
            "5",
            {"AUDITLOG_PORT": "8105", "AUDITLOG_INGEST_METRICS_PORT": "9105"},
        ),
        (
            "auditlog-query@.service",
            "2",
            {"AUDITLOG_PORT": "8202", "AUDITLOG_QUERY_METRICS_PORT": "9202"},
        ),
    ],
)
def test_each_instance_gets_its_own_unprivileged_ports(
    tmp_path: Path, template: str, instance: str, expected: dict[str, str]
) -> None:
    status, env = _instance_env(tmp_path, template, instance)
    assert status == 0
    assert {k: env[k] for k in expected} == expected
    assert env["ARGS"] == template.removeprefix("auditlog-").partition("@")[0]


@pytest.mark.parametrize("template", ["auditlog-sealer@.service", "auditlog-ingest@.service"])
@pytest.mark.parametrize("instance", ["", "a", "01", "1x", "900", "-1"])
def test_an_instance_that_is_not_a_small_number_is_refused(
    tmp_path: Path, template: str, instance: str
) -> None:
    status, env = _instance_env(tmp_path, template, instance)
    assert status == 64 and "ARGS" not in env
