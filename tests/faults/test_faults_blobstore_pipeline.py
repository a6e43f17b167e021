"""Blob-store faults under the running pipeline: every service on S3 (HOWHOT_BLOBS_BACKEND=s3) through S3FaultProxy.

* a few 500s, stalls, dropped connections and cut bodies on the photo, chips and result → retried, the photo is done,
  and the status API never answers 500 or a partial document;
* an outage of the whole store for a while → the upload API answers 503 storage_unavailable with Retry-After, the
  stages back off and wait (they neither fail the photo nor dead-letter it), and the photo completes once S3 is back;
* a persistent fault on one photo's objects → after HOWHOT_BLOBS_GIVE_UP_AFTER_S the stage marks the photo failed
  with a readable reason, its event sits in the dead-letter topic, and replaying it once S3 is healthy finishes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from libs.cli.dlq import list_dead_letters, replay_dead_letters
from libs.cli.stack import LocalStack
from libs.common.polling import wait_for
from tests.faults.s3_fault_proxy import Fault, S3FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

GIVE_UP_AFTER_S = 15.0  # the stages' storage deadline in this stack: well past OUTAGE_S, short enough for CI
OUTAGE_S = 6.0  # a whole-store outage the pipeline must wait out
S3_TIMEOUT_S = 3.0  # per try; stalls (30 s) are far past it, a CPU-loaded moto answer is far below it
S3_MAX_ATTEMPTS = 3
PIPELINE_TIMEOUT_S = 240.0  # other suites may load the CPU; a photo normally takes seconds
POLL_S = 0.5
# Consumer backoff doubles from 0.2 s up to 10 s; a hot retry loop would make hundreds of requests in this time.
MAX_GETS_WHILE_FAILING = 60
TERMINAL = frozenset({"done", "no_face", "failed"})
STACK_SERVICES = ["upload", "face", "scoring", "share"]


@pytest.fixture(scope="module")
def s3_stack(
    stack_factory: Callable[..., LocalStack], module_fault_proxy: S3FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The pipeline services on S3 behind the fault proxy (each service is a child process with this environment)."""
    stack = stack_factory(
        tmp_path_factory.mktemp("howhot-s3-faults"),
        HOWHOT_BLOBS_BACKEND="s3",
        HOWHOT_BLOBS_S3_ENDPOINT=module_fault_proxy.endpoint,
        HOWHOT_BLOBS_S3_BUCKET="howhot-faults",
        HOWHOT_BLOBS_S3_ACCESS_KEY="testing",
        HOWHOT_BLOBS_S3_SECRET_KEY="testing",
        HOWHOT_BLOBS_S3_CREATE_BUCKET="true",
        HOWHOT_BLOBS_S3_MAX_ATTEMPTS=str(S3_MAX_ATTEMPTS),
        HOWHOT_BLOBS_S3_TIMEOUT_S=str(S3_TIMEOUT_S),
        HOWHOT_BLOBS_GIVE_UP_AFTER_S=str(GIVE_UP_AFTER_S),
    )
    stack.start(only=STACK_SERVICES, dashboard=False)
    try:
        yield stack
    finally:
        stack.stop()


class StatusWatch:
    """Polls a photo's status through the public API and keeps every answer, to judge all of them afterwards."""

    def __init__(self, status_url: str) -> None:
        self.status_url = status_url
        self.answers: list[tuple[int, dict, dict[str, str]]] = []

    def poll(self) -> str | None:
        response = requests.get(self.status_url, timeout=30)
        body = response.json()  # every answer must be complete JSON: a cut document would not parse
        self.answers.append((response.status_code, body, dict(response.headers)))
        return body.get("status") if response.status_code == 200 else None

    def until(self, statuses: frozenset[str], timeout_s: float = PIPELINE_TIMEOUT_S) -> dict:
        wait_for(lambda: self.poll() in statuses, timeout_s=timeout_s, interval_s=POLL_S)
        return self.answers[-1][1]

    def assert_never_a_server_error(self) -> None:
        for status, body, headers in self.answers:
            assert status in (200, 503), (status, body)
            if status == 503:
                assert body["error"]["code"] == "storage_unavailable", body
                assert int(headers["Retry-After"]) > 0


def upload(stack: LocalStack, jpeg: bytes) -> StatusWatch:
    response = requests.post(f"{stack.urls()['upload']}/api/v1/photos",
                             files={"photo": ("a.jpg", jpeg, "image/jpeg")}, timeout=60)
    assert response.status_code == 202, response.text
    return StatusWatch(response.json()["status_url"])


def photo_id_of(watch: StatusWatch) -> str:
    return watch.status_url.rstrip("/").rsplit("/", 1)[1]


