"""Crashes: the API process restarted mid-upload, the worker SIGKILLed during assembly."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from taskdrive.settings import Settings
from tests.fixtures.app import S3_POOL_ID, api_client, files_with_hash
from tests.fixtures.processes import child_env, free_port, taskdrive_process
from tests.uploading import complete, create, random_bytes, send_chunks, sha256, wait_for_status

MiB = 1024 * 1024
Account = tuple[uuid.UUID, dict[str, str]]


async def test_upload_resumes_after_the_api_process_restarts(
    settings: Settings, running_worker: None, account: Account, tmp_path: Path
) -> None:
    _, headers = account
    port = free_port()
    env = child_env(settings, API_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    data = random_bytes(10 * 64 * 1024)

    with taskdrive_process("api", env=env, log_path=tmp_path / "api-1.log") as first:
        await asyncio.to_thread(first.wait_http_ok, f"{base}/health")
        async with httpx.AsyncClient(base_url=base, timeout=60) as api:
            upload = await create(api, headers, data, chunk_size=64 * 1024)
            await send_chunks(api, headers, upload, [9, 0, 4, 2, 7])
        first.kill()

    with taskdrive_process("api", env=env, log_path=tmp_path / "api-2.log") as second:
        await asyncio.to_thread(second.wait_http_ok, f"{base}/health")
        async with httpx.AsyncClient(base_url=base, timeout=60) as api:
            resume = await api.get(f"/api/files/upload/resume/{upload.task_id}", headers=headers)
            assert resume.json()["uploadedChunks"] == [0, 2, 4, 7, 9]
            missing = [
                i for i in range(upload.chunks_count) if i not in resume.json()["uploadedChunks"]
            ]
            await send_chunks(api, headers, upload, missing)
            finished = await complete(api, headers, upload)
            assert finished.status_code == 200, finished.text
            assert finished.json()["hash"] == sha256(data)


async def _assembly_heartbeated(client: Client, task_id: str) -> bool:
    description = await client.get_workflow_handle(task_id).describe()
    return any(
        activity.activity_type.name == "FileUpload.assemble"
        and activity.HasField("heartbeat_details")
        for activity in description.raw_description.pending_activities
    )


async def test_a_worker_killed_during_assembly_is_replaced_and_the_file_is_whole(
    settings: Settings, account: Account, temporal_client: Client, tmp_path: Path
) -> None:
    _, headers = account
    # Its own task queues, a worker that verifies slowly (so the kill lands mid-assembly) and a
    # short heartbeat timeout (so the replacement takes over quickly). On the S3 pool, because
    # there assembly reads the whole file back to hash it (a local upload is hashed by the API
    # as its chunks arrive).
    crash = settings.model_copy(
        update={
            "task_queue_prefix": f"crash-{uuid.uuid4().hex[:8]}",
            "activity_heartbeat_timeout_seconds": 2.0,
            "upload_complete_wait_seconds": 0.0,
        }
    )
    slow = crash.model_copy(update={"assembly_max_bytes_per_second": 2 * MiB})
    data = random_bytes(24 * MiB)

    async with api_client(crash) as api:
        with taskdrive_process(
            "worker", env=child_env(slow), log_path=tmp_path / "w1.log"
        ) as doomed:
            upload = await create(api, headers, data, chunk_size=5 * MiB, pool_id=S3_POOL_ID)
            await send_chunks(api, headers, upload, list(range(upload.chunks_count)))
            accepted = await complete(api, headers, upload)
            assert accepted.status_code == 202, accepted.text
            while not await _assembly_heartbeated(temporal_client, upload.task_id):
                assert doomed.poll() is None, doomed.log_tail()
                await asyncio.sleep(0.05)
            doomed.kill()

        with taskdrive_process("worker", env=child_env(crash), log_path=tmp_path / "w2.log"):
            view = await wait_for_status(api, headers, upload.task_id, "Completed", deadline=120)

        download = await api.get(f"/api/files/{view['fileId']}", headers=headers)
        assert sha256(download.content) == sha256(data)

    assert files_with_hash(settings, sha256(data)) == 1
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in temporal_client.get_workflow_handle(
            upload.task_id
        ).fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) >= 2, "the assembly was not retried after the kill"
