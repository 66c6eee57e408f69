"""The upload end to end on both pool kinds: out of order, parallel, raw and multipart."""

from __future__ import annotations

import os
import random
import threading
import uuid

import httpx
import pytest

from api.deps import Services
from api.frontier_hash import BACKGROUND_NICENESS
from taskdrive.settings import DEFAULT_LOCAL_POOL_ID, Settings
from tests.fixtures.app import S3_POOL_ID, app_and_client, verified_hash
from tests.uploading import complete, create, random_bytes, send_chunks, sha256

MiB = 1024 * 1024
POOLS = {
    # S3 parts must be at least 5 MiB except the last.
    "local": (DEFAULT_LOCAL_POOL_ID, 256 * 1024, 3 * MiB + 12345),
    "s3": (S3_POOL_ID, 5 * MiB, 2 * 5 * MiB + 777),
}


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
async def test_out_of_order_parallel_chunks_assemble_into_the_file(
    api: httpx.AsyncClient,
    account: tuple[uuid.UUID, dict[str, str]],
    settings: Settings,
    pool: str,
    multipart: bool,
) -> None:
    _, headers = account
    pool_id, chunk_size, size = POOLS[pool]
    data = random_bytes(size)
    upload = await create(api, headers, data, chunk_size=chunk_size, pool_id=pool_id)
    order = list(range(upload.chunks_count))
    random.shuffle(order)
    await send_chunks(api, headers, upload, order, parallel=4, multipart=multipart)

    response = await complete(api, headers, upload)
    assert response.status_code == 200, response.text
    cloud_file = response.json()
    assert cloud_file["size"] == size
    assert cloud_file["hash"] == sha256(data)
    assert cloud_file["poolId"] == str(pool_id)
    # Local chunks are hashed in order as they arrive, so assembly did not read the file again;
    # S3 parts cannot be read before completion, so there assembly does the hashing.
    expected = sha256(data) if pool == "local" else None
    assert verified_hash(settings, upload.task_id) == expected

    download = await api.get(f"/api/files/{cloud_file['id']}", headers=headers)
    assert download.status_code == 200
    assert sha256(download.content) == sha256(data)
    assert download.headers["etag"] == f'"{sha256(data)}"'

    ranged = await api.get(
        f"/api/files/{cloud_file['id']}", headers={**headers, "Range": "bytes=100-1099"}
    )
    assert ranged.status_code == 206
    assert ranged.content == data[100:1100]
    assert ranged.headers["content-range"] == f"bytes 100-1099/{size}"

    info = await api.get(f"/api/files/{cloud_file['id']}/info", headers=headers)
    assert info.json() == cloud_file

    tasks = await api.get("/api/files/upload/tasks", headers=headers)
    (task,) = tasks.json()
    assert task["status"] == "Completed"
    assert task["progress"] == 100.0
    assert task["fileId"] == cloud_file["id"]


CHUNK = 256 * 1024


@pytest.mark.parametrize(
    "kept_chunks", [0, 1.5, 64], ids=["nothing-kept", "some-kept", "everything-kept"]
)
async def test_the_digest_takes_kept_chunks_and_reads_back_the_rest(
    settings: Settings,
    running_worker: None,
    account: tuple[uuid.UUID, dict[str, str]],
    kept_chunks: float,
) -> None:
    """However little memory the API may keep chunks in, the hash it computes on the way is
    the file's, and nothing stays kept once the upload is complete."""
    _, headers = account
    data = random_bytes(12 * CHUNK + 999)
    budget = settings.model_copy(update={"upload_hash_buffer_bytes": int(kept_chunks * CHUNK)})
    async with app_and_client(budget) as (app, api):
        upload = await create(api, headers, data, chunk_size=CHUNK)
        order = list(range(upload.chunks_count))
        random.shuffle(order)
        await send_chunks(api, headers, upload, order, parallel=4)
        response = await complete(api, headers, upload)
        assert response.status_code == 200, response.text
        services: Services = app.state.services
        assert services.frontier.held_bytes == 0
    assert response.json()["hash"] == sha256(data)
    assert verified_hash(settings, upload.task_id) == sha256(data)


