"""The hand-written OpenAPI 3.1 description of the public API, served at /api/v1/openapi.json.

Written by hand (not generated) so it says what we promise, including every error code; a unit test checks that
each route the app serves under /api/v1 appears here with its method.
"""

from __future__ import annotations

from typing import Any

ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$", "description": "Unguessable id (≥ 96 random bits)."}
JSON = "application/json"


def _error(description: str, codes: list[str], *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


_STATUS = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/PhotoStatus"}}}}
_PHOTO_ID_PARAM = {"name": "photo_id", "in": "path", "required": True, "schema": ID_SCHEMA}
_SERVER_ERROR = _error("Unexpected server error (a bug; it is logged).", ["internal_error"])
_UNAVAILABLE = _error(
    "A backend is down or the service is shedding load; nothing was changed, retry after Retry-After seconds.",
    ["broker_unavailable", "storage_unavailable", "overloaded"],
    retry_after=True,
)
_SHARED = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Shared"}}}}
_NOT_FOUND = _error("No photo with this id (malformed ids included).", ["not_found"])

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Howhot upload API",
        "version": "1.0.0",
        "description": "Upload a face photo, follow its processing, delete it. Every error has the Error shape.",
    },
    "paths": {
        "/api/v1/photos": {
            "post": {
                "operationId": "uploadPhoto",
                "summary": "Upload a photo (JPEG, PNG or WebP); processing continues asynchronously.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["photo"],
                                "properties": {
                                    "photo": {"type": "string", "contentMediaType": "application/octet-stream",
                                              "description": "Exactly one image file; its filename is ignored."},
                                    "rateable": {"type": "string", "enum": ["true", "false", "1", "0", "on", "off",
                                                                            "yes", "no"], "default": "false",
                                                 "description": "The owner opts in to being rated by others."},
                                    "store": {"type": "string", "enum": ["true", "false", "1", "0", "on", "off",
                                                                         "yes", "no"], "default": "true",
                                              "description": "false: don't keep my photo once it is scored."},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "Accepted: stored and queued for processing. Keep the delete token: it is "
                        "shown only once.",
                        "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Accepted"}}},
                    },
                    "400": _error(
                        "The form is malformed.",
                        [
                            "empty", "missing_photo", "too_many_files", "unexpected_file", "duplicate_field",
                            "invalid_field", "invalid_encoding", "too_many_parts", "malformed_multipart",
                            "incomplete_body", "invalid_body",
                        ],
                    ),
                    "408": _error("The body did not arrive within the upload deadline (30 s by default); nothing "
                                  "was stored.", ["body_timeout"]),
                    "413": _error("The upload or the image is too big.", ["too_large", "too_many_pixels"]),
                    "415": _error(
                        "Not a multipart form, or not a decodable JPEG/PNG/WebP.",
                        ["not_multipart", "unsupported_type", "undecodable"],
                    ),
                    "429": _error(
                        "Too many uploads from this visitor or address; retry after Retry-After seconds.",
                        ["rate_limited"], retry_after=True,
                    ),
                    "500": _SERVER_ERROR,
                    "503": _error(
                        "The pipeline's backlog is over the limit or a backend is down; nothing was stored. "
                        "Retry after Retry-After seconds.",
                        ["busy", "broker_unavailable", "storage_unavailable", "overloaded"], retry_after=True,
                    ),
                },
            }
        },
        "/api/v1/photos/{photo_id}": {
            "parameters": [_PHOTO_ID_PARAM],
            "get": {
                "operationId": "getPhotoStatus",
                "summary": "The photo's processing status and, when done, its result.",
                "parameters": [
                    {"name": "viewer", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "Reserved for personalization; accepted and ignored for now."}
                ],
                "responses": {
                    "200": {"description": "Status: processing, faces_found, no_face, done or failed.", **_STATUS},
                    "404": _NOT_FOUND,
                    "410": {"description": "The photo was deleted (status: deleted).", **_STATUS},
                    "500": _SERVER_ERROR,
                    "503": _UNAVAILABLE,
                },
            },
            "delete": {
                "operationId": "deletePhoto",
                "summary": "Delete the photo and everything derived from it.",
                "parameters": [
                    {"name": "X-Delete-Token", "in": "header", "required": True, "schema": {"type": "string"},
                     "description": "The delete_token returned by the upload."}
                ],
                "responses": {
                    "200": {"description": "Deleted now.", **_STATUS},
                    "403": _error("Missing or wrong delete token.", ["missing_delete_token", "invalid_delete_token"]),
                    "404": _NOT_FOUND,
                    "410": {"description": "Already deleted (a repeated DELETE; no token check is possible).",
                            **_STATUS},
                    "500": _SERVER_ERROR,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/v1/photos/{photo_id}/share": {
            "parameters": [_PHOTO_ID_PARAM],
            "post": {
                "operationId": "sharePhoto",
                "summary": "Make the result public at /s/{share_id} (owner only); idempotent.",
                "description": "The share id is allocated at upload (so cards carry the final URL) but the share page "
                "exists only after this call. Every call publishes photo.shared with its channel (each press of a "
                "share button is counted); the share record is written once.",
                "parameters": [
                    {"name": "X-Delete-Token", "in": "header", "required": True, "schema": {"type": "string"},
                     "description": "The delete_token returned by the upload proves ownership."}
                ],
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/ShareRequest"}}},
                },
                "responses": {
                    "201": {"description": "Shared now.", **_SHARED},
                    "200": {"description": "Already shared; the same share id.", **_SHARED},
                    "400": _error("The body is not a JSON object (or fails its Content-Encoding), or the channel "
                                  "is unknown.", ["invalid_json", "invalid_channel", "invalid_body"]),
                    "403": _error("Missing or wrong delete token.", ["missing_delete_token", "invalid_delete_token"]),
                    "404": _NOT_FOUND,
                    "409": _error("The result is not done yet (or the photo has no share id).", ["not_ready"]),
                    "410": _error("The photo was deleted.", ["gone"]),
                    "500": _SERVER_ERROR,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/v1/photos/{photo_id}/image": {
            "parameters": [_PHOTO_ID_PARAM],
            "get": {
                "operationId": "getPhotoImage",
                "summary": "The stored, normalized photo (JPEG, no metadata); Cache-Control: private.",
                "responses": {
                    "200": {"description": "The JPEG.", "content": {"image/jpeg": {"schema": {}}}},
                    "404": _NOT_FOUND,
                    "410": _error("Deleted by its owner, or not kept after scoring at the owner's request.",
                                  ["gone", "not_kept"]),
                    "500": _SERVER_ERROR,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {JSON: {"schema": {}}}}},
            }
        },
    },
    "components": {
        "headers": {
            "RetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "description": "Stable, machine-readable."},
                            "message": {"type": "string", "description": "Plain words for the user."},
                        },
                    }
                },
            },
            "Accepted": {
                "type": "object",
                "required": ["photo_id", "status_url", "delete_token", "trace_id"],
                "properties": {
                    "photo_id": ID_SCHEMA,
                    "status_url": {"type": "string", "format": "uri"},
                    "delete_token": {"type": "string", "description": "Shown once; only its hash is stored."},
                    "trace_id": {"type": "string", "description": "Quote it when reporting a problem."},
                },
            },
            "ShareRequest": {
                "type": "object",
                "properties": {
                    "channel": {"enum": ["x", "facebook", "whatsapp", "copy", "download", "native"],
                                "description": "Where the owner is sharing (analytics only)."},
                },
            },
            "Shared": {
                "type": "object",
                "required": ["share_id", "share_url", "card_urls", "cards_ready"],
                "properties": {
                    "share_id": ID_SCHEMA,
                    "share_url": {"type": "string", "format": "uri", "description": "public_base_url + /s/{share_id}"},
                    "card_urls": {
                        "type": "object",
                        "required": ["og", "square", "story"],
                        "properties": {fmt: {"type": "string", "format": "uri"} for fmt in ("og", "square", "story")},
                        "description": "PNG cards: og 1200×630, square 1080×1080, story 1080×1920.",
                    },
                    "cards_ready": {"type": "boolean", "description": "Whether the og card is rendered yet."},
                },
            },
            "PhotoStatus": {
                "type": "object",
                "required": ["photo_id", "status"],
                "properties": {
                    "photo_id": ID_SCHEMA,
                    "status": {"enum": ["processing", "faces_found", "no_face", "done", "failed", "deleted"]},
                    "face_count": {"type": "integer", "description": "faces_found: faces waiting for scoring."},
                    "faces": {"type": "array", "items": {"type": "object"}, "description": "done: per-face results."},
                    "model_versions": {"type": "object", "additionalProperties": {"type": "string"}},
                    "scored_at": {"type": ["string", "null"], "format": "date-time"},
                    "reason": {"type": "string", "description": "failed: plain words for the user."},
                    "code": {"type": "string", "description": "failed: machine-readable cause."},
                },
            },
        },
    },
}

