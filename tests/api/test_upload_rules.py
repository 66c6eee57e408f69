"""What the upload API refuses, and how: duplicates, sizes, ranges, hashes, bad input."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from taskdrive.settings import Settings
from tests.fixtures.app import files_with_hash, local_pool_dir
from tests.uploading import complete, create, random_bytes, send_chunk, send_chunks, sha256

Account = tuple[uuid.UUID, dict[str, str]]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


async def test_a_stored_chunk_is_refused_and_kept(api: httpx.AsyncClient, account: Account) -> None:
    _, headers = account
    data = random_bytes(2000)
    upload = await create(api, headers, data, chunk_size=1000)
    assert (await send_chunk(api, headers, upload, 0)).status_code == 200
    again = await send_chunk(api, headers, upload, 0, body=b"x" * 1000)
    assert_error(again, 409, "CHUNK_ALREADY_UPLOADED")
    await send_chunks(api, headers, upload, [1])
    finished = await complete(api, headers, upload)
    assert finished.status_code == 200
    assert finished.json()["hash"] == sha256(data)


async def test_concurrent_sends_of_one_chunk_store_it_once(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    data = random_bytes(4 * 1024 * 1024)
    upload = await create(api, headers, data, chunk_size=2 * 1024 * 1024)
    first, second = await asyncio.gather(
        send_chunk(api, headers, upload, 0), send_chunk(api, headers, upload, 0)
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    await send_chunks(api, headers, upload, [1])
    finished = await complete(api, headers, upload)
    assert finished.status_code == 200
    assert finished.json()["hash"] == sha256(data)


async def test_a_hash_mismatch_fails_the_task_and_leaves_nothing(
    api: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    _, headers = account
    data = random_bytes(3000)
    upload = await create(api, headers, data, chunk_size=1000, declared_hash=sha256(b"other"))
    await send_chunks(api, headers, upload, [2, 0, 1])
    response = await complete(api, headers, upload)
    assert_error(response, 422, "HASH_MISMATCH")

    task = (await api.get(f"/api/files/upload/resume/{upload.task_id}", headers=headers)).json()
    assert task["status"] == "Failed"
    assert task["errorCode"] == "HASH_MISMATCH"
    assert files_with_hash(settings, sha256(data)) == 0
    pool = local_pool_dir(settings)
    leftovers = [p for p in pool.rglob("*") if p.is_file() and upload.task_id in p.name]
    assert leftovers == []
    # Completing again repeats the verdict rather than starting over.
    assert_error(await complete(api, headers, upload), 422, "HASH_MISMATCH")


async def test_chunk_index_size_and_limits_are_checked(
    api: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    _, headers = account
    upload = await create(api, headers, random_bytes(2500), chunk_size=1000)
    assert_error(await send_chunk(api, headers, upload, 3), 400, "CHUNK_INDEX_OUT_OF_RANGE")
    assert_error(await send_chunk(api, headers, upload, -1), 400, "CHUNK_INDEX_OUT_OF_RANGE")
    assert_error(
        await send_chunk(api, headers, upload, 0, body=b"short"), 400, "CHUNK_SIZE_MISMATCH"
    )
    # The last chunk is the remainder.
    assert_error(
        await send_chunk(api, headers, upload, 2, body=b"y" * 1000), 400, "CHUNK_SIZE_MISMATCH"
    )
    assert_error(
        await send_chunk(api, headers, upload, 1, body=b"z" * 999, multipart=True),
        400,
        "CHUNK_SIZE_MISMATCH",
    )
    too_big = b"0" * (settings.upload_max_chunk_size + 1)
    assert_error(await send_chunk(api, headers, upload, 0, body=too_big), 413, "PAYLOAD_TOO_LARGE")
    wrong_type = await api.post(
        f"/api/files/upload/chunk/{upload.task_id}/0",
        content=b"x" * 1000,
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert_error(wrong_type, 415, "UNSUPPORTED_MEDIA_TYPE")
    no_field = await api.post(
        f"/api/files/upload/chunk/{upload.task_id}/0",
        files={"other": ("blob", b"x" * 1000)},
        headers=headers,
    )
    assert_error(no_field, 400, "BAD_REQUEST")
    assert_error(
        await api.post(f"/api/files/upload/chunk/{uuid.uuid4()}/0", content=b"x", headers=headers),
        404,
        "TASK_NOT_FOUND",
    )
    # Nothing above was stored; a correct chunk still goes in.
    assert (await send_chunk(api, headers, upload, 0)).status_code == 200
    missing = assert_error(await complete(api, headers, upload), 400, "MISSING_CHUNKS")
    assert missing["details"] == {"missingChunks": [1, 2], "missingCount": 2}


async def test_bad_requests_get_clear_errors(api: httpx.AsyncClient, account: Account) -> None:
    _, headers = account
    valid = {"fileName": "a.txt", "fileSize": 10, "contentType": "text/plain", "hash": "a" * 64}
    assert_error(await api.post("/api/files/upload/create", json=valid), 401, "UNAUTHORIZED")
    assert_error(
        await api.post(
            "/api/files/upload/create", json=valid, headers={"Authorization": "Bearer nope"}
        ),
        401,
        "UNAUTHORIZED",
    )
    create_url = "/api/files/upload/create"
    for broken in (
        {**valid, "hash": "xyz"},
        {**valid, "fileSize": -1},
        {k: v for k, v in valid.items() if k != "fileName"},
        {**valid, "fileName": "../etc/passwd"},
        {**valid, "chunkSize": 64 * 1024 * 1024},
        {**valid, "poolId": "not-a-uuid"},
        {**valid, "unknownField": 1},
    ):
        body = assert_error(
            await api.post(create_url, json=broken, headers=headers), 400, "VALIDATION_ERROR"
        )
        assert body["details"]
    garbage = await api.post(
        create_url, content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert_error(garbage, 400, "VALIDATION_ERROR")
    short_password = await api.post(
        create_url, json={**valid, "encryptPassword": "s3cret"}, headers=headers
    )
    assert_error(short_password, 400, "VALIDATION_ERROR")
    assert short_password.json()["details"]["errors"][0]["field"] == "encryptPassword"
    assert "s3cret" not in short_password.text
    unknown_pool = await api.post(
        create_url, json={**valid, "poolId": str(uuid.uuid4())}, headers=headers
    )
    assert_error(unknown_pool, 404, "POOL_NOT_FOUND")
    assert_error(
        await api.get("/api/files/upload/progress/nope", headers=headers), 404, "TASK_NOT_FOUND"
    )
    assert_error(
        await api.get(f"/api/files/{uuid.uuid4()}", headers=headers), 404, "FILE_NOT_FOUND"
    )
    assert_error(
        await api.get("/api/files/not-a-uuid/info", headers=headers), 400, "VALIDATION_ERROR"
    )
    assert_error(await api.get("/api/nowhere", headers=headers), 404, "NOT_FOUND")
    bad_sort = await api.get("/api/files/upload/tasks?sortBy=color", headers=headers)
    assert_error(bad_sort, 400, "VALIDATION_ERROR")
