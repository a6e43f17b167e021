"""One BlobStore contract, run against every adapter: the local directory and S3 (moto's real HTTP server).

Services are written against the protocol, so any behaviour they may rely on is asserted here, once, for all backends.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import SecretStr

from libs.common.blobs import (
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    LocalBlobStore,
    S3BlobStore,
    create_blob_store,
)
from libs.common.settings import BlobSettings, Settings

pytestmark = pytest.mark.asyncio

CONCURRENT_WRITERS = 12  # enough overlapping writes to expose a non-atomic put on a 2-core CI box
RACE_PAYLOAD_BYTES = 256 * 1024  # big enough that a write spans many syscalls (a torn read would show)
# moto's server is not thread-safe when one key is overwritten while being read (it answers 500, "I/O operation on
# closed file"); botocore's standard retries absorb that, exactly as they absorb a real S3 500.
MOTO_MAX_ATTEMPTS = 6
MOTO_CREDENTIAL = SecretStr("testing")  # moto accepts any credentials; explicit ones keep ~/.aws out of the test

BAD_KEYS = [
    "",
    "/absolute",
    "..",
    "a/../b",
    "a/./b",
    "a//b",
    "trailing/",
    "back\\slash",
    "nul\x00byte",
    "new\nline",
    "del\x7fchar",
    ".hidden",
    "photos/.tmp-123",
    "x" * 1025,
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, shared by the module (each test gets its own bucket)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest_asyncio.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """A fresh, empty store of each kind, built through the real factory."""
    if request.param == "local":
        blobs = BlobSettings(backend="local", local_dir=tmp_path / "blobs")
    else:
        blobs = BlobSettings(
            backend="s3",
            s3_endpoint=request.getfixturevalue("moto_endpoint"),
            s3_bucket=f"contract-{uuid.uuid4().hex[:16]}",
            s3_access_key=MOTO_CREDENTIAL,
            s3_secret_key=MOTO_CREDENTIAL,
            s3_create_bucket=True,
            s3_max_attempts=MOTO_MAX_ATTEMPTS,
            s3_timeout_s=5.0,
        )
    blob_store = create_blob_store(Settings(blobs=blobs))
    assert isinstance(blob_store, LocalBlobStore if request.param == "local" else S3BlobStore)
    try:
        yield blob_store
    finally:
        await blob_store.close()


async def test_put_get_round_trips_data_and_content_type(store: BlobStore) -> None:
    await store.put("photos/p1", b"jpeg bytes", "image/jpeg")
    blob = await store.get("photos/p1")
    assert blob.data == b"jpeg bytes"
    assert blob.content_type == "image/jpeg"


async def test_content_type_is_kept_as_written_not_guessed(store: BlobStore) -> None:
    await store.put("faces/p1.json", b"{}", "application/vnd.howhot.faces+json; charset=utf-8")
    await store.put("cards/p1/card.png", b"not really a png", "text/plain")
    assert (await store.get("faces/p1.json")).content_type == "application/vnd.howhot.faces+json; charset=utf-8"
    assert (await store.get("cards/p1/card.png")).content_type == "text/plain"


async def test_default_content_type_is_octet_stream(store: BlobStore) -> None:
    await store.put("scores/p1", b"\x00")
    assert (await store.get("scores/p1")).content_type == "application/octet-stream"


async def test_overwrite_replaces_data_and_content_type(store: BlobStore) -> None:
    await store.put("photos/p1", b"first version, longer", "image/png")
    await store.put("photos/p1", b"second", "image/jpeg")
    blob = await store.get("photos/p1")
    assert (blob.data, blob.content_type) == (b"second", "image/jpeg")
    assert await store.list("photos/") == ["photos/p1"]


async def test_missing_key_raises_blob_not_found(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound) as caught:
        await store.get("photos/never-written")
    assert caught.value.key == "photos/never-written"
    assert isinstance(caught.value, BlobStoreError)
    assert await store.exists("photos/never-written") is False


async def test_exists_is_true_only_for_blobs_not_for_key_prefixes(store: BlobStore) -> None:
    await store.put("faces/p1/0", b"face", "image/jpeg")
    assert await store.exists("faces/p1/0") is True
    assert await store.exists("faces/p1") is False
    assert await store.exists("faces/p1/1") is False


async def test_delete_is_idempotent(store: BlobStore) -> None:
    await store.put("photos/p1", b"x", "image/jpeg")
    await store.delete("photos/p1")
    assert await store.exists("photos/p1") is False
    await store.delete("photos/p1")
    await store.delete("photos/never-written")
    with pytest.raises(BlobNotFound):
        await store.get("photos/p1")


async def test_delete_prefix_removes_only_matching_keys_and_counts_them(store: BlobStore) -> None:
    keys = ["faces/p1/0", "faces/p1/1", "faces/p1.json", "faces/p10/0", "photos/p1"]
    for key in keys:
        await store.put(key, key.encode(), "application/octet-stream")
    assert await store.delete_prefix("faces/p1/") == 2
    assert await store.list() == ["faces/p1.json", "faces/p10/0", "photos/p1"]
    assert await store.delete_prefix("faces/p1") == 2  # a string prefix, as in S3: also matches p1.json and p10/
    assert await store.list() == ["photos/p1"]
    assert await store.delete_prefix("faces/") == 0
    with pytest.raises(ValueError):
        await store.delete_prefix("")


async def test_list_returns_sorted_keys_by_string_prefix(store: BlobStore) -> None:
    keys = ["photos/b", "photos/a2", "photos/a1", "faces/a1/0", "faces/a1.json", "cards/a1/card.png"]
    await asyncio.gather(*(store.put(key, b"x", "application/octet-stream") for key in keys))
    assert await store.list() == sorted(keys)
    assert await store.list("photos/a") == ["photos/a1", "photos/a2"]
    assert await store.list("faces/a1") == ["faces/a1.json", "faces/a1/0"]
    assert await store.list("faces/a1/") == ["faces/a1/0"]
    assert await store.list("nothing/here/") == []
    assert await store.list("nothing") == []


async def test_bad_keys_are_rejected_by_every_method(store: BlobStore) -> None:
    for bad_key in BAD_KEYS:
        with pytest.raises(ValueError):
            await store.put(bad_key, b"x", "application/octet-stream")
        with pytest.raises(ValueError):
            await store.get(bad_key)
        with pytest.raises(ValueError):
            await store.exists(bad_key)
        with pytest.raises(ValueError):
            await store.delete(bad_key)
    assert await store.list() == []


async def test_bad_prefixes_are_rejected(store: BlobStore) -> None:
    for bad_prefix in ["/abs", "../", "a/../", "a\\b", "nul\x00"]:
        with pytest.raises(ValueError):
            await store.list(bad_prefix)
        with pytest.raises(ValueError):
            await store.delete_prefix(bad_prefix)


async def test_bad_content_types_are_rejected(store: BlobStore) -> None:
    for bad_type in ["", "image/jpeg\r\nX-Injected: 1", "bild/jpég", "x" * 300]:
        with pytest.raises(ValueError):
            await store.put("photos/p1", b"x", bad_type)
    assert await store.exists("photos/p1") is False


async def test_unicode_keys_round_trip(store: BlobStore) -> None:
    await store.put("cards/ünïcødé/çard 1.png", b"x", "image/png")
    assert await store.list("cards/") == ["cards/ünïcødé/çard 1.png"]
    assert (await store.get("cards/ünïcødé/çard 1.png")).data == b"x"


@pytest.mark.parametrize(
    "payload",
    [b"", bytes(range(256)) * 64, b"\x00" * 1000, b"HOWHOT-BLOB/1 text/plain\nlooks like a header"],
    ids=["empty", "all-byte-values", "nuls", "header-lookalike"],
)
async def test_binary_data_round_trips_exactly(store: BlobStore, payload: bytes) -> None:
    await store.put("scores/bin", payload, "application/octet-stream")
    assert (await store.get("scores/bin")).data == payload


async def test_concurrent_puts_to_distinct_keys_all_land(store: BlobStore) -> None:
    keys = [f"faces/p1/{n}" for n in range(CONCURRENT_WRITERS * 2)]
    await asyncio.gather(*(store.put(key, key.encode(), "image/jpeg") for key in keys))
    assert await store.list("faces/p1/") == sorted(keys)
    blobs = await asyncio.gather(*(store.get(key) for key in keys))
    assert [blob.data for blob in blobs] == [key.encode() for key in keys]


async def test_concurrent_puts_to_one_key_never_expose_a_torn_blob(store: BlobStore) -> None:
    """Readers racing writers must see one writer's complete data, paired with that same writer's content type."""

    def payload(writer: int) -> bytes:
        return bytes([writer]) * RACE_PAYLOAD_BYTES

    await store.put("photos/race", payload(0), "application/x-writer-0")
    writes = [store.put("photos/race", payload(n), f"application/x-writer-{n}") for n in range(1, CONCURRENT_WRITERS)]
    reads = [store.get("photos/race") for _ in range(CONCURRENT_WRITERS)]
    results = await asyncio.gather(*writes, *reads)
    for blob in results[len(writes) :]:
        writer = blob.data[0]
        assert blob.data == payload(writer)
        assert blob.content_type == f"application/x-writer-{writer}"
    final = await store.get("photos/race")
    assert final.data == payload(final.data[0])
    assert await store.list("photos/") == ["photos/race"]
