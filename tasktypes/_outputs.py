"""Taking back what a task wrote: FileCompress's archive, FileDecompress's entries.

The archive types write new files (objects under ``files/<output id>`` and their records). When
such a task is cancelled or fails, ``cleanup()`` runs a removal step of the type with
``TaskWorkflow.cleanup_step``, and the step calls ``remove_outputs``.

(Not a task type: ``tasktypes`` skips modules whose name starts with ``_``.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sqlalchemy import delete

    from activities.files import storage_key
    from activities.runtime import Runtime
    from taskdrive.db.models import File
    from taskdrive.pools import Pool

# Deletes in flight at once: S3 answers each in a round trip; a pool is not to be flooded.
_PARALLEL_DELETES = 16


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