async def test_chunks_kept_for_a_stalled_upload_give_way_to_another_upload(
    settings: Settings, running_worker: None, account: tuple[uuid.UUID, dict[str, str]]
) -> None:
    """An upload whose first chunk has not come keeps later chunks only until another upload
    needs the memory; its digest then reads them back from the pool."""
    _, headers = account
    stalled_data, other_data = random_bytes(4 * CHUNK), random_bytes(4 * CHUNK)
    budget = settings.model_copy(update={"upload_hash_buffer_bytes": 3 * CHUNK})
    async with app_and_client(budget) as (app, api):
        services: Services = app.state.services
        stalled = await create(api, headers, stalled_data, chunk_size=CHUNK)
        await send_chunks(api, headers, stalled, [1, 2, 3], parallel=1)
        assert services.frontier.held_bytes == 3 * CHUNK  # waiting for chunk 0

        other = await create(api, headers, other_data, chunk_size=CHUNK)
        await send_chunks(api, headers, other, [3, 2, 1, 0], parallel=1)
        assert (await complete(api, headers, other)).status_code == 200
        assert services.frontier.held_bytes == 0  # the stalled upload's chunks gave way

        await send_chunks(api, headers, stalled, [0], parallel=1)
        assert (await complete(api, headers, stalled)).status_code == 200
        assert services.frontier.held_bytes == 0
    assert verified_hash(settings, other.task_id) == sha256(other_data)
    assert verified_hash(settings, stalled.task_id) == sha256(stalled_data)


async def test_the_digest_is_hashed_below_the_requests_cpu_priority(
    settings: Settings, running_worker: None, account: tuple[uuid.UUID, dict[str, str]]
) -> None:
    """The digest is background work: its threads (as `top -H` shows them) yield the CPU to
    the requests' threads."""
    _, headers = account
    async with app_and_client(settings) as (_app, api):
        data = random_bytes(4 * CHUNK)
        upload = await create(api, headers, data, chunk_size=CHUNK)
        await send_chunks(api, headers, upload, [1, 0, 3, 2], parallel=2)
        assert (await complete(api, headers, upload)).status_code == 200
        hashers = [t for t in threading.enumerate() if t.name.startswith("frontier-hash")]
        requests_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert hashers
        for thread in hashers:
            assert thread.native_id is not None
            assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(
                19, requests_niceness + BACKGROUND_NICENESS
            )
    assert verified_hash(settings, upload.task_id) == sha256(data)


async def test_cancelling_an_upload_drops_the_chunks_kept_for_it(
    settings: Settings, running_worker: None, account: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = account
    async with app_and_client(settings) as (app, api):
        services: Services = app.state.services
        upload = await create(api, headers, random_bytes(4 * CHUNK), chunk_size=CHUNK)
        await send_chunks(api, headers, upload, [2, 3], parallel=2)
        assert services.frontier.held_bytes == 2 * CHUNK
        cancelled = await api.delete(f"/api/files/upload/task/{upload.task_id}", headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        assert services.frontier.held_bytes == 0


async def test_an_account_reuploading_known_content_gets_the_existing_file(
    api: httpx.AsyncClient, account: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = account
    data = random_bytes(1000)
    upload = await create(api, headers, data)
    await send_chunks(api, headers, upload, [0])
    first = (await complete(api, headers, upload)).json()

    again = await api.post(
        "/api/files/upload/create",
        json={"fileName": "copy.bin", "fileSize": 1000, "contentType": "x/y", "hash": sha256(data)},
        headers=headers,
    )
    assert again.status_code == 200
    assert again.json()["fileExists"] is True
    assert again.json()["file"]["id"] == first["id"]
    assert "taskId" not in again.json() or again.json()["taskId"] is None
