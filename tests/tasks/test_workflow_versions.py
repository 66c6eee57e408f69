"""A task started now says in its input which workflow changes it has (``workflows.versions``):
its history has no patch markers and no ``TemporalChangeVersion`` search attribute, runs every
change, and replays on the code that ran it."""

from __future__ import annotations

import uuid

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from tests.tasking import (
    closed_history,
    create_task,
    started_input,
    status_upserts,
    upload_file,
    wait_task,
)
from tests.uploading import random_bytes
from worker import all_workflows
from workflows import versions

Account = tuple[uuid.UUID, dict[str, str]]
PATCH_MARKER = "core_patch"  # the marker name of workflow.patched in Temporal's core SDK


async def _assert_versioned_by_input(client: Client, history: WorkflowHistory) -> None:
    assert (await started_input(client, history)).version == versions.CURRENT
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:  # local activities' too
            assert event.marker_recorded_event_attributes.marker_name != PATCH_MARKER
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            upserted = event.upsert_workflow_search_attributes_event_attributes
            assert "TemporalChangeVersion" not in upserted.search_attributes.indexed_fields


def _activities(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def _replays(history: WorkflowHistory) -> None:
    result = await Replayer(workflows=all_workflows()).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure


async def test_a_completed_task_records_its_version_and_no_marker(
    api: httpx.AsyncClient, account: Account, temporal_client: Client
) -> None:
    _, headers = account
    created = await create_task(api, headers, "NoOp", {})
    await wait_task(api, headers, created["taskId"], "Completed")

    history = await closed_history(temporal_client, created["taskId"])
    await _assert_versioned_by_input(temporal_client, history)
    # Its writes rode with its step: no local activity delivered them. It started InProgress
    # for the Web UI, so its one status upsert is its outcome.
    assert _activities(history) == ["NoOp.nothing"]
    assert await status_upserts(temporal_client, created["taskId"]) == ["Completed"]
    await _replays(history)


async def test_a_failed_move_runs_its_versioned_cleanup_without_a_marker(
    api: httpx.AsyncClient, account: Account, temporal_client: Client
) -> None:
    _, headers = account
    stored = await upload_file(api, headers, random_bytes(1024))
    created = await create_task(
        api, headers, "FileMove", {"fileIds": [stored["id"]], "targetPoolId": str(uuid.uuid4())}
    )
    await wait_task(api, headers, created["taskId"], "Failed")

    history = await closed_history(temporal_client, created["taskId"])
    await _assert_versioned_by_input(temporal_client, history)
    assert _activities(history)[-1] == "relocation.settle_moves"
    await _replays(history)
