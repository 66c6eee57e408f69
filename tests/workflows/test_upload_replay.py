"""The upload workflow replays its own recorded histories: its code is deterministic."""

from __future__ import annotations

import uuid

import httpx
from temporalio.client import Client
from temporalio.worker import Replayer

from taskdrive.tasks import (
    SIGNAL_PAUSE,
    SIGNAL_RESUME,
    LifecycleSignal,
)
from tasktypes.file_upload import FileUploadWorkflow
from tests.tasking import closed_history
from tests.uploading import complete, create, random_bytes, send_chunks, wait_for_status


async def test_histories_replay_without_nondeterminism(
    api: httpx.AsyncClient, account: tuple[uuid.UUID, dict[str, str]], temporal_client: Client
) -> None:
    _, headers = account
    finished = await create(api, headers, random_bytes(3000), chunk_size=1000)
    handle = temporal_client.get_workflow_handle(finished.task_id)
    await send_chunks(api, headers, finished, [2])
    await handle.signal(SIGNAL_PAUSE, LifecycleSignal())
    await wait_for_status(api, headers, finished.task_id, "Paused")
    await handle.signal(SIGNAL_RESUME, LifecycleSignal())
    await wait_for_status(api, headers, finished.task_id, "InProgress")
    await send_chunks(api, headers, finished, [0, 1])
    assert (await complete(api, headers, finished)).status_code == 200

    cancelled = await create(api, headers, random_bytes(10), chunk_size=5)
    await api.delete(f"/api/files/upload/task/{cancelled.task_id}", headers=headers)

    replayer = Replayer(workflows=[FileUploadWorkflow])
    for task_id in (finished.task_id, cancelled.task_id):
        history = await closed_history(temporal_client, task_id)
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