# --- Rate others and personal scores (services/upload/routes_ratings.py) --------------------------------------------
# Kept in one block appended here so the rating endpoints read as one feature.
_VISITOR_COOKIE = {"name": "hh_vid", "in": "cookie", "required": True, "schema": ID_SCHEMA,
                   "description": "The visitor id the website sets; ratings are per visitor."}
_RATING_PATHS: dict[str, Any] = {
    "/api/v1/ratings": {
        "post": {
            "operationId": "submitRating",
            "summary": "Rate another visitor's face (its owner opted in); teaches the personal model your taste.",
            "parameters": [_VISITOR_COOKIE],
            "requestBody": {"required": True, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Rating"}}}},
            "responses": {
                "202": {"description": "Accepted: rating.submitted is on the bus; rating a face twice counts once.",
                        "content": {JSON: {"schema": {"type": "object", "properties": {
                            "status": {"const": "accepted"}, "event_id": {"type": "string"}}}}}},
                "400": _error("Malformed rating or no visitor cookie.", [
                    "invalid_json", "invalid_face", "invalid_rate_id", "invalid_photo_id", "invalid_face_index",
                    "invalid_scale", "invalid_rating", "invalid_rater_photo_id", "missing_visitor", "invalid_body"]),
                "403": _error("This face may not be rated: the owner did not opt in, it is your own photo, or the "
                              "face was withheld (probable minor); or rater_photo_id is someone else's photo.",
                              ["not_rateable", "own_photo", "face_withheld", "not_your_photo"]),
                "404": _error("No such photo or face.", ["not_found", "face_not_found"]),
                "409": _error("The photo is not scored yet.", ["not_ready"]),
                "500": _SERVER_ERROR,
                "503": _UNAVAILABLE,
            },
        }
    },
    "/api/v1/rate/next": {
        "get": {
            "operationId": "nextFacesToRate",
            "summary": "Faces to rate next, most informative for your personal model first (never your own).",
            "parameters": [
                {"name": "count", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5}},
            ],
            "responses": {
                "200": {"description": "Faces to rate; an empty list when nobody is left (or personalization is "
                                       "briefly unavailable).",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/FacesToRate"}}}},
                "400": _error("count out of range.", ["invalid_count"]),
                "500": _SERVER_ERROR,
            },
        }
    },
    "/api/v1/rate/faces/{rate_id}/{face_index}": {
        "parameters": [{"name": "rate_id", "in": "path", "required": True, "schema": ID_SCHEMA,
                        "description": "The rate id from /api/v1/rate/next (raters never see photo ids)."},
                       {"name": "face_index", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "get": {
            "operationId": "getFaceToRate",
            "summary": "The aligned face image of a rateable face (raters never see the rest of the photo).",
            "responses": {
                "200": {"description": "PNG face chip.", "content": {"image/png": {"schema": {}}}},
                "404": _error("No such face, or it may not be rated.", ["not_found"]),
                "500": _SERVER_ERROR,
                "503": _UNAVAILABLE,
            },
        },
    },
}
OPENAPI["paths"].update(_RATING_PATHS)
OPENAPI["paths"]["/api/v1/photos/{photo_id}"]["get"]["parameters"][0]["description"] = (
    "Visitor id to personalise for (the hh_vid cookie wins when present). When known, each adult face of a done "
    "photo gains personal_source and personal_ratings, and personal_score once the viewer has rated enough faces "
    "(personal_min_ratings); it also gains crowd_ratings (how many visitors rated the face on the rate-others page) "
    "and, once at least five have, crowd_score (1-10: what an average visitor who rated it thinks); best effort: "
    "absent when personalization is slow or unavailable."
)
OPENAPI["components"]["schemas"].update({
    "Rating": {
        "type": "object",
        "description": "Names the face by rate_id (what /api/v1/rate/next hands out) or by photo_id, not both.",
        "required": ["face_index", "rating"],
        "oneOf": [{"required": ["rate_id"]}, {"required": ["photo_id"]}],
        "properties": {
            "rate_id": {**ID_SCHEMA, "description": "The rate id of a face from /api/v1/rate/next."},
            "photo_id": {**ID_SCHEMA, "description": "A photo id, for clients that hold one (its owner's link)."},
            "face_index": {"type": "integer", "minimum": 0, "maximum": 63},
            "scale": {"enum": ["hot_or_not", "1to10"], "default": "hot_or_not"},
            "rating": {"type": "number", "description": "hot_or_not: 0 (not) or 1 (hot); 1to10: 1 to 10."},
            "rater_photo_id": {**ID_SCHEMA, "description": (
                "Optional: your own latest photo (the website sends the newest one this browser uploaded). The gender "
                "of its face 0 is recorded with the rating for anonymous statistics; it must be your photo (403 "
                "not_your_photo), and a photo that is deleted, not scored yet or has no face is simply ignored.")},
        },
    },
    "FacesToRate": {
        "type": "object",
        "required": ["faces"],
        "properties": {"faces": {"type": "array", "items": {
            "type": "object",
            "required": ["rate_id", "face_index", "image_url"],
            "properties": {"rate_id": {**ID_SCHEMA, "description": "The face's photo, as raters know it: not its "
                                       "photo id, which would open the owner's whole result."},
                           "face_index": {"type": "integer"},
                           "image_url": {"type": "string", "description": "Path of the face image."}},
        }}},
    },
})
