"""Pause, resume, cancel, retries and retry-as-the-same-task, through the generic API."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client, WorkflowHandle

from taskdrive.settings import Settings
from tests.fixtures.app import S3_POOL_ID, api_client, database, worker_running
from tests.fixtures.s3 import s3_client
from tests.fixtures.services import EMPTY_NAMESPACE
from tests.tasking import (
    audit_trail,
    closed_history,
    create_task,
    get_task,
    logs,
    pause_midway,
    started_input,
    status_upserts,
    upload_file,
    wait_task,
    web_ui_finds,
)
from tests.uploading import random_bytes, sha256

Account = tuple[uuid.UUID, dict[str, str]]
KiB = 1024


async def _checksum_task(
    api: httpx.AsyncClient, headers: dict[str, str], count: int, **fields: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    files = [
        await upload_file(api, headers, random_bytes(256 * KiB), name=f"part{n}.bin")
        for n in range(count)
    ]
    task = await create_task(
        api, headers, "FileChecksum", {"fileIds": [f["id"] for f in files]}, **fields
    )
    return task, files


async def test_pause_stops_at_a_checkpoint_and_resume_continues_from_it(
    slow_api: httpx.AsyncClient, account: Account, temporal_client: Client
) -> None:
    account_id, headers = account
    task, files = await _checksum_task(slow_api, headers, 6)
    task_id = task["taskId"]
    await pause_midway(slow_api, headers, task_id)
    await web_ui_finds(temporal_client, task_id, "Paused")
    hashed_before = await logs(slow_api, headers, task_id)
    assert 0 < len(hashed_before) < 6

    again = await slow_api.post(f"/api/tasks/{task_id}/pause", headers=headers)
    assert again.status_code == 409
    assert again.json()["details"]["status"] == "Paused"

    resumed = await slow_api.post(f"/api/tasks/{task_id}/resume", headers=headers)
    assert resumed.status_code == 202, resumed.text
    done = await wait_task(slow_api, headers, task_id, "Completed")
    assert set(done["results"]["digests"]) == {f["id"] for f in files}

    # Every file was hashed exactly once: nothing done before the pause was done again.
    hashed = Counter(message.split(" (")[0] for message in await logs(slow_api, headers, task_id))
    assert hashed == Counter(f"hashing part{n}.bin" for n in range(6))

    events = await audit_trail(slow_api, headers, task_id)
    pause = next(e for e in events if e["eventType"] == "task.paused")
    assert (pause["fromStatus"], pause["toStatus"], pause["actor"]) == (
        "InProgress",
        "Paused",
        str(account_id),
    )
    assert any(e["eventType"] == "task.resumed" for e in events)

    completed = await slow_api.post(f"/api/tasks/{task_id}/resume", headers=headers)
    assert completed.status_code == 409
    assert completed.json()["details"]["status"] == "Completed"
    await web_ui_finds(temporal_client, task_id, "Completed")
    assert await status_upserts(temporal_client, task_id) == ["Paused", "InProgress", "Completed"]


async def test_cancel_ends_a_running_task_cancelled(
    slow_api: httpx.AsyncClient, account: Account, temporal_client: Client
) -> None:
    _, headers = account
    task, _ = await _checksum_task(slow_api, headers, 6)
    task_id = task["taskId"]
    await wait_task(slow_api, headers, task_id, lambda t: t["progress"] > 0)
    cancelled = await slow_api.post(f"/api/tasks/{task_id}/cancel", headers=headers)
    assert cancelled.status_code == 202, cancelled.text
    view = await wait_task(slow_api, headers, task_id, "Cancelled")
    assert view["progress"] < 100
    assert len(await logs(slow_api, headers, task_id)) < 6
    deleted = await slow_api.delete(f"/api/tasks/{task_id}", headers=headers)
    assert deleted.status_code == 200
    assert (await slow_api.get(f"/api/tasks/{task_id}", headers=headers)).status_code == 404


async def test_a_running_task_cannot_be_deleted(
    slow_api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    task, _ = await _checksum_task(slow_api, headers, 3)
    response = await slow_api.delete(f"/api/tasks/{task['taskId']}", headers=headers)
    assert response.status_code == 409
    await slow_api.post(f"/api/tasks/{task['taskId']}/cancel", headers=headers)
    await wait_task(slow_api, headers, task["taskId"], "Cancelled")


class VanishingFile:
    """A file on the S3 pool whose object can be taken away and put back: storage that fails
    for a while, without mocking anything."""

    def __init__(self, settings: Settings, s3_endpoint: str, bucket: str, file_id: str) -> None:
        self.client = s3_client(s3_endpoint)
        self.bucket = bucket
        with database(settings) as conn:
            query = text("SELECT storage_key FROM files WHERE id = :id")
            self.key: str = conn.execute(query, {"id": file_id}).scalar_one()

    def _copy(self, source: str, target: str) -> None:
        self.client.copy_object(
            Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}
        )

    def hide(self) -> None:
        self._copy(self.key, f"{self.key}.hidden")
        self.client.delete_object(Bucket=self.bucket, Key=self.key)

    def restore(self) -> None:
        self._copy(f"{self.key}.hidden", self.key)


@pytest.fixture
async def vanishing(
    api: httpx.AsyncClient,
    account: Account,
    settings: Settings,
    s3_endpoint: str,
    s3_bucket: str,
) -> tuple[bytes, str, VanishingFile]:
    """Some bytes uploaded to the S3 pool: (data, file id, its object), the object hidden."""
    data = random_bytes(6 * 1024 * KiB)
    cloud_file = await upload_file(api, account[1], data, pool_id=S3_POOL_ID)
    stored = VanishingFile(settings, s3_endpoint, s3_bucket, cloud_file["id"])
    stored.hide()
    return data, cloud_file["id"], stored


async def test_a_transient_failure_is_retried_then_succeeds(
    api: httpx.AsyncClient,
    account: Account,
    vanishing: tuple[bytes, str, VanishingFile],
    temporal_client: Client,
) -> None:
    _, headers = account
    data, file_id, stored = vanishing  # the storage "goes away"
    task = await create_task(api, headers, "FileChecksum", {"fileIds": [file_id]}, maxRetries=6)
    retrying = await wait_task(api, headers, task["taskId"], lambda t: t["retryCount"] >= 1)
    assert retrying["status"] == "InProgress"
    assert retrying["lastError"]
    stored.restore()  # ... and comes back

    done = await wait_task(api, headers, task["taskId"], "Completed", deadline=120)
    assert done["retryCount"] >= 1
    assert done["lastError"] == retrying["lastError"]
    assert list(done["results"]["digests"].values()) == [sha256(data)]
    # In the Web UI it was InProgress from the start; a retry changes no status there.
    assert await status_upserts(temporal_client, task["taskId"]) == ["Completed"]


async def test_retry_runs_a_failed_task_again_as_the_same_task(
    api: httpx.AsyncClient, account: Account, vanishing: tuple[bytes, str, VanishingFile]
) -> None:
    _, headers = account
    data, file_id, stored = vanishing
    task = await create_task(api, headers, "FileChecksum", {"fileIds": [file_id]}, maxRetries=0)
    failed = await wait_task(api, headers, task["taskId"], "Failed")
    assert failed["errorMessage"]

    stored.restore()
    retried = await api.post(f"/api/tasks/{task['taskId']}/retry", headers=headers)
    assert retried.status_code == 202, retried.text
    done = await wait_task(api, headers, task["taskId"], "Completed")
    assert done["taskId"] == task["taskId"]
    assert list(done["results"]["digests"].values()) == [sha256(data)]
    assert (await get_task(api, headers, task["taskId"]))["errorMessage"] is None


async def _failed_checksum(
    api: httpx.AsyncClient, headers: dict[str, str], vanishing: tuple[bytes, str, VanishingFile]
) -> str:
    """A FileChecksum task Failed (its file's object hidden), and the object put back."""
    _, file_id, stored = vanishing
    task = await create_task(api, headers, "FileChecksum", {"fileIds": [file_id]}, maxRetries=0)
    await wait_task(api, headers, task["taskId"], "Failed")
    stored.restore()
    return str(task["taskId"])


async def _stand_in_run(
    client: Client, task_id: str, *, closes_after: timedelta | None = None
) -> WorkflowHandle[Any, Any]:
    """An open run of the finished task, as its last run is for a moment after its outcome
    shows: started with the task's input on a queue no worker polls, so it never runs."""
    history = await closed_history(client, task_id)
    started = history.events[0].workflow_execution_started_event_attributes
    return await client.start_workflow(
        started.workflow_type.name,
        await started_input(client, history),
        id=task_id,
        task_queue=f"unpolled-{uuid.uuid4().hex[:8]}",
        execution_timeout=closes_after,
    )


async def test_retry_waits_for_the_last_run_to_close(
    api: httpx.AsyncClient,
    account: Account,
    vanishing: tuple[bytes, str, VanishingFile],
    settings: Settings,
    temporal_client: Client,
) -> None:
    """Temporal starts no run of a task while another is open, and a task's run closes a
    moment after its outcome shows: a retry in that moment waits for the close."""
    _, headers = account
    data = vanishing[0]
    task_id = await _failed_checksum(api, headers, vanishing)

    open_run = await _stand_in_run(temporal_client, task_id)
    impatient = settings.model_copy(update={"task_retry_wait_seconds": 0.2})
    async with api_client(impatient) as impatient_api:
        refused = await impatient_api.post(f"/api/tasks/{task_id}/retry", headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "INVALID_TASK_STATE"
    assert refused.json()["details"]["status"] == "Failed"
    assert (await get_task(api, headers, task_id))["status"] == "Failed"
    await open_run.terminate("the test is done with it")

    # A run that closes while the retry waits (Temporal times it out): the retry goes on.
    await _stand_in_run(temporal_client, task_id, closes_after=timedelta(seconds=2))
    retried = await api.post(f"/api/tasks/{task_id}/retry", headers=headers)
    assert retried.status_code == 202, retried.text
    done = await wait_task(api, headers, task_id, "Completed")
    assert list(done["results"]["digests"].values()) == [sha256(data)]


async def test_retry_after_temporal_dropped_the_history_runs_the_task_again(
    api: httpx.AsyncClient,
    account: Account,
    vanishing: tuple[bytes, str, VanishingFile],
    settings: Settings,
) -> None:
    """Temporal drops a closed workflow's history once the namespace's retention has passed;
    the task, still listed, runs again from the input its row keeps. The API and a worker on a
    namespace that never held the task see it as it is then."""
    _, headers = account
    data = vanishing[0]
    task_id = await _failed_checksum(api, headers, vanishing)

    elsewhere = settings.model_copy(update={"temporal_namespace": EMPTY_NAMESPACE})
    async with api_client(elsewhere) as elsewhere_api, worker_running(elsewhere):
        retried = await elsewhere_api.post(f"/api/tasks/{task_id}/retry", headers=headers)
        assert retried.status_code == 202, retried.text
        done = await wait_task(elsewhere_api, headers, task_id, "Completed")
    assert list(done["results"]["digests"].values()) == [sha256(data)]
    assert done["parameters"]["fileIds"] == [vanishing[1]]


async def test_retry_of_a_task_without_its_input_or_history_is_gone(
    api: httpx.AsyncClient,
    account: Account,
    vanishing: tuple[bytes, str, VanishingFile],
    settings: Settings,
) -> None:
    """A task created before rows kept their input (migration 0006) runs again from its
    history; once Temporal has dropped that too, the retry answers 410."""
    _, headers = account
    task_id = await _failed_checksum(api, headers, vanishing)
    with database(settings) as conn:
        conn.execute(text("UPDATE tasks SET run_input = NULL WHERE task_id = :id"), {"id": task_id})

    elsewhere = settings.model_copy(update={"temporal_namespace": EMPTY_NAMESPACE})
    async with api_client(elsewhere) as elsewhere_api:
        gone = await elsewhere_api.post(f"/api/tasks/{task_id}/retry", headers=headers)
    assert gone.status_code == 410, gone.text
    assert gone.json()["code"] == "TASK_GONE"
    assert (await get_task(api, headers, task_id))["status"] == "Failed"

    retried = await api.post(f"/api/tasks/{task_id}/retry", headers=headers)  # its history
    assert retried.status_code == 202, retried.text
    await wait_task(api, headers, task_id, "Completed")
