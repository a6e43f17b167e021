"""Settings, ids and the blob key layout."""

from __future__ import annotations

import base64

import pytest

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
