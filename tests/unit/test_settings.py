from __future__ import annotations

from pathlib import Path

import pytest

from auditlog.runtime.settings import Secret, SettingsError, describe, masked_url
from ingest.settings import Settings as IngestSettings
from sealer.settings import Settings as SealerSettings


def test_secrets_never_show_in_repr_or_descriptions() -> None:
    settings = IngestSettings.from_env(
        {"AUDITLOG_DATABASE_URL": "postgresql://u:hunter2@db:5432/x"}
    )
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(describe(settings))
    assert describe(settings)["database_url"] == "postgresql://u:****@db:5432/x"
    assert "hunter2" not in repr(Secret("hunter2"))


def test_masked_url_without_password_is_unchanged() -> None:
    assert masked_url("postgresql://u@db/x") == "postgresql://u@db/x"


def test_sealer_settings_from_env() -> None:
    settings = SealerSettings.from_env(
        {
            "AUDITLOG_TOPIC": "t",
            "AUDITLOG_BATCH_MAX_SIZE": "10",
            "AUDITLOG_BATCH_MAX_AGE": "0.5",
            "AUDITLOG_BATCH_MIN_INTERVAL": "0",
            "AUDITLOG_SIGNING_KEY_FILE": "/k/log.skey",
            "AUDITLOG_HASH_SCHEME": "rfc6962-blake3",
            "AUDITLOG_SEARCH_MERGE_INTERVAL": "0",
            "AUDITLOG_SEARCH_GENERATION_ENTRIES": "0",
            "AUDITLOG_SEALER_REBALANCE_INTERVAL": "0",
        }
    )
    assert (settings.topic, settings.batch_max_size, settings.batch_max_age) == ("t", 10, 0.5)
    assert settings.batch_min_interval == 0
    assert SealerSettings.from_env({}).batch_min_interval == 0.2
    assert settings.search_merge_interval == 0
    assert SealerSettings.from_env({}).search_merge_interval == 0.5
    assert settings.search_generation_entries == 0
    assert SealerSettings.from_env({}).search_generation_entries == 2_000_000
    assert (
        SealerSettings.from_env(
            {"AUDITLOG_SEARCH_GENERATION_ENTRIES": "10000"}
        ).search_generation_entries
        == 10_000
    )
    assert settings.rebalance_interval == 0
    assert SealerSettings.from_env({}).rebalance_interval == 60
    assert settings.signing_key_file == Path("/k/log.skey")
    assert settings.hash_scheme == "rfc6962-blake3"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BATCH_MAX_SIZE", "0"),
        ("BATCH_MAX_SIZE", "ten"),
        ("BATCH_MAX_AGE", "120"),
        ("BATCH_MAX_AGE", "nan"),
        ("BATCH_MIN_INTERVAL", "-0.1"),
        ("BATCH_MIN_INTERVAL", "61"),
        ("BATCH_MIN_INTERVAL", "nan"),
        ("SEARCH_MERGE_INTERVAL", "-1"),
        ("SEARCH_MERGE_INTERVAL", "61"),
        ("SEARCH_MERGE_INTERVAL", "nan"),
        ("SEARCH_GENERATION_ENTRIES", "-1"),
        ("SEARCH_GENERATION_ENTRIES", "9999"),
        ("SEARCH_GENERATION_ENTRIES", "1e6"),
        ("SEALER_REBALANCE_INTERVAL", "-1"),
        ("SEALER_REBALANCE_INTERVAL", "inf"),
        ("SEALER_REBALANCE_INTERVAL", "nan"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"AUDITLOG_{name}"):
        SealerSettings.from_env({f"AUDITLOG_{name}": value})


def test_ingest_linger_from_env() -> None:
    assert IngestSettings.from_env({}).kafka_linger_ms == 5
    settings = IngestSettings.from_env({"AUDITLOG_INGEST_KAFKA_LINGER_MS": "0"})
    assert settings.kafka_linger_ms == 0
    for value in ("-1", "1001", "5.5"):
        with pytest.raises(SettingsError, match="AUDITLOG_INGEST_KAFKA_LINGER_MS"):
            IngestSettings.from_env({"AUDITLOG_INGEST_KAFKA_LINGER_MS": value})
