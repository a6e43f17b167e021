"""S3BlobStore details the shared contract cannot see: client configuration, error mapping, threads."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from botocore.stub import Stubber
from pydantic import SecretStr

from libs.common.blobs import BlobNotFound, BlobStoreError, BlobStoreUnavailable, S3BlobStore
from libs.common.settings import BlobSettings

pytestmark = pytest.mark.asyncio

CREDENTIAL = SecretStr("testing")


def settings_for(endpoint: str, **overrides: Any) -> BlobSettings:
    values: dict[str, Any] = {
        "backend": "s3",
        "s3_endpoint": endpoint,
        "s3_bucket": "unit",
        "s3_access_key": CREDENTIAL,
        "s3_secret_key": CREDENTIAL,
        "s3_max_attempts": 1,
        "s3_timeout_s": 0.5,
    } | overrides
    return BlobSettings(**values)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens once the socket is closed


async def test_client_uses_path_style_standard_retries_and_timeouts_from_settings() -> None:
    store = S3BlobStore.from_settings(settings_for("http://127.0.0.1:9", s3_max_attempts=7, s3_timeout_s=3.5))
    config = store._client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 7}  # 7 tries in all, not 1 + 7 retries
    assert (config.connect_timeout, config.read_timeout) == (3.5, 3.5)
    assert config.s3["addressing_style"] == "path"
    assert store._client.meta.endpoint_url == "http://127.0.0.1:9"
    await store.close()


async def test_unreachable_endpoint_raises_blob_store_unavailable() -> None:
    store = S3BlobStore.from_settings(settings_for(f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(BlobStoreUnavailable):
        await store.put("photos/p1", b"x", "image/jpeg")
    with pytest.raises(BlobStoreUnavailable):
        await store.get("photos/p1")
    with pytest.raises(BlobStoreUnavailable):
        await store.list("photos/")
    await store.close()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, BlobNotFound),
        ("SlowDown", 503, BlobStoreUnavailable),
        ("InternalError", 500, BlobStoreUnavailable),
        ("NoSuchBucket", 404, BlobStoreUnavailable),
        ("AccessDenied", 403, BlobStoreError),
    ],
)
async def test_service_errors_map_to_blob_store_errors(code: str, status: int, expected: type[Exception]) -> None:
    store = S3BlobStore.from_settings(settings_for("http://127.0.0.1:9"))
    with Stubber(store._client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(expected) as caught:
            await store.get("photos/p1")
    assert type(caught.value) is expected or expected is BlobStoreError
    await store.close()


async def test_missing_object_on_head_means_exists_false() -> None:
    store = S3BlobStore.from_settings(settings_for("http://127.0.0.1:9"))
    with Stubber(store._client) as stub:
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        assert await store.exists("photos/p1") is False
    await store.close()


class RecordingClient:
    """Just enough of a boto3 S3 client to see which thread each call runs on."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.created: list[dict[str, Any]] = []

    def create_bucket(self, **kwargs: Any) -> None:
        self.created.append(kwargs)

    def put_object(self, **_: Any) -> None:
        self.threads.append(threading.get_ident())

    def close(self) -> None:
        pass


async def test_boto3_calls_run_off_the_event_loop_and_bucket_is_created_once() -> None:
    client = RecordingClient()
    store = S3BlobStore(client, "howhot", create_bucket=True, region="eu-central-1")
    for n in range(3):
        await store.put(f"photos/p{n}", b"x", "image/jpeg")
    assert threading.get_ident() not in client.threads
    assert client.created == [{"Bucket": "howhot", "CreateBucketConfiguration": {"LocationConstraint": "eu-central-1"}}]
    await store.close()
