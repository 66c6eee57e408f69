"""Priorities: when a category's workers are busy, the higher-priority tasks waiting run first.

Needs the dev server to write each task queue's tasks to one partition
(``taskdrive.embedded.DEV_SERVER_DYNAMIC_CONFIG``): Temporal orders by priority within a
partition only.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from taskdrive.settings import Settings
from tests.fixtures.app import api_client, worker_running
from tests.tasking import audit_trail, create_task, get_task, upload_file, wait_task
from tests.uploading import poll_until, random_bytes

Account = tuple[uuid.UUID, dict[str, str]]
KiB = 1024
RATE = 64 * KiB  # bytes a second a step reads: a blocker file takes a second
BLOCKER_FILES = 12  # seconds the blocker holds the slot unless cancelled
LOW, HIGH = 10, 90  # Temporal priority keys 5 and 1
EACH = 6  # tasks of each priority


@pytest.fixture(scope="module")
async def one_slot_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An API and a worker on their own task queues that run one activity at a time in the
    files category, reading at ``RATE``."""
    single = settings.model_copy(
        update={
            "task_queue_prefix": f"one-{uuid.uuid4().hex[:8]}",
            "category_concurrency": {"files": 1},
            "task_max_bytes_per_second": RATE,
        }
    )
    async with worker_running(single), api_client(single) as client:
        yield client


async def test_higher_priority_tasks_waiting_for_a_busy_category_run_first(
    one_slot_api: httpx.AsyncClient, account: Account, temporal_client: Client
) -> None:
    api = one_slot_api
    _, headers = account
    blocker, small = await _blocked(api, headers)

    async def queued(priority: int) -> str:
        task = await create_task(
            api, headers, "FileChecksum", {"fileIds": [small["id"]]}, priority=priority
        )
        task_id: str = task["taskId"]
        return task_id

    lows = [await queued(LOW) for _ in range(EACH)]  # created first: FIFO would run them first
    highs = [await queued(HIGH) for _ in range(EACH)]
    await poll_until(
        lambda: _waiting(temporal_client, lows + highs),
        lambda view: not view["notYet"],
        deadline=30,
        what="every task's first activity waiting in the queue",
    )
    still = await get_task(api, headers, blocker["taskId"])
    assert still["status"] == "InProgress", "the blocker ended before the others queued"

    cancelled = await api.post(f"/api/tasks/{blocker['taskId']}/cancel", headers=headers)
    assert cancelled.status_code == 202, cancelled.text
    started: dict[str, datetime] = {}
    for task_id in lows + highs:
        await wait_task(api, headers, task_id, "Completed")
        started[task_id] = await _step_started(api, headers, task_id)

    # One slot: each step starts after the previous ended, so the order of their first log
    # lines is the order they ran in. (Not startedAt: that is the workflow's clock when it
    # began, before its first activity queued behind the blocker, so it follows creation.)
    order = ["high" if t in highs else "low" for t in sorted(started, key=started.__getitem__)]
    assert order == ["high"] * EACH + ["low"] * EACH


async def test_a_task_cancelled_while_waiting_for_a_worker_keeps_its_whole_audit_trail(
    one_slot_api: httpx.AsyncClient, account: Account, temporal_client: Client
) -> None:
    api = one_slot_api
    _, headers = account
    blocker, small = await _blocked(api, headers)
    waiting = (await create_task(api, headers, "FileChecksum", {"fileIds": [small["id"]]}))[
        "taskId"
    ]
    await poll_until(
        lambda: _waiting(temporal_client, [waiting]),
        lambda view: not view["notYet"],
        deadline=30,
        what="the task's step waiting in the queue",
    )
    # Its step has not reached a worker: the task has not started yet.
    assert (await get_task(api, headers, waiting))["status"] == "Pending"

    cancelled = await api.post(f"/api/tasks/{waiting}/cancel", headers=headers)
    assert cancelled.status_code == 202, cancelled.text
    await wait_task(api, headers, waiting, "Cancelled")
    # The start the step was carrying to the projection is delivered all the same, in order.
    events = await audit_trail(api, headers, waiting)
    assert [(e["fromStatus"], e["toStatus"]) for e in events] == [
        (None, "Pending"),
        ("Pending", "InProgress"),
        ("InProgress", "Cancelled"),
    ]
    assert (await get_task(api, headers, blocker["taskId"]))["status"] == "InProgress"
    await api.post(f"/api/tasks/{blocker['taskId']}/cancel", headers=headers)
    await wait_task(api, headers, blocker["taskId"], "Cancelled")


async def _blocked(
    api: httpx.AsyncClient, headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A blocker task that has taken the category's one activity slot and keeps it, file after
    file, and a small file for the tasks that queue behind it."""
    blocker_files = [
        await upload_file(api, headers, random_bytes(RATE), name=f"slow{n}.bin")
        for n in range(BLOCKER_FILES)
    ]
    small = await upload_file(api, headers, random_bytes(KiB), name="small.bin")
    blocker = await create_task(
        api, headers, "FileChecksum", {"fileIds": [f["id"] for f in blocker_files]}
    )
    await wait_task(api, headers, blocker["taskId"], lambda t: t["progress"] > 0)
    return blocker, small


async def _waiting(client: Client, task_ids: list[str]) -> dict[str, Any]:
    """The tasks whose workflows have no activity scheduled yet (the first projection write
    of a task queued behind the blocker is one)."""
    not_yet = []
    for task_id in task_ids:
        described = await client.get_workflow_handle(task_id).describe()
        states = [a.state for a in described.raw_description.pending_activities]
        if PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED not in states:
            not_yet.append(task_id)
    return {"notYet": not_yet}


async def _step_started(api: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> datetime:
    response = await api.get(f"/api/tasks/{task_id}/logs", headers=headers)
    assert response.status_code == 200, response.text
    first = response.json()[0]
    assert first["message"].startswith("hashing small.bin"), first
    return datetime.fromisoformat(first["loggedAt"])
