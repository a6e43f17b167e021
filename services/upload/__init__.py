"""The upload service: the public API (routes_api.py) and, later, the website (its own routes module).

- POST   /api/v1/photos             202 accepted | 400/413/415 bad input | 503 broker or storage down, or overloaded
- GET    /api/v1/photos/{id}        200 processing/faces_found/no_face/done/failed | 404 unknown or malformed | 410
- DELETE /api/v1/photos/{id}        200 deleted | 403 missing/wrong X-Delete-Token | 404 | 410 already deleted | 503
- GET    /api/v1/openapi.json       the hand-written OpenAPI 3.1 document (openapi.py)

app.py is the composition root; handlers.py holds the use cases over the BlobStore and publisher ports; status.py
composes a photo's status from the stage documents; form.py and errors.py keep bad input at the edge.
"""
