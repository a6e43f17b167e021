"""Fuzz the public API against its own OpenAPI document with schemathesis, through the live local stack.

Hand-written documents drift from the code; generated requests (valid and deliberately invalid: wrong types,
malformed ids, missing headers, odd multipart bodies, hostile strings) find the inputs nobody wrote a test for. Every
answer must be a documented status with a body matching its schema, and never a 5xx. The document fuzzed is the one
the service serves (a test below pins the two together), so a drifting spec fails here rather than in a client.

Bugs it found are pinned as plain examples at the end: a JSON object where a string belongs made ``in`` on a frozenset
raise (a 500) in the share channel and the rating scale, and a 400-digit integer rating overflowed ``math.isfinite``.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from libs.cli.stack import LocalStack
from services.upload.openapi import OPENAPI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_EXAMPLES = 50  # per operation: ~10 operations, a few ms per request, keep the module well under a minute
REQUEST_TIMEOUT_S = 30.0  # generous: other suites may load the CPU while the stack answers
CHECKS = [
    not_a_server_error,  # no 5xx, ever: bad input is the client's problem and must say so with a 4xx
    status_code_conformance,  # only statuses the document lists
    content_type_conformance,  # the documented media type (JSON errors, image/jpeg, image/png)
    response_schema_conformance,  # bodies match their schemas (Error, PhotoStatus, Accepted, …)
    response_headers_conformance,  # documented headers (Retry-After, Location) have the documented shape
    negative_data_rejection,  # requests that violate the document are refused with a 4xx, not accepted
]

schema = schemathesis.openapi.from_dict(OPENAPI)


def test_served_document_is_the_one_fuzzed(stack: LocalStack) -> None:
    served = requests.get(f"{stack.urls()['upload']}/api/v1/openapi.json", timeout=REQUEST_TIMEOUT_S)
    assert served.status_code == 200
    assert served.json() == OPENAPI


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # latency is not what this test judges; the stack shares the CPU with other suites
    derandomize=True,  # the same examples every run: a failure here reproduces
    database=None,  # derandomized runs need no example database (and leave no .hypothesis/ in the checkout)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_answers_every_generated_request_as_documented(case: schemathesis.Case, stack: LocalStack) -> None:
    case.call_and_validate(base_url=stack.urls()["upload"], checks=CHECKS, timeout=REQUEST_TIMEOUT_S)


SOME_ID = "0" * 16  # well-formed, names no photo
HUGE_INT = "1" + "0" * 400  # valid JSON, beyond float range


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (f"/api/v1/photos/{SOME_ID}/share", '{"channel": {}}', "invalid_channel"),
        (f"/api/v1/photos/{SOME_ID}/share", '{"channel": ["x"]}', "invalid_channel"),
        ("/api/v1/ratings", f'{{"photo_id": "{SOME_ID}", "face_index": 0, "scale": {{}}, "rating": 0}}',
         "invalid_scale"),
        ("/api/v1/ratings", f'{{"photo_id": "{SOME_ID}", "face_index": 0, "scale": "1to10", "rating": {HUGE_INT}}}',
         "invalid_rating"),
    ],
    ids=["share-channel-object", "share-channel-array", "rating-scale-object", "rating-huge-int"],
)
def test_inputs_the_fuzzer_found_are_refused_with_400(stack: LocalStack, path: str, body: str, code: str) -> None:
    response = requests.post(
        f"{stack.urls()['upload']}{path}", data=body, timeout=REQUEST_TIMEOUT_S,
        headers={"Content-Type": "application/json", "X-Delete-Token": "t"}, cookies={"hh_vid": SOME_ID},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
