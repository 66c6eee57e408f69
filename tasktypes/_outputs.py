"""Taking back what a task wrote: FileCompress's archive, FileDecompress's entries.

The archive types write new files (objects under ``files/<output id>`` and their records). When
such a task is cancelled or fails, ``cleanup()`` asks for them to be removed with
``run_cleanup``, which runs a removal step of the type outside ``TaskWorkflow.step`` (that one
ends the task at once when it was cancelled, which is exactly when cleanup runs).

(Not a task type: ``tasktypes`` skips modules whose name starts with ``_``.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from sqlalchemy import delete

    from activities.files import storage_key
    from activities.runtime import Runtime
    from taskdrive.db.models import File
    from taskdrive.pools import Pool
    from taskdrive.tasks import StepRequest
    from workflows.lifecycle import Step, TaskWorkflow

# Deletes in flight at once: S3 answers each in a round trip; a pool is not to be flooded.
_PARALLEL_DELETES = 16
# A removal step is retried by Temporal after a crash or timeout; its own errors end it (the
# task's outcome is already decided, and a failed cleanup is only logged).
_CLEANUP_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))


async def remove_outputs(
    runtime: Runtime, account_id: str, pool: Pool, ids: Collection[uuid.UUID]
) -> None:
    """Removes the files ``ids`` of the account: records first, so no record ever points at a
    removed object, then the objects in ``pool``. Idempotent; ids without either are fine."""
    if not ids:
        return
    async with runtime.sessions.begin() as session:
        await session.execute(
            delete(File).where(File.account_id == uuid.UUID(account_id), File.id.in_(list(ids)))
        )
    slots = asyncio.Semaphore(_PARALLEL_DELETES)

    async def remove(file_id: uuid.UUID) -> None:
        async with slots:
            await pool.delete(storage_key(file_id))

    async with asyncio.TaskGroup() as group:
        for file_id in ids:
            group.create_task(remove(file_id))


async def run_cleanup(
    task: TaskWorkflow[Any], step: Step, data: dict[str, Any] | None = None
) -> None:
    """Runs the removal ``step`` once (from a workflow's ``cleanup``), to its end."""
    inp = task.task_input
    await workflow.execute_activity(
        step,
        StepRequest(
            task_id=inp.header.task_id,
            account_id=inp.header.account_id,
            params=inp.params,
            data=data or {},
        ),
        start_to_close_timeout=timedelta(hours=1),
        heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_seconds),
        retry_policy=_CLEANUP_RETRY,
    )
