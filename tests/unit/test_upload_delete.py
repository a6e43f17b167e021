"""DELETE /api/v1/photos/{id}: the owner's token removes the photo and every derived blob, leaves a tombstone and
announces photo.deleted; wrong or missing tokens change nothing; a repeated DELETE answers 410 like GET."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import FormData
from aiokafka.errors import KafkaTimeoutError

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta, RateAlias
from libs.common.events import Event, PhotoDeleted
from libs.common.settings import Settings
from services.upload.app import create_app


class SwitchablePublisher(RecordingPublisher):
    """A publisher whose broker can be taken down and brought back mid-test."""

    down = False

    async def publish(self, event: Event) -> None:
        if self.down:
            raise KafkaTimeoutError("broker down")
        await super().publish(event)


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def publisher() -> SwitchablePublisher:
    return SwitchablePublisher()


@pytest.fixture
async def client(aiohttp_client, store: LocalBlobStore, publisher: SwitchablePublisher):
    return await aiohttp_client(create_app(Settings(), blob_store=store, publisher=publisher))


async def upload(client, store: LocalBlobStore, jpeg: bytes) -> tuple[str, str]:
    """Upload a photo and fake every stage's outputs, so deletion has something derived to remove."""
    form = FormData()
    form.add_field("photo", jpeg, filename="me.jpg", content_type="image/jpeg")
    body = await (await client.post("/api/v1/photos", data=form)).json()
    photo_id = body["photo_id"]
    for key in (keys.faces_manifest(photo_id), keys.chip(photo_id, 0), keys.chip(photo_id, 1),
                keys.result(photo_id), keys.card(photo_id, "og", "1"), keys.card(photo_id, "story", "1")):
        await store.put(key, b"derived")
    return photo_id, body["delete_token"]


async def test_delete_with_the_right_token_removes_everything(client, store, publisher, astronaut_jpeg) -> None:
    other_id, _ = await upload(client, store, astronaut_jpeg)  # another photo's blobs must survive
    photo_id, token = await upload(client, store, astronaut_jpeg)
    response = await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": token})
    assert response.status == 200, await response.text()
    assert await response.json() == {"photo_id": photo_id, "status": "deleted"}

    assert [k for k in await store.list("") if photo_id in k] == [keys.tombstone(photo_id)]
    assert await store.exists(keys.photo(other_id))
    assert await store.exists(keys.chip(other_id, 0))
    [deleted] = publisher.of_type(PhotoDeleted)
    assert (deleted.photo_id, deleted.reason, deleted.producer) == (photo_id, "owner", "upload")

    status = await client.get(f"/api/v1/photos/{photo_id}")
    assert (status.status, (await status.json())["status"]) == (410, "deleted")


async def test_repeated_delete_is_410(client, store, publisher, astronaut_jpeg) -> None:
    photo_id, token = await upload(client, store, astronaut_jpeg)
    assert (await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": token})).status == 200
    again = await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": token})
    assert again.status == 410
    assert (await again.json())["status"] == "deleted"
    assert len(publisher.of_type(PhotoDeleted)) == 1


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_delete_token"), ({"X-Delete-Token": ""}, "missing_delete_token"),
     ({"X-Delete-Token": "not-the-token"}, "invalid_delete_token")],
)
async def test_wrong_or_missing_token_changes_nothing(
    client, store, publisher, astronaut_jpeg, headers: dict, code: str
) -> None:
    photo_id, _ = await upload(client, store, astronaut_jpeg)
    before = await store.list("")
    response = await client.delete(f"/api/v1/photos/{photo_id}", headers=headers)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == code
    assert await store.list("") == before
    assert publisher.of_type(PhotoDeleted) == []


async def test_another_photos_token_does_not_work(client, store, astronaut_jpeg) -> None:
    photo_a, _ = await upload(client, store, astronaut_jpeg)
    _, token_b = await upload(client, store, astronaut_jpeg)
    response = await client.delete(f"/api/v1/photos/{photo_a}", headers={"X-Delete-Token": token_b})
    assert response.status == 403


async def test_unknown_photo_is_404(client) -> None:
    response = await client.delete("/api/v1/photos/ph0t0ExampleId_abcdef", headers={"X-Delete-Token": "x"})
    assert response.status == 404


async def test_broker_down_during_delete_then_retry_completes(client, store, publisher, astronaut_jpeg) -> None:
    photo_id, token = await upload(client, store, astronaut_jpeg)
    publisher.down = True
    response = await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": token})
    assert response.status == 503
    assert "Retry-After" in response.headers
    assert not await store.exists(keys.photo(photo_id))  # the bytes go first, whatever happens next
    assert (await client.get(f"/api/v1/photos/{photo_id}")).status == 410

    publisher.down = False
    retry = await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": token})
    assert retry.status == 200
    assert [k for k in await store.list("") if photo_id in k] == [keys.tombstone(photo_id)]
    assert len(publisher.of_type(PhotoDeleted)) == 1


async def test_a_rateable_photo_has_a_rate_alias_until_it_is_deleted(client, store, astronaut_jpeg) -> None:
    """Raters know the photo by its rate id only; the alias goes with the photo (and a non-rateable one has none)."""
    form = FormData()
    form.add_field("photo", astronaut_jpeg, filename="me.jpg", content_type="image/jpeg")
    form.add_field("rateable", "true")
    body = await (await client.post("/api/v1/photos", data=form)).json()
    photo_id = body["photo_id"]
    meta = PhotoMeta.model_validate_json((await store.get(keys.meta(photo_id))).data)
    assert meta.rate_id is not None and meta.rate_id != photo_id
    alias = RateAlias.model_validate_json((await store.get(keys.rate_alias(meta.rate_id))).data)
    assert alias.photo_id == photo_id
    private_id, _ = await upload(client, store, astronaut_jpeg)
    assert PhotoMeta.model_validate_json((await store.get(keys.meta(private_id))).data).rate_id is None

    response = await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": body["delete_token"]})
    assert response.status == 200
    assert not await store.exists(keys.rate_alias(meta.rate_id))
