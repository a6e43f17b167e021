"""The BlobStore port: what every stage may assume about where bulk bytes live.

Events carry keys, blobs carry bytes (ARCHITECTURE.md, principle 3). Every adapter keeps the same promises, proven by
one shared contract suite (tests/contract/test_blobstore_contract.py): a put is atomic (readers see the old bytes or
the new bytes, never a mix), the writer's content type comes back with the data, deletes are idempotent, and keys are
validated identically everywhere so a key that works locally also works on S3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from libs.common.errors import TransientError

MAX_KEY_BYTES = 1024  # S3's limit on an object key; enforced everywhere so local and S3 accept the same keys
MAX_CONTENT_TYPE_CHARS = 255  # RFC 6838 caps type/subtype at 127 chars each; anything longer is garbage
DEFAULT_CONTENT_TYPE = "application/octet-stream"  # what HTTP assumes for bytes of unknown type


class BlobStoreError(Exception):
    """Base of every blob-store failure, so callers never need to know which adapter raised it."""


class BlobNotFound(BlobStoreError, LookupError):
    """No blob under this key: a permanent answer, never worth retrying."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob under key {key!r}")
        self.key = key


class BlobStoreUnavailable(BlobStoreError, TransientError):
    """The store could not be reached or failed even after the adapter's own retries: transient, retry later."""


@dataclass(frozen=True)
class Blob:
    """The bytes of one blob and the content type its writer declared."""

    data: bytes = field(repr=False)
    content_type: str


@runtime_checkable
class BlobStore(Protocol):
    """Async key → bytes storage shared by every service (a local directory or an S3 bucket).

    All methods validate keys with :func:`validate_key` and raise ``ValueError`` for bad ones.
    """

    async def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous blob."""
        ...

    async def get(self, key: str) -> Blob:
        """Return the blob under ``key``; raise :class:`BlobNotFound` if there is none."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob under ``key``; deleting a missing key is not an error (handlers may run twice)."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose key starts with ``prefix`` (non-empty) and return how many were removed."""
        ...

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a plain string prefix, as in S3, not a directory)."""
        ...

    async def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``ValueError``.

    Keys become file paths in the local store, so anything that could escape the root or mean different things on
    different backends is refused: empty or absolute keys, empty, ``.`` or ``..`` segments, segments starting with
    ``.`` (reserved for the local store's temporary files), backslashes, NUL and other unprintable characters.
    """
    _validate_text(key, what="key")
    if key.endswith("/"):
        raise ValueError(f"blob key must not end with '/': {key!r}")
    return key


def validate_prefix(prefix: str, *, allow_empty: bool = True) -> str:
    """Return ``prefix`` if every complete segment is a valid key segment; a trailing ``/`` is allowed."""
    if not prefix:
        if allow_empty:
            return prefix
        raise ValueError("an empty prefix would match every blob")
    _validate_text(prefix.removesuffix("/"), what="prefix")
    return prefix


def validate_content_type(content_type: str) -> str:
    """Return ``content_type`` if it is a short printable ASCII string (it ends up in an HTTP header)."""
    if (
        not content_type
        or len(content_type) > MAX_CONTENT_TYPE_CHARS
        or not content_type.isascii()
        or not content_type.isprintable()
    ):
        raise ValueError(f"invalid content type: {content_type!r}")
    return content_type


def _validate_text(key: str, *, what: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"blob {what} must be a non-empty string: {key!r}")
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"blob {what} is longer than {MAX_KEY_BYTES} bytes")
    if not key.isprintable() or "\\" in key:
        raise ValueError(f"blob {what} has unprintable characters or a backslash: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"blob {what} must be relative: {key!r}")
    for segment in key.split("/"):
        if not segment or segment.startswith("."):
            raise ValueError(f"blob {what} has an empty segment or one starting with '.': {key!r}")
