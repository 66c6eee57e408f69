"""The upload end to end on both pool kinds: out of order, parallel, raw and multipart."""

from __future__ import annotations

import random
import uuid

import httpx
import pytest

from taskdrive.settings import DEFAULT_LOCAL_POOL_ID, Settings
from tests.fixtures.app import S3_POOL_ID, verified_hash
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
