"""End to end: opted-in photos enter the rate pool, a visitor rates faces the scoring service picks, and once they
have rated k faces (the personal model's threshold) a personal score appears on a photo's status for them.

Uses FRL London faces (adults, so none is withheld as a minor) from ../shared/data/frl_london; skipped when absent.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import requests

from libs.cli.stack import LocalStack
from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.documents import PhotoMeta
from libs.common.ids import new_id
from libs.common.polling import wait_for
from services.scoring.personalize.item import ItemState
from services.scoring.personalize.model import MIN_RATINGS_FOR_PERSONAL

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.data, pytest.mark.slow]

SHARED_DATA = Path(os.environ.get("HOWHOT_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
K = MIN_RATINGS_FOR_PERSONAL  # the shipped bundle's threshold (HOWHOT_SCORING_MIN_RATINGS unset in the stack)




def frl_images(n: int) -> list[Path]:
    folder = SHARED_DATA / "frl_london" / "images"
    images = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    if len(images) < n:
        pytest.skip(f"need {n} FRL London images in {folder}")
    return images


def test_rating_k_faces_makes_scores_personal(stack: LocalStack) -> None:
    base = stack.urls()["upload"]
    owner, rater = requests.Session(), requests.Session()
    owner.cookies.set("hh_vid", new_id())
    rater.cookies.set("hh_vid", new_id())

    status_urls = []
    for path in frl_images(K + 4):  # a few spare: the minors rule may withhold a young-looking adult
        r = owner.post(f"{base}/api/v1/photos", files={"photo": (path.name, path.read_bytes(), "image/jpeg")},
                       data={"rateable": "true"}, timeout=30)
        assert r.status_code == 202, r.text
        status_urls.append(r.json()["status_url"])

    def all_done():
        docs = [owner.get(url, timeout=10).json() for url in status_urls]
        assert all(d["status"] not in ("failed", "no_face") for d in docs), docs
        return docs if all(d["status"] == "done" for d in docs) else None

    docs = wait_for(all_done, timeout_s=240)
    adults = [d for d in docs if d["faces"][0].get("attractiveness") is not None]
    assert len(adults) >= K + 1, [d["faces"][0].get("p_minor") for d in docs]
    viewed = adults[-1]["photo_id"]
    blobs = LocalBlobStore(stack.settings.blob_dir)
    photo_of = {}  # rate id → photo id: only the server knows it (raters never see photo ids)
    for d in docs:
        meta = PhotoMeta.model_validate_json(asyncio.run(blobs.get(keys.meta(d["photo_id"]))).data)
        photo_of[meta.rate_id] = d["photo_id"]

    offered_to_owner = owner.get(f"{base}/api/v1/rate/next", params={"count": "10"}, timeout=10).json()["faces"]
    assert not {f["rate_id"] for f in offered_to_owner} & set(photo_of), "never your own photos"

    def enough_to_rate():
        faces = rater.get(f"{base}/api/v1/rate/next", params={"count": "10"}, timeout=10).json()["faces"]
        assert all("photo_id" not in f for f in faces)
        faces = [f for f in faces if photo_of.get(f["rate_id"]) != viewed]
        return faces if len(faces) >= K else None

    to_rate = wait_for(enough_to_rate, timeout_s=30)[:K]
    image = rater.get(f"{base}{to_rate[0]['image_url']}", timeout=10)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"

    status = rater.get(f"{base}/api/v1/photos/{viewed}", timeout=10).json()
    assert "personal_score" not in status["faces"][0]
    for i, face in enumerate(to_rate):
        r = rater.post(f"{base}/api/v1/ratings", json={"rate_id": face["rate_id"], "face_index": face["face_index"],
                                                      "scale": "hot_or_not", "rating": i % 2}, timeout=10)
        assert r.status_code == 202, r.text
    again = rater.post(f"{base}/api/v1/ratings", json={**{k: to_rate[0][k] for k in ("rate_id", "face_index")},
                                                      "rating": 1}, timeout=10)
    assert again.status_code == 202  # accepted, but counted once by the consumer

    def personal():
        face = rater.get(f"{base}/api/v1/photos/{viewed}", timeout=10).json()["faces"][0]
        return face if "personal_score" in face else None

    face = wait_for(personal, timeout_s=60)
    assert face["personal_source"] == "personal" and face["personal_ratings"] == K
    assert 1.0 <= face["personal_score"] <= 10.0

    # every rated face learned from this rating too (face.rated → the scoring service's face-items consumer)
    item_keys = [keys.face_item(photo_of[f["rate_id"]], f["face_index"]) for f in to_rate]
    wait_for(lambda: all((stack.settings.blob_dir / k).exists() for k in item_keys) or None, timeout_s=60)
    for key in item_keys:
        item = ItemState.from_bytes(asyncio.run(blobs.get(key)).data)
        assert item.raters == [rater.cookies["hh_vid"]]  # the double click counted once here too
    # ... and the photo's page says so to its owner: one visitor so far, too few for a visitors' score
    rated = owner.get(f"{base}/api/v1/photos/{photo_of[to_rate[0]['rate_id']]}", timeout=10).json()["faces"]
    rated_face = next(f for f in rated if f["index"] == to_rate[0]["face_index"])
    assert rated_face["crowd_ratings"] == 1 and "crowd_score" not in rated_face

    refused = owner.post(f"{base}/api/v1/ratings", json={"photo_id": viewed, "face_index": 0, "rating": 1}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "own_photo"
    # the rater's own photo (for the rater-gender statistics) must be theirs: the owner's photo is not
    refused = rater.post(f"{base}/api/v1/ratings", json={**{k: to_rate[0][k] for k in ("rate_id", "face_index")},
                                                        "rating": 1, "rater_photo_id": viewed}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_your_photo"
