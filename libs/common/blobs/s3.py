"""S3BlobStore: blobs as objects in one S3 bucket (AWS, MinIO, or moto in tests).

boto3 is synchronous, so every call runs in a worker thread (boto3 clients are thread-safe; sessions are not, which
is why the client is built once here). Retries and timeouts are botocore's own ("standard" mode), configured from
BlobSettings; whatever still fails after them is raised as :class:`BlobStoreUnavailable` for the caller's backoff.
S3 PUTs are atomic by nature: readers see the previous object or the new one. botocore's retries end once response
headers arrive, so a GET whose body is cut short or stalls is retried here, and its length is always verified:
a partial body is never returned.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

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

if TYPE_CHECKING:
    from libs.common.settings import BlobSettings

T = TypeVar("T")

DELETE_BATCH = 1000  # DeleteObjects accepts at most 1000 keys per request
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})  # HEAD answers a bare 404 with no error body
TRANSIENT_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException"}
)
EXISTING_BUCKET_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
DEFAULT_REGION = "us-east-1"  # the one region whose CreateBucket must NOT carry a LocationConstraint
DEFAULT_READ_ATTEMPTS = 4  # GETs whose body fails mid-stream, tried in all (BlobSettings.s3_max_attempts in services)
BODY_RETRY_BASE_S = 0.1  # full-jitter backoff between body retries, like botocore's standard mode (base × 2^n)
BODY_RETRY_MAX_S = 5.0
# A body that breaks off (connection reset, server gone), stalls past read_timeout, or ends before Content-Length.
BODY_ERRORS = (HTTPClientError, IncompleteReadError)


class S3BlobStore:
    """Blobs in ``bucket``; path-style addressing so MinIO and moto work without wildcard DNS."""

    def __init__(
        self, client: Any, bucket: str, *, create_bucket: bool = False, region: str = DEFAULT_REGION,
        read_attempts: int = DEFAULT_READ_ATTEMPTS,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self._read_attempts = max(1, read_attempts)
        self._region = region
        self._bucket_ready = not create_bucket
        self._bucket_lock = threading.Lock()  # a threading lock: the check runs in worker threads, not on the loop

    @classmethod
    def from_settings(cls, settings: BlobSettings) -> S3BlobStore:
        """Build the boto3 client from BlobSettings (endpoint, region, credentials, retries, timeouts)."""
        config = Config(
            region_name=settings.s3_region,
            # total_max_attempts counts the first try; botocore's "max_attempts" would count retries only
            retries={"mode": "standard", "total_max_attempts": settings.s3_max_attempts},
            connect_timeout=settings.s3_timeout_s,
            read_timeout=settings.s3_timeout_s,
            s3={"addressing_style": "path"},
            # boto3 >= 1.36 adds CRC checksums to every request; many S3-compatible servers reject them
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        client = session.client(
            "s3",
            endpoint_url=settings.s3_endpoint or None,
            aws_access_key_id=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
            aws_secret_access_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            config=config,
        )
        return cls(
            client, settings.s3_bucket, create_bucket=settings.s3_create_bucket, region=settings.s3_region,
            read_attempts=settings.s3_max_attempts,
        )

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r})"

    async def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """One PutObject: atomic on S3."""
        validate_key(key)
        validate_content_type(content_type)
        body = bytes(data)
        await self._call(
            key, lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        )

    async def get(self, key: str) -> Blob:
        """GetObject, reading the whole body in the worker thread (a stalled stream must not block the loop).

        The body is read through botocore's StreamingBody, which checks it against Content-Length (the raw stream
        that ``with response["Body"]`` yields does not translate errors); a body that fails is fetched again, up to
        ``read_attempts`` GETs in all, then :class:`BlobStoreUnavailable`.
        """
        validate_key(key)

        def fetch() -> Blob:
            for attempt in range(self._read_attempts):
                response = self._client.get_object(Bucket=self.bucket, Key=key)
                body = response["Body"]
                try:
                    data = body.read()
                except BODY_ERRORS as exc:
                    if attempt == self._read_attempts - 1:
                        raise BlobStoreUnavailable(f"S3 body of {key!r} failed {attempt + 1} times: {exc}") from exc
                    time.sleep(random.uniform(0, min(BODY_RETRY_MAX_S, BODY_RETRY_BASE_S * 2**attempt)))
                    continue
                finally:
                    body.close()
                return Blob(data=data, content_type=response.get("ContentType") or DEFAULT_CONTENT_TYPE)
            raise AssertionError("unreachable: the last attempt returns or raises")

        return await self._call(key, fetch)

    async def exists(self, key: str) -> bool:
        """HeadObject: true if the object exists."""
        validate_key(key)
        try:
            await self._call(key, lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        except BlobNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        """DeleteObject, which S3 already treats as idempotent."""
        validate_key(key)
        await self._call(key, lambda: self._client.delete_object(Bucket=self.bucket, Key=key))

    async def delete_prefix(self, prefix: str) -> int:
        """List then DeleteObjects in batches of 1000; refuses an empty prefix so one bug cannot wipe the bucket."""
        validate_prefix(prefix, allow_empty=False)

        def remove_all() -> int:
            removed = 0
            keys = list(self._iter_keys(prefix))
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
                if errors := response.get("Errors"):
                    failed = f"{len(errors)} objects under {prefix!r}: {errors[0]}"
                    raise BlobStoreUnavailable(f"S3 refused to delete {failed}")
                removed += len(batch)
            return removed

        return await self._call(prefix, remove_all)

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix`` (ListObjectsV2, all pages)."""
        validate_prefix(prefix)
        return await self._call(prefix, lambda: sorted(self._iter_keys(prefix)))

    async def close(self) -> None:
        """Close the client's connection pool."""
        await asyncio.to_thread(self._client.close)

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    async def _call(self, key: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread and translate botocore's errors into the BlobStore vocabulary."""

        def guarded() -> T:
            self._ensure_bucket()
            return fn()

        try:
            return await asyncio.to_thread(guarded)
        except ClientError as exc:
            raise _translate_client_error(exc, key) from exc
        except (BotoConnectionError, HTTPClientError) as exc:  # refused, DNS, timeouts, dropped streams
            raise BlobStoreUnavailable(f"S3 unreachable after retries ({type(exc).__name__}): {exc}") from exc

    def _ensure_bucket(self) -> None:
        """Create the bucket once, on first use, when settings ask for it (dev stacks, tests); runs in a thread."""
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self._region != DEFAULT_REGION:
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
            try:
                self._client.create_bucket(**kwargs)
            except ClientError as exc:
                if _error_code(exc) not in EXISTING_BUCKET_CODES:
                    raise
            self._bucket_ready = True


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate_client_error(exc: ClientError, key: str) -> BlobStoreError:
    code = _error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in NOT_FOUND_CODES:
        return BlobNotFound(key)
    if code in TRANSIENT_CODES or status >= 500:
        return BlobStoreUnavailable(f"S3 failed after retries: {code or status}")
    if code == "NoSuchBucket":
        return BlobStoreUnavailable(f"S3 bucket is missing (create it, or set HOWHOT_BLOBS_S3_CREATE_BUCKET): {exc}")
    return BlobStoreError(f"S3 refused the request for {key!r}: {code or status}: {exc}")
