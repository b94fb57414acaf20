"""The injected-crash switch (sealer/faults.py): parsed once into the settings, off by default."""

from __future__ import annotations

import pytest

from auditlog.runtime.settings import SettingsError
from sealer import faults
from sealer.settings import Settings


def test_no_fault_unless_asked() -> None:
    assert Settings.from_env({}).fault is None
    faults.arm(None)
    assert faults.armed is None


def test_a_fault_is_parsed_into_the_settings() -> None:
    settings = Settings.from_env({"AUDITLOG_SEALER_FAULT": "events-copied:3"})
    assert settings.fault == faults.Fault("events-copied", 3)
    assert Settings.from_env({"AUDITLOG_SEALER_FAULT": "committed"}).fault == (
        faults.Fault("committed", 1)
    )


@pytest.mark.parametrize("text", ["nowhere:1", "committed:0", "committed:x", ":1"])
def test_a_bad_fault_stops_the_sealer_with_its_reason(text: str) -> None:
    with pytest.raises(SettingsError, match="AUDITLOG_SEALER_FAULT"):
        Settings.from_env({"AUDITLOG_SEALER_FAULT": text})


def test_the_nth_time_the_step_is_reached_the_process_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)

    monkeypatch.setattr(faults.os, "_exit", fake_exit)
    monkeypatch.setattr(faults.os, "write", lambda fd, data: len(data))
    faults.arm(faults.Fault("before-commit", 2))
    try:
        assert faults.armed is not None
        faults.armed.reach("events-copied")
        faults.armed.reach("before-commit")
        assert exits == []
        faults.armed.reach("before-commit")
        assert exits == [faults.EXIT_CODE]
    finally:
        faults.arm(None)
