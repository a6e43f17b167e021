"""Settings, ids and the blob key layout."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from libs.common import keys
from libs.common.ids import hash_secret, new_id, new_secret, secret_matches
from libs.common.settings import Settings


def test_settings_read_howhot_env_and_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOWHOT_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("HOWHOT_BLOBS_S3_SECRET_KEY", "very-secret")
    monkeypatch.setenv("HOWHOT_DATA_DIR", "/tmp/hh")
    settings = Settings()
    assert settings.kafka.bootstrap == "kafka:9092"
    masked = settings.masked()
    assert masked["blobs"]["s3_secret_key"] == "********"
    assert "very-secret" not in str(masked)
    assert settings.clickhouse_dsn == "chdb:////tmp/hh/clickhouse"
    assert str(settings.models_dir) == "/tmp/hh/models"


def test_a_password_in_the_clickhouse_dsn_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOWHOT_CLICKHOUSE_DSN", "http://howhot:very-secret@clickhouse:8123/?secure=false")
    settings = Settings()
    masked = settings.masked()
    assert "very-secret" not in str(masked)
    assert masked["derived"]["clickhouse_dsn"] == "http://howhot:********@clickhouse:8123/?secure=false"
    assert settings.clickhouse_dsn.startswith("http://howhot:very-secret@")  # the client still gets the real one


@pytest.mark.parametrize(("variable", "value"), [
    ("HOWHOT_UPLOAD_RETENTION_DAYS", "0"),  # `howhot retention` would delete every photo at once
    ("HOWHOT_SCORING_MINOR_THRESHOLD", "1.5"),  # P(minor) never exceeds it: minors would be rated
    ("HOWHOT_FACE_THRESHOLD", "-0.1"),
    ("HOWHOT_PUBLIC_BASE_URL", "howhot.example"),  # share links would be relative: howhot.example/s/<id>
    ("HOWHOT_PUBLIC_BASE_URL", ""),
    ("HOWHOT_PUBLIC_BASE_URL", "https://howhot.example/app"),
    ("HOWHOT_UPLOAD_PORT", "70000"),  # was an OverflowError from bind() deep in aiohttp
    ("HOWHOT_BLOBS_S3_ENDPOINT", "minio:9000"),  # was botocore's "Invalid endpoint" when the service started
    ("HOWHOT_KAFKA_BOOTSTRAP", "kafka:abc"),  # was aiokafka's "invalid literal for int()"
    ("HOWHOT_KAFKA_BOOTSTRAP", "kafka:9092,,"),
    ("HOWHOT_FACE_MAX_BATCH", "0"),
    ("HOWHOT_SCORING_MAX_WAIT_MS", "-1"),
    ("HOWHOT_MODELS_PROFILE", "unknown"),
])
def test_invalid_settings_fail_at_once_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable):
        Settings()


def test_valid_edge_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in {"HOWHOT_KAFKA_BOOTSTRAP": "kafka-1:9092, kafka-2:9093", "HOWHOT_FACE_MAX_WAIT_MS": "0",
                            "HOWHOT_UPLOAD_PORT": "0", "HOWHOT_BLOBS_S3_ENDPOINT": "http://minio:9000",
                            "HOWHOT_PUBLIC_BASE_URL": "https://howhot.example/"}.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert settings.core.public_base_url == "https://howhot.example"
    assert settings.face.max_wait_ms == 0 and settings.upload.port == 0


def test_ids_are_unguessable_and_tokens_are_stored_hashed() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    raw = base64.urlsafe_b64decode(next(iter(ids)) + "==")
    assert len(raw) * 8 >= 96
    token = new_secret()
    stored = hash_secret(token)
    assert token not in stored and secret_matches(token, stored)
    assert not secret_matches("wrong", stored) and not secret_matches(None, stored)


def test_keys_reject_traversal_and_cover_every_derived_blob() -> None:
    pid = new_id()
    with pytest.raises(ValueError):
        keys.photo("../etc/passwd")
    single, prefixes = keys.derived_keys_and_prefixes(pid)
    assert keys.photo(pid) in single and keys.result(pid) in single and keys.faces_manifest(pid) in single
    assert keys.chip(pid, 3).startswith(keys.chips_prefix(pid)) and keys.chips_prefix(pid) in prefixes
    assert keys.card(pid, "og", "1").startswith(keys.cards_prefix(pid)) and keys.cards_prefix(pid) in prefixes
