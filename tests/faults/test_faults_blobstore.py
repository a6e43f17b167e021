"""Blob-store faults injected on the wire (S3FaultProxy between boto3 and moto) and by killing a local writer.

* transient faults (500, 503, stalls past the read timeout, dropped connections, cut uploads, cut or stalled
  response bodies) are retried and the operation succeeds with exact bytes;
* retries are bounded by BlobSettings (s3_max_attempts tries, each limited by s3_timeout_s), then
  BlobStoreUnavailable (a TransientError the consumers wait out);
* nothing half-written is ever served: an interrupted PUT leaves the previous object or none, a cut GET never returns
  a prefix, readers racing faulty writers see whole versions only, and a local writer killed with -9 mid-put leaves
  the old blob or the new one (its temp file is never listed, and deleting the key removes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from libs.common.blobs import BlobStoreUnavailable, LocalBlobStore, S3BlobStore
from libs.common.settings import BlobSettings
from tests.faults.s3_fault_proxy import Fault, S3FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

CREDENTIAL = SecretStr("testing")  # moto accepts any credentials; explicit ones keep ~/.aws out of the test
ATTEMPTS = 4  # s3_max_attempts for these stores
TIMEOUT_S = 1.0  # s3_timeout_s: stalls (30 s) are far past it, moto's answers (ms) far below it
TRANSIENT_FAULTS = 2  # fewer than ATTEMPTS: must be absorbed
PAYLOAD = bytes(range(256)) * 400  # 100 KiB with every byte value: a prefix or a shifted copy cannot pass for it
WRITE_FAULTS = [Fault.ERROR_500, Fault.ERROR_503, Fault.STALL, Fault.DROP, Fault.CUT_REQUEST]
READ_FAULTS = [Fault.ERROR_500, Fault.ERROR_503, Fault.STALL, Fault.DROP, Fault.TRUNCATE, Fault.STALL_BODY]
RACE_ROUNDS = 40
RACE_FAULT_FRACTION = 0.3


def s3_store(proxy: S3FaultProxy, **overrides: Any) -> S3BlobStore:
    values: dict[str, Any] = {
        "backend": "s3", "s3_endpoint": proxy.endpoint, "s3_bucket": f"faults-{uuid.uuid4().hex[:16]}",
        "s3_access_key": CREDENTIAL, "s3_secret_key": CREDENTIAL, "s3_create_bucket": True,
        "s3_max_attempts": ATTEMPTS, "s3_timeout_s": TIMEOUT_S,
    } | overrides
    return S3BlobStore.from_settings(BlobSettings(**values))


@pytest_asyncio.fixture
async def store(fault_proxy: S3FaultProxy) -> AsyncIterator[S3BlobStore]:
    """An S3BlobStore talking to moto through the proxy, its bucket created before any fault is armed."""
    blob_store = s3_store(fault_proxy)
    await blob_store.list()
    yield blob_store
    await blob_store.close()


@pytest.mark.parametrize("fault", WRITE_FAULTS, ids=str)
async def test_transient_write_faults_are_retried_and_the_put_lands(
    fault: Fault, store: S3BlobStore, fault_proxy: S3FaultProxy
) -> None:
    fault_proxy.fail_next(TRANSIENT_FAULTS, fault, method="PUT", key="^photos/p1$")
    await store.put("photos/p1", PAYLOAD, "image/jpeg")
    assert fault_proxy.pending() == 0
    assert fault_proxy.faults("^photos/p1$")[fault] == TRANSIENT_FAULTS
    blob = await store.get("photos/p1")
    assert (blob.data, blob.content_type) == (PAYLOAD, "image/jpeg")


@pytest.mark.parametrize("fault", READ_FAULTS, ids=str)
async def test_transient_read_faults_are_retried_and_the_get_returns_every_byte(
    fault: Fault, store: S3BlobStore, fault_proxy: S3FaultProxy
) -> None:
    await store.put("results/p1.json", PAYLOAD, "application/json")
    fault_proxy.fail_next(TRANSIENT_FAULTS, fault, method="GET", key="^results/p1.json$")
    blob = await store.get("results/p1.json")
    assert fault_proxy.pending() == 0
    assert blob.data == PAYLOAD
    assert blob.content_type == "application/json"


@pytest.mark.parametrize("fault", [Fault.ERROR_500, Fault.DROP, Fault.TRUNCATE], ids=str)
async def test_persistent_faults_stop_after_s3_max_attempts_with_blob_store_unavailable(
    fault: Fault, fault_proxy: S3FaultProxy
) -> None:
    attempts = 3
    blob_store = s3_store(fault_proxy, s3_max_attempts=attempts)
    await blob_store.put("photos/p1", PAYLOAD, "image/jpeg")
    fault_proxy.fail_always(fault, method="GET", key="^photos/p1$")
    try:
        with pytest.raises(BlobStoreUnavailable):
            await blob_store.get("photos/p1")
        assert len(fault_proxy.requests("^photos/p1$", method="GET")) == attempts  # bounded, and every try was made
    finally:
        await blob_store.close()


async def test_each_try_is_cut_off_by_s3_timeout_s(fault_proxy: S3FaultProxy) -> None:
    """Stalls far beyond the timeout: the call fails after about attempts × timeout, not after the stall."""
    attempts, timeout_s = 2, 0.5
    blob_store = s3_store(fault_proxy, s3_max_attempts=attempts, s3_timeout_s=timeout_s)
    await blob_store.list()
    fault_proxy.fail_always(Fault.STALL, method="HEAD", key="^photos/p1$")
    started = time.monotonic()
    try:
        with pytest.raises(BlobStoreUnavailable):
            await blob_store.exists("photos/p1")
    finally:
        await blob_store.close()
    elapsed = time.monotonic() - started
    assert attempts * timeout_s <= elapsed < 10 * attempts * timeout_s, elapsed
    assert len(fault_proxy.requests("^photos/p1$", method="HEAD")) == attempts


async def test_an_interrupted_overwrite_leaves_the_previous_object_whole(
    store: S3BlobStore, fault_proxy: S3FaultProxy
) -> None:
    old = b"previous version " * 1000
    await store.put("results/p1.json", old, "application/json")
    for fault in (Fault.CUT_REQUEST, Fault.DROP):
        fault_proxy.fail_always(fault, method="PUT", key="^results/")
        with pytest.raises(BlobStoreUnavailable):
            await store.put("results/p1.json", PAYLOAD, "application/json")
        with pytest.raises(BlobStoreUnavailable):
            await store.put("results/p2.json", PAYLOAD, "application/json")
        fault_proxy.heal()
        assert (await store.get("results/p1.json")).data == old
        assert await store.exists("results/p2.json") is False
    assert fault_proxy.faults("^results/")[Fault.CUT_REQUEST] == 2 * ATTEMPTS  # the cut bodies did reach moto


@pytest.mark.parametrize("fault", [Fault.TRUNCATE, Fault.STALL_BODY], ids=str)
async def test_a_body_cut_short_on_every_try_is_an_error_never_a_prefix(
    fault: Fault, fault_proxy: S3FaultProxy
) -> None:
    blob_store = s3_store(fault_proxy, s3_max_attempts=2, s3_timeout_s=0.5)
    await blob_store.put("cards/p1/og.png", PAYLOAD, "image/png")
    fault_proxy.fail_always(fault, method="GET", key="^cards/")
    try:
        with pytest.raises(BlobStoreUnavailable):
            await blob_store.get("cards/p1/og.png")
    finally:
        await blob_store.close()


async def test_readers_racing_faulty_writers_only_ever_see_whole_versions(
    store: S3BlobStore, fault_proxy: S3FaultProxy
) -> None:
    versions = {n: bytes([n]) * len(PAYLOAD) for n in range(4)}
    await store.put("results/race.json", versions[0], "application/x-v0")
    for fault in (Fault.CUT_REQUEST, Fault.TRUNCATE, Fault.ERROR_500):
        fault_proxy.fail_fraction(RACE_FAULT_FRACTION, fault, key="^results/race")

    async def write(n: int) -> None:
        with contextlib.suppress(BlobStoreUnavailable):  # a put may fail for good; readers are what matters
            await store.put("results/race.json", versions[n], f"application/x-v{n}")

    async def read() -> tuple[bytes, str] | None:
        try:
            blob = await store.get("results/race.json")
        except BlobStoreUnavailable:
            return None
        return blob.data, blob.content_type

    seen = []
    for round_ in range(RACE_ROUNDS):
        results = await asyncio.gather(write(1 + round_ % 3), read(), read())
        seen += [r for r in results[1:] if r is not None]
    assert sum(fault_proxy.faults("^results/race").values()) > RACE_ROUNDS // 2  # faults really were in the way
    assert seen, "no read ever succeeded"
    for data, content_type in seen:
        version = data[0]
        assert data == versions[version], "a read returned a torn or partial object"
        assert content_type == f"application/x-v{version}"


# -- the local store: a writer killed mid-put ---------------------------------------------------------------------

LOCAL_BLOB_BYTES = 8 * 1024 * 1024  # big enough that a kill lands inside a write most of the time
KILL_AFTER_S = (0.3, 0.6, 0.9)
WRITER = """
import asyncio, sys
from libs.common.blobs import LocalBlobStore