def test_transient_blob_faults_are_retried_and_the_photo_is_done(
    s3_stack: LocalStack, fault_proxy: S3FaultProxy, astronaut_jpeg: bytes
) -> None:
    armed = [
        (2, Fault.ERROR_500, "GET", r"^photos/"),  # face reads the photo
        (1, Fault.DROP, "GET", r"^photos/"),
        (1, Fault.STALL, "PUT", r"^faces/.+\.png$"),  # face writes a chip
        (2, Fault.TRUNCATE, "GET", r"^faces/.+\.png$"),  # scoring reads it
        (1, Fault.ERROR_503, "PUT", r"^results/"),  # scoring writes the result
        (2, Fault.TRUNCATE, "GET", r"^results/"),  # the status API (or share) reads it
    ]
    for count, fault, method, key in armed:
        fault_proxy.fail_next(count, fault, method=method, key=key)
    watch = upload(s3_stack, astronaut_jpeg)
    body = watch.until(TERMINAL)
    assert body["status"] == "done", body
    assert body["faces"], body
    assert fault_proxy.pending() == 0, "some armed faults were never hit"
    watch.assert_never_a_server_error()


def test_a_storage_outage_is_waited_out_and_the_photo_completes(
    s3_stack: LocalStack, fault_proxy: S3FaultProxy, astronaut_jpeg: bytes
) -> None:
    # the face stage's read of the photo fails from the start, so the photo cannot finish before the outage begins
    # (the pipeline takes ~0.3 s: racing it with the upload's 202 would make this test depend on timing)
    fault_proxy.fail_always(Fault.ERROR_503, method="GET", key=r"^photos/")
    watch = upload(s3_stack, astronaut_jpeg)
    fault_proxy.fail_always(Fault.ERROR_503)
    outage_ends = time.monotonic() + OUTAGE_S
    while time.monotonic() < outage_ends:
        watch.poll()
        time.sleep(POLL_S)
    healed_at = time.monotonic()
    fault_proxy.heal()
    assert any(status == 503 for status, _, _ in watch.answers), "the status API did not notice the outage"
    body = watch.until(TERMINAL)
    assert body["status"] == "done", body  # waited out: not failed, not dead-lettered
    reads = [r for r in fault_proxy.log if r.method == "GET" and r.key.startswith("photos/") and r.fault is None]
    assert reads and reads[0].at >= healed_at, "the face stage must have waited for the store, not raced the outage"
    watch.assert_never_a_server_error()
    photo_id = photo_id_of(watch)
    letters = asyncio.run(list_dead_letters(s3_stack.settings.kafka))
    assert not [d for d in letters if photo_id.encode() in d.value], "an outage must not dead-letter the photo"


@pytest.mark.parametrize(
    ("stage", "failing_key", "dlq_source"),
    [("face", r"^photos/", "photo.uploaded"), ("scoring", r"^faces/.+\.png$", "faces.detected")],
)
def test_a_persistent_blob_fault_fails_the_photo_with_a_reason_and_keeps_the_message(
    s3_stack: LocalStack, fault_proxy: S3FaultProxy, astronaut_jpeg: bytes, stage: str, failing_key: str,
    dlq_source: str,
) -> None:
    fault_proxy.fail_always(Fault.ERROR_500, method="GET", key=failing_key)
    started = time.monotonic()
    watch = upload(s3_stack, astronaut_jpeg)
    body = watch.until(TERMINAL)
    failed_after_s = time.monotonic() - started
    assert body["status"] == "failed", body
    assert body["code"] == "storage_unavailable", body
    assert "storage" in body["reason"] and "upload it again" in body["reason"], body
    assert failed_after_s >= GIVE_UP_AFTER_S, f"gave up after {failed_after_s:.1f} s, before the deadline"
    gets = fault_proxy.requests(failing_key, method="GET")
    assert len(gets) <= MAX_GETS_WHILE_FAILING, f"{len(gets)} GETs: retried without backing off"
    assert len(gets) >= 2 * S3_MAX_ATTEMPTS, "the stage gave up without retrying"
    watch.assert_never_a_server_error()

    photo_id = photo_id_of(watch)
    kafka = s3_stack.settings.kafka

    def dead_lettered() -> list:
        letters = asyncio.run(list_dead_letters(kafka, dlq_source))
        return [d for d in letters if json.loads(d.value).get("photo_id") == photo_id]

    letter = wait_for(dead_lettered, timeout_s=60, interval_s=1)[0]
    assert "storage_unavailable" in letter.error

    fault_proxy.heal()  # S3 is healthy again: replaying the dead letter finishes the photo
    assert asyncio.run(replay_dead_letters(kafka, dlq_source)) >= 1
    body = watch.until(frozenset({"done"}))
    assert body["faces"], body

