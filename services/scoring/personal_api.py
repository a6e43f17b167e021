"""The scoring service's internal HTTP API for personalization (called by the upload service, never by browsers).

- GET /api/v1/personal?viewer=&photo_id=  per face of a scored photo: {index, personal_score, source, n_ratings,
  face_ratings[, crowd_score]} (face_ratings: how many other visitors' ratings of the face inform its item vector;
  crowd_score: what those visitors think, once there are enough of them: PersonalModel.crowd_score); faces withheld
  as minors stay withheld (no score of any kind, ARCHITECTURE.md principle 8).
- GET /api/v1/rate/next?viewer=&count=    pool faces for this rater (PersonalModel.next_faces): the most informative
  for their model, alternating with the least-rated faces so new photos warm up; never the viewer's own photos or
  faces they already rated.

Scoring owns every blob these read (results/, features/, ratepool/, personalize/), so no other service's state
is interpreted here.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from typing import Any

import numpy as np
from aiohttp import web
from pydantic import ValidationError

from libs.common import keys
from libs.common.blobs import BlobNotFound, BlobStoreUnavailable
from libs.common.documents import ResultDocument
from libs.common.ids import ID_PATTERN
from services.scoring.features_store import face_key
from services.scoring.ratings_consumer import PersonalizeStage, load_rater_state

PERSONAL_PATH = "/api/v1/personal"
RATE_NEXT_PATH = "/api/v1/rate/next"
MAX_COUNT = 20
MAX_CANDIDATES = 256  # faces scored per request; the picker is O(candidates · K²) per pick, K ≈ 9
PERSONAL_STAGE = web.AppKey("personal_stage", PersonalizeStage)
_ID = re.compile(ID_PATTERN)

routes = web.RouteTableDef()


def _error(status: int, code: str, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 503: web.HTTPServiceUnavailable}[status]
    return cls(text=json.dumps({"error": {"code": code, "message": message}}), content_type="application/json")


def _id_param(request: web.Request, name: str, *, required: bool) -> str | None:
    value = request.query.get(name)
    if not value:
        if required:
            raise _error(400, f"missing_{name}", f"{name} is required")
        return None
    if not _ID.fullmatch(value):
        raise _error(400, f"invalid_{name}", f"{name} is not a valid id")
    return value


async def _result(request: web.Request, photo_id: str) -> ResultDocument:
    blobs = request.app[PERSONAL_STAGE].features.blobs
    try:
        blob = await blobs.get(keys.result(photo_id))
        doc = ResultDocument.model_validate_json(blob.data)
    except BlobNotFound as exc:
        raise _error(404, "not_found", "no result for this photo") from exc
    except ValidationError as exc:
        raise _error(404, "not_found", "no readable result for this photo") from exc
    if doc.status != "done":
        raise _error(404, "not_found", "the photo has no scored faces")
    return doc


@routes.get(PERSONAL_PATH)
async def personal_scores(request: web.Request) -> web.Response:
    """Personal scores of one photo's faces for one viewer (the global score until the viewer has rated enough)."""
    stage = request.app[PERSONAL_STAGE]
    viewer = _id_param(request, "viewer", required=True)
    photo_id = _id_param(request, "photo_id", required=True)
    assert viewer is not None and photo_id is not None
    try:
        doc = await _result(request, photo_id)
        state = await load_rater_state(stage, viewer)
        faces: list[dict[str, Any]] = []
        for face in doc.faces:
            index = int(face["index"])
            global_score = face.get("attractiveness")
            if global_score is None or face.get("withheld_reason"):
                faces.append({"index": index, "withheld_reason": face.get("withheld_reason") or "withheld"})
                continue
            vector = await stage.features.load(photo_id, index)
            if vector is None:  # scored before personalization existed: the global score is all we have
                faces.append({"index": index, "personal_score": float(global_score), "source": "global",
                              "n_ratings": state.n_ratings})
                continue
            item = stage.model.current_item(await stage.items.load(photo_id, index), face_key(photo_id, index))
            score = stage.model.personal_score(state, vector, float(global_score), item)
            answer = {"index": index, "personal_score": round(score.score, 2), "source": score.source,
                      "n_ratings": score.n_ratings, "face_ratings": item.n_ratings}
            crowd = stage.model.crowd_score(vector, item)
            if crowd is not None:
                answer["crowd_score"] = round(crowd, 2)
            faces.append(answer)
    except BlobStoreUnavailable as exc:
        raise _error(503, "storage_unavailable", "storage is unavailable") from exc
    return web.json_response({"photo_id": photo_id, "viewer": viewer, "min_ratings": stage.model.min_ratings,
                              "faces": faces})


@routes.get(RATE_NEXT_PATH)
async def rate_next(request: web.Request) -> web.Response:
    """Faces to show this rater next, most informative first; an anonymous viewer gets the prior's picks."""
    stage = request.app[PERSONAL_STAGE]
    viewer = _id_param(request, "viewer", required=False)
    try:
        count = int(request.query.get("count", "5"))
    except ValueError as exc:
        raise _error(400, "invalid_count", "count must be an integer") from exc
    if not 1 <= count <= MAX_COUNT:
        raise _error(400, "invalid_count", f"count must be between 1 and {MAX_COUNT}")
    try:
        state = await load_rater_state(stage, viewer) if viewer else stage.model.new_state("anonymous")
        rated = state.rated_faces()
        entries = [e for e in await stage.pool.entries()
                   if e.rate_id is not None and (viewer is None or e.owner_visitor_id != viewer)]
        rate_ids = {e.photo_id: e.rate_id for e in entries}
        candidates = [
            (entry.photo_id, index)
            for entry in entries
            for index in entry.faces
            if face_key(entry.photo_id, index) not in rated
        ]
        if len(candidates) > MAX_CANDIDATES:
            candidates = random.sample(candidates, MAX_CANDIDATES)
        vectors = await asyncio.gather(*(stage.features.load(photo_id, index) for photo_id, index in candidates))
    except BlobStoreUnavailable as exc:
        raise _error(503, "storage_unavailable", "storage is unavailable") from exc
    usable = [(c, v) for c, v in zip(candidates, vectors, strict=True) if v is not None]
    if not usable:
        return web.json_response({"faces": []})
    try:
        stored = await asyncio.gather(*(stage.queue_items.load(photo_id, index) for (photo_id, index), _ in usable))
    except BlobStoreUnavailable as exc:
        raise _error(503, "storage_unavailable", "storage is unavailable") from exc
    items = [stage.model.current_item(item, face_key(*c)) for (c, _), item in zip(usable, stored, strict=True)]
    picks = stage.model.next_faces(state, np.stack([v for _, v in usable]), count, items)
    faces = [{"photo_id": usable[i][0][0], "rate_id": rate_ids[usable[i][0][0]], "face_index": usable[i][0][1]}
             for i in picks]  # the upload service shows raters the rate id only
    return web.json_response({"faces": faces})


def install_personal_api(app: web.Application, stage: PersonalizeStage) -> None:
    """Mount the routes with the stage they share with the ratings consumer."""
    app[PERSONAL_STAGE] = stage
    app.router.add_routes(routes)
