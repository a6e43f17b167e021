"""Blob storage for every stage: a local directory (embedded) or an S3 bucket, behind one async BlobStore port.

Composition roots call :func:`create_blob_store` once and close the store on shutdown; handlers only see the
:class:`BlobStore` protocol.
"""

from __future__ import annotations

from libs.common.blobs.base import (
    DEFAULT_CONTENT_TYPE,
    Blob,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    BlobStoreUnavailable,
    validate_key,
    validate_prefix,
)
from libs.common.blobs.giveup import StorageGiveUp
from libs.common.blobs.local import LocalBlobStore
from libs.common.blobs.s3 import S3BlobStore
from libs.common.settings import Settings


def create_blob_store(settings: Settings) -> BlobStore:
    """The store chosen by ``settings.blobs.backend``; builds clients but performs no I/O until first use."""
    backend = settings.blobs.backend
    if backend == "local":
        return LocalBlobStore(settings.blob_dir)
    if backend == "s3":
        return S3BlobStore.from_settings(settings.blobs)
    raise ValueError(f"unknown blob backend {backend!r} (expected 'local' or 's3')")


__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "Blob",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreError",
    "BlobStoreUnavailable",
    "LocalBlobStore",
    "S3BlobStore",
    "StorageGiveUp",
    "create_blob_store",
    "validate_key",
    "validate_prefix",
]
