"""BulkOperation: deletes, moves or copies many files, each on its own.

Every file is an item with its own outcome in the results (``items``: ``ok``, or ``failed`` with
the error), so a file that is missing or fails for good does not stop the others; errors that a
retry can cure (storage away for a moment) retry the step, which goes on from its checkpoint.

- delete: a soft delete (the record's ``deleted_at``), then the bytes are removed; a file of
  the account deleted already is ``ok`` (its bytes removed again), so a repeat finishes it;
- move: as FileMove (``activities.relocation``);
- copy: a new file (its id stable per task and source, so a repeated step makes no second one)
  in the target pool, or in the source's pool when none is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Self

from temporalio import activity, workflow

from tasktypes._relocating import settle_replacements
from workflows.lifecycle import TaskWorkflow
from workflows.versions import MOVE_CLEANUP_SETTLES

with workflow.unsafe.imports_passed_through():
    from pydantic import Field, model_validator
    from sqlalchemy import func, select, update

    from activities.files import NewFile, add_files, output_id, storage_key
    from activities.relocation import (
        checkpointed,
        configured_pool,
        move_file,
        settle,
        settle_moves_step,
    )
    from activities.steps import StepContext, StepFailed, run_step
    from activities.streams import copy_verified
    from taskdrive.db.models import File
    from taskdrive.errors import ErrorCode
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome

Operation = Literal["delete", "move", "copy"]


class Placement(TaskParams):
    target_pool_id: uuid.UUID | None = Field(
        default=None, description="move: required; copy: none keeps each file's pool."
    )
    target_bundle_id: uuid.UUID | None = Field(
        default=None, description="none keeps each file's bundle."
    )


class BulkOperationParams(TaskParams):
    operation_type: Operation
    target_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)
    operation_parameters: Placement | None = None

    @model_validator(mode="after")
    def _parameters_fit_the_operation(self) -> Self:
        given = self.operation_parameters
        if self.operation_type == "delete" and given is not None and given.model_fields_set:
            raise ValueError("a delete takes no operationParameters")
        if self.operation_type == "move" and (given is None or given.target_pool_id is None):
            raise ValueError("a move needs operationParameters.targetPoolId")
        return self


@activity.defn(name="BulkOperation.run_items")
async def items_step(request: StepRequest) -> StepResult:
    return await run_step(request, _run_items)


async def _run_items(ctx: StepContext) -> dict[str, Any]:
    params = BulkOperationParams.model_validate(ctx.params)
    place = params.operation_parameters or Placement()
    if place.target_pool_id is not None:
        configured_pool(ctx, place.target_pool_id)  # an unknown pool fails before any item
    items: dict[str, dict[str, Any]] = dict(ctx.checkpoint.get("items", {}))
    for settled in await settle(ctx):  # moves that had switched their file when a run stopped
        items[settled["fileId"]] = {"id": settled["fileId"], "status": "ok", **_places(settled)}
    ids = list(dict.fromkeys(str(target_id) for target_id in params.target_ids))
    files = await _owned_files(ctx, ids)
    operate = _OPERATIONS[params.operation_type]
    for number, item_id in enumerate(ids):
        if item_id in items:
            continue  # done before a pause, a retry or a crash
        try:
            file = _item_file(files, item_id, params.operation_type)
            items[item_id] = {"id": item_id, "status": "ok", **await operate(ctx, file, place)}
        except StepFailed as exc:
            if not exc.permanent:
                raise
            ctx.log.warning("%s of %s failed: %s", params.operation_type, item_id, exc.message)
            await settle(ctx)  # a move that failed for good leaves no stray copy
            items[item_id] = {
                "id": item_id,
                "status": "failed",
                "errorCode": exc.code,
                "error": exc.message,
            }
        await ctx.save(progress=100.0 * (number + 1) / len(ids), items=items)
        if params.operation_type == "move":
            await checkpointed(ctx)
    outcomes = [items[item_id]["status"] for item_id in ids]
    return {
        "operationType": params.operation_type,
        "succeeded": outcomes.count("ok"),
        "failed": outcomes.count("failed"),
        "items": [items[item_id] for item_id in ids],
    }


async def _owned_files(ctx: StepContext, ids: list[str]) -> dict[str, File]:
    """The account's files among ``ids``, deleted ones too (a delete repeated after a crash
    finds its file deleted already)."""
    async with ctx.runtime.sessions() as session:
        rows = await session.scalars(
            select(File).where(
                File.id.in_([uuid.UUID(item_id) for item_id in ids]),
                File.account_id == uuid.UUID(ctx.request.account_id),
            )
        )
        return {str(row.id): row for row in rows}


def _item_file(files: dict[str, File], item_id: str, operation: Operation) -> File:
    file = files.get(item_id)
    if file is None or (file.deleted_at is not None and operation != "delete"):
        raise StepFailed(ErrorCode.FILE_NOT_FOUND, f"file {item_id} not found", permanent=True)
    return file


async def _delete(ctx: StepContext, file: File, _: Placement) -> dict[str, Any]:
    # The record first: a crash in between leaves bytes no live record points at, never a
    # live record without bytes, and the repeat removes them (deleted_at keeps its first time).
    ctx.log.info("deleting %s (%s)", file.name, file.id)
    async with ctx.runtime.sessions.begin() as session:
        pool_id, key = (
            await session.execute(
                update(File)
                .where(File.id == file.id)
                .values(deleted_at=func.coalesce(File.deleted_at, func.now()))
                .returning(File.pool_id, File.storage_key)
            )
        ).one()
    await ctx.runtime.pools.get(pool_id).delete(key)
    return {}


async def _move(ctx: StepContext, file: File, place: Placement) -> dict[str, Any]:
    assert place.target_pool_id is not None, "the parameters model requires it for a move"
    return _places(await move_file(ctx, file, place.target_pool_id, place.target_bundle_id))


def _places(move: dict[str, Any]) -> dict[str, Any]:
    return {"fromPoolId": move["fromPoolId"], "toPoolId": move["toPoolId"]}


async def _copy(ctx: StepContext, file: File, place: Placement) -> dict[str, Any]:
    copy = NewFile(
        id=output_id(ctx.task_id, str(file.id)),
        name=file.name,
        size=file.size,
        hash=file.hash,
        pool_id=place.target_pool_id or file.pool_id,
        bundle_id=place.target_bundle_id or file.bundle_id,
        content_type=file.content_type,
    )
    ctx.log.info("copying %s (%s) to %s", file.name, file.id, copy.id)
    await copy_verified(ctx, file, ctx.runtime.pools.get(copy.pool_id), storage_key(copy.id))
    await add_files(ctx.runtime, ctx.request.account_id, [copy])
    return {"newFileId": str(copy.id), "poolId": str(copy.pool_id)}


Operate = Callable[[StepContext, File, Placement], Awaitable[dict[str, Any]]]
_OPERATIONS: dict[Operation, Operate] = {
    "delete": _delete,
    "move": _move,
    "copy": _copy,
}


@workflow.defn(name="BulkOperation")
class BulkOperationWorkflow(TaskWorkflow[BulkOperationParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        return await self.step(items_step, final=True)

    async def cleanup(self) -> None:
        if self.params.operation_type == "move":  # a move cut short leaves no stray object
            await settle_replacements(self, MOVE_CLEANUP_SETTLES)


BULK_OPERATION = register(
    TaskType(
        name="BulkOperation",
        category="files",
        default_priority=50,
        description="Deletes, moves or copies many files, with an outcome per file",
        params=BulkOperationParams,
        workflow=BulkOperationWorkflow,
        activities=(items_step, settle_moves_step),
        retry=RetryRules(max_retries=3, initial_seconds=1.0),
    )
)
