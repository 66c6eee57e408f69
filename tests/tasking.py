"""Client-side helpers for the generic task API, as a REST client would use it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.uploading import complete, create, send_chunks


async def upload_file(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    *,
    name: str = "file.bin",
    pool_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Uploads ``data`` in one go and returns its CloudFile."""
    chunk_size = max(len(data), 1) if pool_id is None else None
    upload = await create(
        api, headers, data, file_name=name, chunk_size=chunk_size, pool_id=pool_id
    )
    await send_chunks(api, headers, upload, list(range(upload.chunks_count)))
    response = await complete(api, headers, upload)
    assert response.status_code == 200, response.text
    cloud_file: dict[str, Any] = response.json()
    return cloud_file


async def create_task(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    type: str,
    parameters: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    response = await api.post(
        "/api/tasks", json={"type": type, "parameters": parameters, **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def get_task(api: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/tasks/{task_id}", headers=headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def wait_task(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    task_id: str,
    until: Callable[[dict[str, Any]], bool] | str,
    *,
    deadline: float = 60,
) -> dict[str, Any]:
    """Polls the task until ``until`` holds (a status name, or a predicate on the task JSON).
    The projection follows Temporal; polling a condition is the synchronization."""
    check = (lambda task: task["status"] == until) if isinstance(until, str) else until
    loop = asyncio.get_running_loop()
    limit = loop.time() + deadline
    while True:
        task = await get_task(api, headers, task_id)
        if check(task):
            return task
        if task["status"] in ("Completed", "Failed", "Cancelled") and isinstance(until, str):
            raise AssertionError(f"task {task_id} ended {task['status']}, not {until}: {task}")
        if loop.time() > limit:
            raise AssertionError(f"task {task_id} never got there: {task}")
        await asyncio.sleep(0.05)


async def logs(api: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> list[str]:
    response = await api.get(f"/api/tasks/{task_id}/logs?limit=1000", headers=headers)
    assert response.status_code == 200, response.text
    return [entry["message"] for entry in response.json()]
