"""Pause, resume, cancel (through Temporal, as the generic REST endpoints come later), expiry."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from taskdrive.settings import Settings
from taskdrive.tasks import (
    QUERY_PROGRESS,
    SIGNAL_CANCEL,
    SIGNAL_PAUSE,
    SIGNAL_RESUME,
    LifecycleSignal,
    TaskView,
)
from tests.api.test_upload_rules import assert_error
from tests.fixtures.app import S3_POOL_ID, api_client, local_pool_dir
from tests.fixtures.s3 import s3_client
from tests.tasking import audit_trail, closed_cancelled
from tests.uploading import (
    complete,
    create,
    poll_until,
    random_bytes,
    send_chunk,
    send_chunks,
    wait_for_status,
)

Account = tuple[uuid.UUID, dict[str, str]]
MiB = 1024 * 1024


async def test_pause_refuses_chunks_until_resumed(
    api: httpx.AsyncClient, account: Account, temporal_client: Client
) -> None:
    _, headers = account
    data = random_bytes(3000)
    upload = await create(api, headers, data, chunk_size=1000)
    await send_chunks(api, headers, upload, [0])
    handle = temporal_client.get_workflow_handle(upload.task_id)

    await handle.signal(SIGNAL_PAUSE, LifecycleSignal(reason="test"))
    await wait_for_status(api, headers, upload.task_id, "Paused")
    assert_error(await send_chunk(api, headers, upload, 1), 423, "TASK_PAUSED")
    assert_error(await complete(api, headers, upload), 423, "TASK_PAUSED")
    # The API reports progress to the workflow in the background: it shows there eventually.
    progress = await poll_until(
        lambda: _progress(handle),
        lambda view: view["checkpoint"]["workflow"].get("chunksUploaded") == 1,
        deadline=30,
        what="the workflow to hear of chunk 0",
    )
    assert progress["status"] == "Paused"

    await handle.signal(SIGNAL_RESUME, LifecycleSignal())
    await wait_for_status(api, headers, upload.task_id, "InProgress")
    await send_chunks(api, headers, upload, [1, 2])
    finished = await complete(api, headers, upload)
    assert finished.status_code == 200, finished.text


async def _progress(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    view = await handle.query(QUERY_PROGRESS, result_type=TaskView)
    return {"status": view.status, "checkpoint": view.checkpoint}


async def test_cancel_removes_local_staging(
    api: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    _, headers = account
    upload = await create(api, headers, random_bytes(3000), chunk_size=1000)
    await send_chunks(api, headers, upload, [0, 2])
    staged = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}

    response = await api.delete(f"/api/files/upload/task/{upload.task_id}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "Cancelled"
    after = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}
    assert after < staged or not staged, "cancel left staging behind"
    assert len(staged - after) == 1
    assert_error(await send_chunk(api, headers, upload, 1), 410, "TASK_GONE")
    # Cancelling again is harmless.
    again = await api.delete(f"/api/files/upload/task/{upload.task_id}", headers=headers)
    assert again.json()["status"] == "Cancelled"


async def test_cancel_through_temporal_aborts_the_s3_multipart_upload(
    api: httpx.AsyncClient,
    account: Account,
    temporal_client: Client,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    _, headers = account
    upload = await create(
        api, headers, random_bytes(6 * MiB), chunk_size=5 * MiB, pool_id=S3_POOL_ID
    )
    await send_chunks(api, headers, upload, [1])
    s3 = s3_client(s3_endpoint)

    def open_uploads() -> set[str]:
        listing = s3.list_multipart_uploads(Bucket=s3_bucket)
        return {u["UploadId"] for u in listing.get("Uploads", [])}

    assert open_uploads()
    before = open_uploads()
    handle = temporal_client.get_workflow_handle(upload.task_id)
    await handle.signal(SIGNAL_CANCEL, LifecycleSignal(reason="operator"))
    await wait_for_status(api, headers, upload.task_id, "Cancelled")
    assert len(before - open_uploads()) == 1


@pytest.mark.parametrize("paused", [False, True], ids=["idle", "paused"])
async def test_an_inactive_upload_expires_and_loses_its_staging(
    settings: Settings, running_worker: None, account: Account, paused: bool
) -> None:
    """Idle past the threshold, or paused for longer than it."""
    _, headers = account
    short = settings.model_copy(update={"upload_stale_threshold_seconds": 1.0})
    async with api_client(short) as api:
        upload = await create(api, headers, random_bytes(2000), chunk_size=1000)
        await send_chunks(api, headers, upload, [0])
        staged = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}
        if paused:
            pause = await api.post(f"/api/tasks/{upload.task_id}/pause", headers=headers)
            assert pause.status_code == 202, pause.text
        view = await wait_for_status(api, headers, upload.task_id, "Expired")
        assert view["uploadedChunks"] == []
        after = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}
        assert len(staged - after) == 1
        assert_error(await send_chunk(api, headers, upload, 1), 410, "TASK_GONE")
        events = await audit_trail(api, headers, upload.task_id)
        ends = [e["toStatus"] for e in events if e["eventType"] != "task.progress"][-2:]
        assert ends == (["Paused", "Expired"] if paused else ["InProgress", "Expired"])


async def test_cancellation_requested_in_temporal_cleans_up_like_the_signal(
    api: httpx.AsyncClient, account: Account, temporal_client: Client, settings: Settings
) -> None:
    _, headers = account
    upload = await create(api, headers, random_bytes(2000), chunk_size=1000)
    await send_chunks(api, headers, upload, [1])
    staged = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}
    handle = temporal_client.get_workflow_handle(upload.task_id)
    await handle.cancel()
    await wait_for_status(api, headers, upload.task_id, "Cancelled")
    await closed_cancelled(temporal_client, upload.task_id)
    after = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}
    assert len(staged - after) == 1


async def test_the_generic_task_endpoints_pause_resume_and_cancel_an_upload(
    api: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    account_id, headers = account
    upload = await create(api, headers, random_bytes(3000), chunk_size=1000)
    await send_chunks(api, headers, upload, [0, 1])
    task_id = upload.task_id

    assert (await api.post(f"/api/tasks/{task_id}/pause", headers=headers)).status_code == 202
    await wait_for_status(api, headers, task_id, "Paused")
    assert_error(await send_chunk(api, headers, upload, 2), 423, "TASK_PAUSED")
    assert (await api.post(f"/api/tasks/{task_id}/resume", headers=headers)).status_code == 202
    await wait_for_status(api, headers, task_id, "InProgress")
    staged = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}

    assert (await api.post(f"/api/tasks/{task_id}/cancel", headers=headers)).status_code == 202
    await wait_for_status(api, headers, task_id, "Cancelled")
    after = {p for p in local_pool_dir(settings).rglob("*") if p.is_file()}
    assert len(staged - after) == 1
    task = (await api.get(f"/api/tasks/{task_id}", headers=headers)).json()
    assert (task["type"], task["status"], task["progress"]) == ("FileUpload", "Cancelled", 66.67)
    events = await audit_trail(api, headers, task_id)
    assert [(e["toStatus"], e["actor"]) for e in events if e["eventType"] != "task.progress"] == [
        ("Pending", str(account_id)),
        ("InProgress", None),
        ("Paused", str(account_id)),
        ("InProgress", str(account_id)),
        ("Cancelled", str(account_id)),
    ]
    # Created through its own endpoint only, and not run again through /retry.
    retried = await api.post(f"/api/tasks/{task_id}/retry", headers=headers)
    assert_error(retried, 409, "INVALID_TASK_STATE")
    create_generic = await api.post(
        "/api/tasks", headers=headers, json={"type": "FileUpload", "parameters": {}}
    )
    assert_error(create_generic, 400, "UNKNOWN_TASK_TYPE")