async def main() -> None:
    store = LocalBlobStore(sys.argv[1])
    size, new_keys = int(sys.argv[2]), sys.argv[3] == "new"
    print("writing", flush=True)
    for n in range(1, 1_000_000):
        version = n % 250 or 1
        key = f"faces/p1/{n}.png" if new_keys else "results/p1.json"
        await store.put(key, bytes([version]) * size, f"application/x-v{version}")

asyncio.run(main())
"""


async def kill_writer_mid_put(root: Path, mode: str, kill_after_s: float) -> None:
    """Run WRITER in a child process and kill -9 it after ``kill_after_s``, most likely inside a write."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(LOCAL_BLOB_BYTES), mode], stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"writing\n"
        await asyncio.sleep(kill_after_s)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()


def assert_whole(data: bytes, content_type: str) -> None:
    version = data[0]
    assert data == bytes([version]) * LOCAL_BLOB_BYTES, "a torn or partial blob was served"
    assert content_type == f"application/x-v{version}"


@pytest.mark.parametrize("kill_after_s", KILL_AFTER_S)
async def test_a_local_overwrite_killed_mid_put_leaves_a_whole_blob(tmp_path: Path, kill_after_s: float) -> None:
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    await store.put("results/p1.json", bytes([0]) * LOCAL_BLOB_BYTES, "application/x-v0")
    await kill_writer_mid_put(root, "overwrite", kill_after_s)
    blob = await store.get("results/p1.json")
    assert_whole(blob.data, blob.content_type)
    assert await store.list() == ["results/p1.json"]  # a torn temp file is never listed as a blob
    await store.delete("results/p1.json")
    assert not any(root.rglob("*")), "deleting the key left the killed writer's temp file behind"


@pytest.mark.parametrize("kill_after_s", KILL_AFTER_S)
async def test_local_new_keys_killed_mid_put_are_whole_or_absent(tmp_path: Path, kill_after_s: float) -> None:
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    await kill_writer_mid_put(root, "new", kill_after_s)
    keys = await store.list("faces/p1/")
    for key in keys:
        blob = await store.get(key)
        assert_whole(blob.data, blob.content_type)
    assert await store.delete_prefix("faces/p1/") == len(keys)
    assert not any(root.rglob("*")), "deleting the prefix left a killed writer's temp file behind"
