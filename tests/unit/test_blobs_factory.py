"""create_blob_store picks the adapter from settings alone (embedded and distributed are configuration)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from libs.common.blobs import BlobStore, LocalBlobStore, S3BlobStore, create_blob_store
from libs.common.settings import BlobSettings, CoreSettings, Settings


def test_local_backend_uses_the_data_dir_by_default(tmp_path: Path) -> None:
    store = create_blob_store(Settings(core=CoreSettings(data_dir=tmp_path), blobs=BlobSettings(backend="local")))
    assert isinstance(store, LocalBlobStore) and isinstance(store, BlobStore)
    assert store.root == (tmp_path / "blobs").resolve()
    assert not store.root.exists()  # nothing is touched until first use


def test_local_backend_honours_local_dir(tmp_path: Path) -> None:
    store = create_blob_store(Settings(blobs=BlobSettings(backend="local", local_dir=tmp_path / "elsewhere")))
    assert isinstance(store, LocalBlobStore) and store.root == (tmp_path / "elsewhere").resolve()


def test_s3_backend_builds_a_client_for_the_configured_bucket() -> None:
    blobs = BlobSettings(
        backend="s3",
        s3_endpoint="http://127.0.0.1:9000",
        s3_bucket="photos-bucket",
        s3_region="eu-west-1",
        s3_access_key=SecretStr("minio"),
        s3_secret_key=SecretStr("minio-secret"),
    )
    store = create_blob_store(Settings(blobs=blobs))
    assert isinstance(store, S3BlobStore) and isinstance(store, BlobStore)
    assert store.bucket == "photos-bucket"
    assert store._client.meta.region_name == "eu-west-1"
    assert "minio-secret" not in repr(store)
