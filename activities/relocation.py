"""Moving files' bytes to another pool, shared by the types that relocate files (FileMove,
StorageMigration, BulkOperation's move).

A move is ordered so that stopping between any two of its steps, by a crash or an error,
leaves exactly one live record pointing at valid bytes:

1. copy the bytes to ``files/<id>`` in the target pool, checked against the record's SHA-256;
2. switch the record to the target (pool, key, bundle) in one transaction, only if it still
   points where the copy came from;
3. remove the source object.

Before (1) the move is noted in the step's checkpoint as ``pending``; a step that starts again
with it (a retry, a resume) first ``settle``s it, removing whichever side of that interrupted
move no record points at, so failed attempts leave no stray objects behind, and a move that
got past (2) counts as done.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from activities.files import storage_key, switch_record
from activities.steps import StepContext, StepFailed
from activities.streams import copy_verified
from taskdrive.db.models import File
from taskdrive.errors import ErrorCode
from taskdrive.pools import Pool

PENDING = "pending"  # the checkpoint entry of the move under way


def configured_pool(ctx: StepContext, pool_id: uuid.UUID) -> Pool:
    """The pool a task names; an unknown one fails the task for good (parameters cannot be
    checked against the configured pools at create)."""
    try:
        return ctx.runtime.pools.get(pool_id)
    except KeyError:
        raise StepFailed(
            ErrorCode.POOL_NOT_FOUND, f"no pool {pool_id} is configured", permanent=True
        ) from None


async def move_files(
    ctx: StepContext, files: Sequence[File], target_id: uuid.UUID, bundle_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    """Moves each file (see ``move_file``), checkpointing after each one as ``moved``, so a
    pause, retry or crash never copies a moved file again. Returns every move's record, the
    ones done before this run of the step included, in order."""
    # A list, not a dict by id: checkpoints reach the step again with their keys sorted.
    moved: list[dict[str, Any]] = list(ctx.checkpoint.get("moved", []))
    settled = await settle(ctx)
    if settled is not None:
        moved.append(settled)
    done = {move["fileId"] for move in moved}
    # By id: a file named twice is moved once (a second copy would read a gone source).
    remaining = list({str(f.id): f for f in files if str(f.id) not in done}.values())
    total = len(moved) + len(remaining)
    for file in remaining:
        moved.append(await move_file(ctx, file, target_id, bundle_id))
        await ctx.save(progress=100.0 * len(moved) / total, moved=moved)
    return moved


async def move_file(
    ctx: StepContext, file: File, target_id: uuid.UUID, bundle_id: uuid.UUID | None
) -> dict[str, Any]:
    """Moves ``file`` into pool ``target_id`` and, when ``bundle_id`` is given, that bundle
    (None keeps the file's bundle). A file already in the target pool is only re-bundled:
    every pool keeps a file at the same key, so there is nothing to copy."""
    record: dict[str, Any] = {
        "fileId": str(file.id),
        "fromPoolId": str(file.pool_id),
        "toPoolId": str(target_id),
        "size": file.size,
    }
    if file.pool_id == target_id:
        rebundle = bundle_id not in (None, file.bundle_id)
        if rebundle and not await switch_record(ctx.runtime, file, bundle_id=bundle_id):
            raise _changed(file)
        return record
    target = configured_pool(ctx, target_id)
    key = storage_key(file.id)
    ctx.checkpoint[PENDING] = {
        "move": record,
        "from": [str(file.pool_id), file.storage_key],
        "to": [str(target_id), key],
    }
    ctx.heartbeat()  # not a save: the note must reach Temporal, but this is no place to stop
    ctx.log.info("copying %s (%s, %d bytes) to pool %s", file.name, file.id, file.size, target.name)
    await copy_verified(ctx, file, target, key)
    placed = {"pool_id": target_id, "storage_key": key, "bundle_id": bundle_id or file.bundle_id}
    if not await switch_record(ctx.runtime, file, **placed):
        raise _changed(file)  # the retry settles the copy and reloads the file
    await ctx.runtime.pools.get(file.pool_id).delete(file.storage_key)
    del ctx.checkpoint[PENDING]
    return record


async def settle(ctx: StepContext) -> dict[str, Any] | None:
    """Finishes or undoes the move an earlier run of the step left pending: of its two
    objects, removes the one the file's live record does not point at (without a live record
    both stay: nothing says which bytes are still wanted). Returns the move's record when
    the record had switched, so the move is done."""
    pending: dict[str, Any] | None = ctx.checkpoint.pop(PENDING, None)
    if pending is None:
        return None
    async with ctx.runtime.sessions() as session:
        row = await session.get(File, uuid.UUID(pending["move"]["fileId"]))
    if row is None or row.deleted_at is not None:
        return None
    live = [str(row.pool_id), row.storage_key]
    for pool_id, key in (pending["from"], pending["to"]):
        if [pool_id, key] != live:
            await ctx.runtime.pools.get(uuid.UUID(pool_id)).delete(key)
    move: dict[str, Any] = pending["move"]
    return move if live == pending["to"] else None


def _changed(file: File) -> StepFailed:
    # Moved, rewritten or deleted by another task meanwhile: not permanent, so the step runs
    # again and sees the file as it is now.
    return StepFailed(ErrorCode.FILE_NOT_FOUND, f"{file.name} ({file.id}) changed meanwhile")
