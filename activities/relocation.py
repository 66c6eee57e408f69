"""Relocating files' bytes: to another pool (FileMove, StorageMigration, BulkOperation's move),
or to a new key in the same pool (FileEncrypt and FileDecrypt's rewrite, ``note_rewrite``).

A move is ordered so that stopping between any two of its steps, by a crash or an error,
leaves exactly one live record pointing at valid bytes:

1. copy the bytes to ``files/<id>`` in the target pool, checked against the record's SHA-256;
2. switch the record to the target (pool, key, bundle) in one transaction, only if it still
   points where the copy came from;
3. remove the source object.

Before (1) the move is noted in Postgres (``file_relocations``); the note goes once the
step's checkpoint has the move. A step that starts again (a retry, a resume) first ``settle``s
the notes its task left, removing whichever side of each interrupted move no record points
at, so failed attempts leave no stray objects behind, and a move that got past (2) counts as
done. A task that ends short of Completed settles them in its cleanup
(``settle_moves_step``): the note is in the database, not only in a heartbeat, so even a step
whose worker died unanswered leaves nothing behind. A rewrite follows the same three steps
with new bytes in place of the copy, and its note is settled the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities.files import storage_key, switch_record
from activities.steps import StepContext, StepFailed, run_step
from activities.streams import copy_verified
from taskdrive.db.models import File, FileRelocation
from taskdrive.errors import ErrorCode
from taskdrive.pools import Pool
from taskdrive.tasks import StepRequest, StepResult

PENDING = "pending"  # where steps before file_relocations noted the move under way


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
    done = {move["fileId"] for move in moved}
    for move in await settle(ctx):
        if move["fileId"] not in done:
            moved.append(move)
            done.add(move["fileId"])
    # By id: a file named twice is moved once (a second copy would read a gone source).
    remaining = list({str(f.id): f for f in files if str(f.id) not in done}.values())
    total = len(moved) + len(remaining)
    for file in remaining:
        moved.append(await move_file(ctx, file, target_id, bundle_id))
        await ctx.save(progress=100.0 * len(moved) / total, moved=moved)
        await checkpointed(ctx)
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
    move = _Move(
        file.id, (file.pool_id, file.storage_key), (target_id, storage_key(file.id)), record
    )
    await move.note(ctx)
    ctx.heartbeat()  # liveness before a long copy; no place to stop
    ctx.log.info("copying %s (%s, %d bytes) to pool %s", file.name, file.id, file.size, target.name)
    await copy_verified(ctx, file, target, move.to[1])
    placed = {
        "pool_id": target_id,
        "storage_key": move.to[1],
        "bundle_id": bundle_id or file.bundle_id,
    }
    if not await switch_record(ctx.runtime, file, **placed):
        raise _changed(file)  # the retry settles the copy and reloads the file
    await ctx.runtime.pools.get(file.pool_id).delete(file.storage_key)
    return record  # the note stays until the caller's checkpoint has the move (``checkpointed``)


async def note_rewrite(ctx: StepContext, file: File, key: str) -> None:
    """Notes, before its new bytes are written to ``key`` in the file's pool, that ``file`` is
    being rewritten; ``checkpointed`` and ``settle`` then treat it as a move."""
    source = (file.pool_id, file.storage_key)
    await _Move(file.id, source, (file.pool_id, key), {"fileId": str(file.id)}).note(ctx)


async def checkpointed(ctx: StepContext) -> None:
    """The moves of the task's step are in its checkpoint now: their notes go. (Sooner, a
    crash before that checkpoint would leave a move neither noted nor checkpointed.)"""
    await _forget(ctx)


async def _forget(ctx: StepContext, file_id: uuid.UUID | None = None) -> None:
    """Removes the task's notes (of one file's move when ``file_id`` is given)."""
    noted = delete(FileRelocation).where(FileRelocation.task_id == ctx.task_id)
    if file_id is not None:
        noted = noted.where(FileRelocation.file_id == file_id)
    async with ctx.runtime.sessions.begin() as session:
        await session.execute(noted)


@dataclass(frozen=True)
class _Move:
    """One file's move: from and to (pool, key), and the record the step reports for it."""

    file_id: uuid.UUID
    source: tuple[uuid.UUID, str]
    to: tuple[uuid.UUID, str]
    record: dict[str, Any]

    @classmethod
    def of_note(cls, note: FileRelocation) -> _Move:
        source, to = (note.from_pool_id, note.from_key), (note.to_pool_id, note.to_key)
        return cls(note.file_id, source, to, note.move)

    @classmethod
    def of_checkpoint(cls, pending: dict[str, Any]) -> _Move:
        (from_pool, from_key), (to_pool, to_key) = pending["from"], pending["to"]
        file_id = uuid.UUID(pending["move"]["fileId"])
        return cls(
            file_id, (uuid.UUID(from_pool), from_key), (uuid.UUID(to_pool), to_key), pending["move"]
        )

    async def note(self, ctx: StepContext) -> None:
        values = {
            "task_id": ctx.task_id,
            "file_id": self.file_id,
            "from_pool_id": self.source[0],
            "from_key": self.source[1],
            "to_pool_id": self.to[0],
            "to_key": self.to[1],
            "move": self.record,
        }
        statement = insert(FileRelocation).values(values)
        async with ctx.runtime.sessions.begin() as session:
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["task_id", "file_id"], set_=statement.excluded
                )
            )

    async def settle(self, ctx: StepContext) -> bool:
        """Of the move's two objects, removes the one the file's live record does not point at
        (without a live record both stay: nothing says which bytes are still wanted); True
        when the record had switched, so the move is done."""
        async with ctx.runtime.sessions() as session:
            row = await session.get(File, self.file_id)
        switched = False
        if row is not None and row.deleted_at is None:
            live = (row.pool_id, row.storage_key)
            for pool_id, key in (self.source, self.to):
                if (pool_id, key) != live:
                    await ctx.runtime.pools.get(pool_id).delete(key)
            switched = live == self.to
        await _forget(ctx, self.file_id)
        return switched


async def settle(ctx: StepContext) -> list[dict[str, Any]]:
    """Finishes or undoes the moves an earlier run of the task's step left under way; returns
    the records of those whose file record had switched, so they are done."""
    async with ctx.runtime.sessions() as session:
        notes = await session.scalars(
            select(FileRelocation).where(FileRelocation.task_id == ctx.task_id)
        )
        moves = [_Move.of_note(note) for note in notes]
    legacy: dict[str, Any] | None = ctx.checkpoint.pop(PENDING, None)
    if legacy is not None:
        moves.append(_Move.of_checkpoint(legacy))
    return [move.record for move in moves if await move.settle(ctx)]


@activity.defn(name="relocation.settle_moves")
async def settle_moves_step(request: StepRequest) -> StepResult:
    """Cleanup of the types that move files: settles whatever moves the task left under way."""
    return await run_step(request, _settle_moves)


async def _settle_moves(ctx: StepContext) -> dict[str, Any]:
    settled = await settle(ctx)
    if settled:
        ctx.log.info("settled %d move(s) left under way", len(settled))
    return {}


def _changed(file: File) -> StepFailed:
    # Moved, rewritten or deleted by another task meanwhile: not permanent, so the step runs
    # again and sees the file as it is now.
    return StepFailed(ErrorCode.FILE_NOT_FOUND, f"{file.name} ({file.id}) changed meanwhile")
