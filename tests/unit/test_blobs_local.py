"""LocalBlobStore details the shared contract cannot see: what lands on disk, and which thread does the I/O."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from libs.common.blobs import BlobStoreError, LocalBlobStore
from libs.common.blobs import local as local_module

pytestmark = pytest.mark.asyncio


async def test_root_and_directories_are_created_on_demand(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "not" / "yet")
    assert await store.list() == []
    await store.put("faces/p1/0", b"x", "image/jpeg")
    assert (tmp_path / "not" / "yet" / "faces" / "p1" / "0").is_file()


async def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    for n in range(5):
        await store.put("photos/p1", bytes([n]) * 100, "image/jpeg")
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["p1"]


async def test_deleting_prunes_empty_directories_so_no_ids_are_left_behind(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("faces/p1/0", b"x", "image/jpeg")
    await store.put("faces/p1/1", b"x", "image/jpeg")
    await store.put("faces/p2/0", b"x", "image/jpeg")
    assert await store.delete_prefix("faces/p1/") == 2
    assert not (tmp_path / "faces" / "p1").exists()
    await store.delete("faces/p2/0")
    assert not (tmp_path / "faces").exists()
    assert tmp_path.exists()


async def test_a_key_used_as_a_directory_cannot_also_be_a_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("faces/p1/0", b"x", "image/jpeg")
    with pytest.raises(BlobStoreError):
        await store.put("faces/p1", b"x", "image/jpeg")
    with pytest.raises(BlobStoreError):
        await store.put("faces/p1/0/deeper", b"x", "image/jpeg")


async def test_files_not_written_by_the_store_are_reported_not_misread(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "foreign").write_bytes(b"\xff\xd8\xff raw jpeg copied in by hand")
    with pytest.raises(BlobStoreError):
        await LocalBlobStore(tmp_path).get("photos/foreign")


async def test_file_io_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real_write = local_module._write_atomically

    def recording_write(path: Path, header: bytes, data: bytes) -> None:
        threads.append(threading.get_ident())
        real_write(path, header, data)

    monkeypatch.setattr(local_module, "_write_atomically", recording_write)
    await LocalBlobStore(tmp_path).put("photos/p1", b"x", "image/jpeg")
    assert threads and threading.get_ident() not in threads
