"""Client-side helpers for the generic task API, as a REST client would use it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHistory,
)
from temporalio.converter import decode_typed_search_attributes
from temporalio.exceptions import CancelledError

from taskdrive.settings import Settings
from taskdrive.tasks import TaskInput
from taskdrive.temporal import SA_STATUS
from tests.fixtures.app import worker_running, workflows_only
from tests.uploading import complete, create, poll_until, send_chunks


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
    """Polls the task until ``until`` holds (a status name, or a predicate on the task JSON);
    waiting for a status fails at once if the task ends in another."""

    def check(task: dict[str, Any]) -> bool:
        if not isinstance(until, str):
            return until(task)
        if task["status"] != until and task["status"] in ("Completed", "Failed", "Cancelled"):
            raise AssertionError(f"task {task_id} ended {task['status']}, not {until}: {task}")
        return bool(task["status"] == until)

    return await poll_until(
        lambda: get_task(api, headers, task_id), check, deadline=deadline, what=f"task {task_id}"
    )


async def audit_trail(
    api: httpx.AsyncClient, headers: dict[str, str], task_id: str
) -> list[dict[str, Any]]:
    """The task's audit trail, oldest first."""
    response = await api.get(f"/api/tasks/{task_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    trail: list[dict[str, Any]] = response.json()
    return trail


async def logs(api: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> list[str]:
    response = await api.get(f"/api/tasks/{task_id}/logs?limit=1000", headers=headers)
    assert response.status_code == 200, response.text
    return [entry["message"] for entry in response.json()]


async def pause_midway(
    api: httpx.AsyncClient, headers: dict[str, str], task_id: str
) -> dict[str, Any]:
    """Pauses a running task once it has made progress; returns it Paused, neither at the
    start nor at the end (the task must be slow enough: see the ``slow_api`` fixture)."""
    await wait_task(api, headers, task_id, lambda t: t["progress"] > 0)
    paused = await api.post(f"/api/tasks/{task_id}/pause", headers=headers)
    assert paused.status_code == 202, paused.text
    at_pause = await wait_task(api, headers, task_id, "Paused")
    assert 0 < at_pause["progress"] < 100
    return at_pause


async def closed_cancelled(client: Client, task_id: str) -> None:
    """Waits for the task's workflow to close and checks Temporal recorded it Canceled.

    The projection's Cancelled is the workflow's last write before it closes, so a task seen
    Cancelled through the API may still be running in Temporal for a moment."""
    assert isinstance(await run_closed(client, task_id), CancelledError)
    described = await client.get_workflow_handle(task_id).describe()
    assert described.status == WorkflowExecutionStatus.CANCELED


async def pending_activity(client: Client, task_id: str, activity_type: str) -> None:
    """Waits until the task's workflow has scheduled an activity of ``activity_type``."""

    async def pending() -> dict[str, Any]:
        described = await client.get_workflow_handle(task_id).describe()
        types = [a.activity_type.name for a in described.raw_description.pending_activities]
        return {"types": types}

    await poll_until(
        pending, lambda view: activity_type in view["types"], deadline=30, what=activity_type
    )


async def cancel_unanswered(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    settings: Settings,
    client: Client,
    task_id: str,
    cleanup_activity: str,
) -> None:
    """Cancels a task whose step waits unanswered (as after its worker died): a worker that
    runs workflows and no step takes the cancel until the task's cleanup step is scheduled,
    then a full worker runs the task to Cancelled."""
    async with workflows_only(settings, client):
        cancelled = await api.post(f"/api/tasks/{task_id}/cancel", headers=headers)
        assert cancelled.status_code == 202, cancelled.text
        await pending_activity(client, task_id, cleanup_activity)
    async with worker_running(settings):
        await wait_task(api, headers, task_id, "Cancelled")


async def web_ui_finds(client: Client, task_id: str, status: str) -> None:
    """Waits until an operator's search for ``TaskdriveStatus="<status>"`` in the Web UI lists
    the task's workflow (visibility follows the workflow a moment later)."""

    async def found() -> dict[str, Any]:
        query = f'WorkflowId = "{task_id}" AND {SA_STATUS.name} = "{status}"'
        return {"ids": [w.id async for w in client.list_workflows(query)]}

    await poll_until(found, lambda view: view["ids"] == [task_id], deadline=30, what=status)


async def closed_history(client: Client, task_id: str) -> WorkflowHistory:
    """The whole history of a finished task's workflow (its current run).

    A task's outcome is projected by its last step; the workflow closes a moment later, with
    its status upsert, so this waits for the close."""
    await run_closed(client, task_id)
    return await client.get_workflow_handle(task_id).fetch_history()


async def run_closed(client: Client, task_id: str) -> BaseException | None:
    """Waits, a minute at most, for the task's workflow to close; what it failed with, if it
    did not complete."""
    async with asyncio.timeout(60):
        try:
            await client.get_workflow_handle(task_id).result()
        except WorkflowFailureError as failure:
            return failure.cause
    return None


async def started_input(client: Client, history: WorkflowHistory) -> TaskInput:
    """The input the history's run was started with."""
    started = history.events[0].workflow_execution_started_event_attributes
    (inp,) = await client.data_converter.decode(list(started.input.payloads), [TaskInput])
    assert isinstance(inp, TaskInput)
    return inp


async def status_upserts(client: Client, task_id: str) -> list[str]:
    """The values a finished task's workflow upserted its TaskdriveStatus to, in order (its
    current run's history)."""
    history = await closed_history(client, task_id)
    values: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            upserted = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            value = decode_typed_search_attributes(upserted).get(SA_STATUS)
            if value is not None:
                values.append(value)
    return values
