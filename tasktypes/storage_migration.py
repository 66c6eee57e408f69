"""StorageMigration: moves an account's files from one pool to another.

The files named, or every live file of the account in the source pool, each copied and
checked against its SHA-256 before its record switches pools (``activities.relocation``). The
step checkpoints the migrated files one by one, so a migration paused, retried or restarted
midway goes on with the rest and never copies a migrated file again.
"""

from __future__ import annotations

import uuid
from typing import Any, Self

from temporalio import activity, workflow

from tasktypes._relocating import settle_replacements
from workflows.lifecycle import TaskWorkflow
from workflows.versions import MOVE_CLEANUP_SETTLES

with workflow.unsafe.imports_passed_through():
    from pydantic import Field, model_validator
    from sqlalchemy import select

    from activities.files import load_files
    from activities.relocation import configured_pool, move_files, settle_moves_step
    from activities.steps import StepContext, StepFailed, run_step
    from taskdrive.db.models import File
    from taskdrive.errors import ErrorCode
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome


class StorageMigrationParams(TaskParams):
    source_pool_id: uuid.UUID
    target_pool_id: uuid.UUID
    file_ids: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="The files to migrate; none: every live file of the account in the source.",
    )

    @model_validator(mode="after")
    def _two_pools(self) -> Self:
        if self.source_pool_id == self.target_pool_id:
            raise ValueError("sourcePoolId and targetPoolId must be different pools")
        return self


@activity.defn(name="StorageMigration.migrate_files")
async def migrate_step(request: StepRequest) -> StepResult:
    return await run_step(request, _migrate_files)


async def _migrate_files(ctx: StepContext) -> dict[str, Any]:
    params = StorageMigrationParams.model_validate(ctx.params)
    source_id, target_id = params.source_pool_id, params.target_pool_id
    configured_pool(ctx, source_id)
    configured_pool(ctx, target_id)
    if params.file_ids is None:
        # Listed afresh on every run of the step: the files migrated so far are in the target
        # by now, and files uploaded to the source meanwhile are migrated too.
        files = await _live_files(ctx, source_id)
    else:
        wanted = [str(file_id) for file_id in params.file_ids]
        files = await load_files(ctx.runtime, ctx.request.account_id, wanted)
        elsewhere = [str(f.id) for f in files if f.pool_id not in (source_id, target_id)]
        if elsewhere:
            raise StepFailed(
                ErrorCode.FILE_NOT_FOUND,
                f"file(s) not in pool {source_id}: {', '.join(elsewhere)}",
                permanent=True,
            )
    moved = await move_files(ctx, files, target_id, None)
    return {
        "sourcePoolId": str(source_id),
        "targetPoolId": str(target_id),
        "migrated": len(moved),
        "bytes": sum(move["size"] for move in moved),
        "files": moved,
    }


async def _live_files(ctx: StepContext, pool_id: uuid.UUID) -> list[File]:
    async with ctx.runtime.sessions() as session:
        rows = await session.scalars(
            select(File)
            .where(
                File.account_id == uuid.UUID(ctx.request.account_id),
                File.pool_id == pool_id,
                File.deleted_at.is_(None),
            )
            .order_by(File.created_at, File.id)
        )
        return list(rows)


@workflow.defn(name="StorageMigration")
class StorageMigrationWorkflow(TaskWorkflow[StorageMigrationParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        return await self.step(migrate_step, final=True)

    async def cleanup(self) -> None:
        # A move cut short leaves no stray object.
        await settle_replacements(self, MOVE_CLEANUP_SETTLES)


STORAGE_MIGRATION = register(
    TaskType(
        name="StorageMigration",
        category="storage",
        default_priority=50,
        description="Migrates an account's files from one pool to another, verified by SHA-256",
        params=StorageMigrationParams,
        workflow=StorageMigrationWorkflow,
        activities=(migrate_step, settle_moves_step),
        retry=RetryRules(max_retries=3, initial_seconds=1.0),
    )
)
