"""LocalBlobStore: the embedded blob store, one file per key under a root directory.

Each file holds a one-line header with the writer's content type followed by the raw bytes, so data and type are
replaced together by a single ``os.replace`` (a sidecar file could be seen half-updated). Writes go to a temporary
file in the target directory, are fsynced, then renamed over the key: readers see the old blob or the new one. A
writer killed mid-put leaves its temporary file behind, never listed or read; deleting the key (or a prefix covering
it) removes such leftovers too, so a deleted photo's bytes do not linger in half-written files.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from libs.common.atomicfile import write_atomically
from libs.common.blobs.base import (
    DEFAULT_CONTENT_TYPE,
    Blob,
    BlobNotFound,
    BlobStoreError,
    BlobStoreUnavailable,
    validate_content_type,
    validate_key,
    validate_prefix,
)

FILE_MAGIC = b"HOWHOT-BLOB/1 "  # versioned header so the on-disk format can change without misreading old files
HEADER_END = b"\n"  # content types are validated printable ASCII, so a newline cannot occur inside one
TEMP_PREFIX = ".tmp-"  # keys never have segments starting with '.', so temp files cannot collide with blobs
TEMP_SUFFIX_CHARS = 33  # "-" + uuid4().hex after the key's file name
T = TypeVar("T")

PUT_ATTEMPTS = 3  # a concurrent delete may prune the directory between mkdir and write; retrying fixes that


class LocalBlobStore:
    """Blobs as files under ``root``; all file I/O runs in worker threads so the event loop never blocks."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    async def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Write atomically: temp file in the same directory, fsync, ``os.replace``, fsync the directory."""
        path = self._path(key)
        header = FILE_MAGIC + validate_content_type(content_type).encode("ascii") + HEADER_END
        await self._run(self._put_sync, path, header, bytes(data))

    async def get(self, key: str) -> Blob:
        """Read the blob; raise :class:`BlobNotFound` if the file is missing."""
        path = self._path(key)
        try:
            raw = await self._run(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(key) from None
        return _decode(key, raw)

    async def exists(self, key: str) -> bool:
        """Whether a blob file exists (directories created for longer keys do not count)."""
        path = self._path(key)
        return await self._run(path.is_file)

    async def delete(self, key: str) -> None:
        """Remove the file if present and prune directories left empty (they would leak ids of deleted photos)."""
        path = self._path(key)
        await self._run(self._delete_sync, path)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every blob under ``prefix``; refuses an empty prefix so one bug cannot wipe the store."""
        validate_prefix(prefix, allow_empty=False)
        keys = await self.list(prefix)
        await self._run(self._delete_many_sync, [self._path(key) for key in keys])
        await self._run(self._delete_orphans_sync, prefix)
        return len(keys)

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix``, walking only the directory the prefix is certainly inside."""
        validate_prefix(prefix)
        return await self._run(self._list_sync, prefix)

    async def close(self) -> None:
        """Nothing to release: files are opened and closed per call."""

    # -- helpers running in worker threads -------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise
        except OSError as exc:  # disk full, permissions, I/O errors: infrastructure, not the caller's input
            raise BlobStoreUnavailable(f"local blob store under {self.root}: {exc}") from exc

    def _put_sync(self, path: Path, header: bytes, data: bytes) -> None:
        for attempt in range(PUT_ATTEMPTS):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_atomically(path, header, data)
                return
            except FileNotFoundError:
                if attempt == PUT_ATTEMPTS - 1:
                    raise
            except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
                raise BlobStoreError(f"key {path} collides with another key used as a directory") from exc

    def _delete_sync(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()
        # a concurrent put of this key loses its temp file too; its os.replace fails and _put_sync writes again
        for orphan in path.parent.glob(f"{TEMP_PREFIX}{glob.escape(path.name)}-*"):
            with contextlib.suppress(OSError):
                orphan.unlink()
        self._prune_empty_dirs(path.parent)

    def _delete_orphans_sync(self, prefix: str) -> None:
        """Remove temp files left by killed writers of keys under ``prefix`` that never got a blob."""
        for _, temp in list(self._walk(prefix, temp_files=True)):
            with contextlib.suppress(OSError):
                temp.unlink()
            self._prune_empty_dirs(temp.parent)

    def _delete_many_sync(self, paths: list[Path]) -> None:
        for path in paths:
            self._delete_sync(path)

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (another blob or an in-flight write), or already gone
                return
            directory = directory.parent

    def _list_sync(self, prefix: str) -> list[str]:
        return sorted(key for key, _ in self._walk(prefix, temp_files=False))

    def _walk(self, prefix: str, *, temp_files: bool) -> Iterator[tuple[str, Path]]:
        """(key, file) for each blob under ``prefix`` or, with ``temp_files``, for each temp file (keyed by the key
        its writer was writing), walking only the directory the prefix is certainly inside."""
        base = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if temp_files != name.startswith(TEMP_PREFIX) or (not temp_files and name.startswith(".")):
                    continue
                key_name = name[len(TEMP_PREFIX) : -TEMP_SUFFIX_CHARS] if temp_files else name
                key = key_name if rel == "." else f"{rel}/{key_name}"
                if key.startswith(prefix):
                    yield key, Path(dirpath) / name


def _write_atomically(path: Path, header: bytes, data: bytes) -> None:
    write_atomically(path, (header, data), f"{TEMP_PREFIX}{path.name}-{uuid.uuid4().hex}")
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _decode(key: str, raw: bytes) -> Blob:
    if not raw.startswith(FILE_MAGIC):
        raise BlobStoreError(f"blob file for {key!r} has no Howhot header (written by something else?)")
    end = raw.find(HEADER_END, len(FILE_MAGIC))
    if end < 0:
        raise BlobStoreError(f"blob file for {key!r} has a damaged header")
    content_type = raw[len(FILE_MAGIC) : end].decode("ascii")
    return Blob(data=raw[end + 1 :], content_type=content_type)
