"""FileMove: moves files to another pool (and optionally into a bundle).

Each file's bytes are copied to the target pool and checked against its SHA-256, then its
record switches pools, then the source object goes (``activities.relocation`` says why in that
order). The step checkpoints after each file, so pause, resume, retries and crashes never copy
a moved file again; a file already in the target pool is only re-bundled.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio import activity, workflow

from tasktypes._relocating import settle_replacements
from workflows.lifecycle import TaskWorkflow
from workflows.versions import MOVE_CLEANUP_SETTLES

with workflow.unsafe.imports_passed_through():
    from pydantic import Field

    from activities.files import load_files
    from activities.relocation import configured_pool, move_files, settle_moves_step
    from activities.steps import StepContext, run_step
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome


class FileMoveParams(TaskParams):
    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)
    target_pool_id: uuid.UUID
    target_bundle_id: uuid.UUID | None = Field(
        default=None, description="The bundle the files join; none: each keeps its own."
    )


@activity.defn(name="FileMove.move_files")
async def move_step(request: StepRequest) -> StepResult:
    return await run_step(request, _move_files)


async def _move_files(ctx: StepContext) -> dict[str, Any]:
    params = FileMoveParams.model_validate(ctx.params)
    configured_pool(ctx, params.target_pool_id)  # an unknown pool fails before any file moves
    wanted = [str(file_id) for file_id in params.file_ids]
    files = await load_files(ctx.runtime, ctx.request.account_id, wanted)
    moved = await move_files(ctx, files, params.target_pool_id, params.target_bundle_id)
    return {"files": moved}


@workflow.defn(name="FileMove")
class FileMoveWorkflow(TaskWorkflow[FileMoveParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        return await self.step(move_step, final=True)

    async def cleanup(self) -> None:
        # A move cut short leaves no stray object.
        await settle_replacements(self, MOVE_CLEANUP_SETTLES)


FILE_MOVE = register(
    TaskType(
        name="FileMove",
        category="files",
        default_priority=50,
        description="Moves files to another pool, verified by SHA-256",
        params=FileMoveParams,
        workflow=FileMoveWorkflow,
        activities=(move_step, settle_moves_step),
        retry=RetryRules(max_retries=3, initial_seconds=1.0),
    )
)
