"""What a client of the upload API does: create, send chunks, complete. Used by the tests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Upload:
    task_id: str
    chunk_size: int
    chunks_count: int
    data: bytes

    def chunk(self, index: int) -> bytes:
        return self.data[index * self.chunk_size : (index + 1) * self.chunk_size]


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def create(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    *,
    chunk_size: int | None = None,
    pool_id: uuid.UUID | None = None,
    file_name: str = "file.bin",
    declared_hash: str | None = None,
    **extra: Any,
) -> Upload:
    body: dict[str, Any] = {
        "fileName": file_name,
        "fileSize": len(data),
        "contentType": "application/octet-stream",
        "hash": declared_hash or sha256(data),
        **extra,
    }
    if chunk_size is not None:
        body["chunkSize"] = chunk_size
    if pool_id is not None:
        body["poolId"] = str(pool_id)
    response = await api.post("/api/files/upload/create", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["fileExists"] is False, answer
    return Upload(answer["taskId"], answer["chunkSize"], answer["chunksCount"], data)


async def send_chunk(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    upload: Upload,
    index: int,
    *,
    multipart: bool = False,
    body: bytes | None = None,
) -> httpx.Response:
    url = f"/api/files/upload/chunk/{upload.task_id}/{index}"
    content = upload.chunk(index) if body is None else body
    if multipart:
        return await api.post(url, files={"chunk": ("blob", content)}, headers=headers)
    return await api.post(
        url, content=content, headers={**headers, "Content-Type": "application/octet-stream"}
    )


async def send_chunks(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    upload: Upload,
    indices: list[int],
    *,
    parallel: int = 4,
    multipart: bool = False,
) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> None:
        async with gate:
            response = await send_chunk(api, headers, upload, index, multipart=multipart)
            assert response.status_code == 200, response.text

    await asyncio.gather(*(one(i) for i in indices))


async def complete(
    api: httpx.AsyncClient, headers: dict[str, str], upload: Upload
) -> httpx.Response:
    return await api.post(f"/api/files/upload/complete/{upload.task_id}", headers=headers)


async def task_view(
    api: httpx.AsyncClient, headers: dict[str, str], task_id: str
) -> dict[str, Any]:
    response = await api.get(f"/api/files/upload/resume/{task_id}", headers=headers)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def wait_for_status(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    task_id: str,
    wanted: str,
    *,
    deadline: float = 60,
) -> dict[str, Any]:
    """Polls the upload until it shows ``wanted``."""
    return await poll_until(
        lambda: task_view(api, headers, task_id),
        lambda view: view["status"] == wanted,
        deadline=deadline,
        what=f"upload {task_id} to become {wanted}",
    )


async def poll_until(
    read: Callable[[], Awaitable[dict[str, Any]]],
    check: Callable[[dict[str, Any]], bool],
    *,
    deadline: float,
    what: str,
) -> dict[str, Any]:
    """Reads until ``check`` holds (the projection is eventually consistent with Temporal;
    polling a condition is the synchronization)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while True:
        view = await read()
        if check(view):
            return view
        if loop.time() > until:
            raise AssertionError(f"waited in vain for {what}: {view}")
        await asyncio.sleep(0.05)
