"""FileChecksum: the worked example of docs/adding-a-task-type.md.

Computes a digest of each given file. It shows every part a type has: the parameters model,
one activity step that checkpoints after each file (so pause, resume, retries and crashes never
hash a file twice), the workflow on the shared lifecycle, and the registration.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from temporalio import activity, workflow

from workflows.lifecycle import TaskWorkflow

with workflow.unsafe.imports_passed_through():
    from pydantic import Field

    from activities.files import load_files
    from activities.hashing import hash_object
    from activities.steps import StepContext, run_step
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome


class FileChecksumParams(TaskParams):
    file_ids: list[str] = Field(min_length=1, max_length=10_000)
    algorithm: Literal["sha256", "sha1", "md5", "blake2b"] = "sha256"


@activity.defn(name="FileChecksum.hash_files")
async def hash_files(request: StepRequest) -> StepResult:
    return await run_step(request, _hash_files)


async def _hash_files(ctx: StepContext) -> dict[str, Any]:
    params = FileChecksumParams.model_validate(ctx.params)
    files = await load_files(ctx.runtime, ctx.request.account_id, params.file_ids)
    digests: dict[str, str] = dict(ctx.checkpoint.get("digests", {}))
    for number, file in enumerate(files):
        if str(file.id) in digests:
            continue  # done before a pause, a retry or a crash
        ctx.log.info("hashing %s (%s, %d bytes)", file.name, file.id, file.size)
        digest = hashlib.new(params.algorithm)
        await hash_object(
            ctx.runtime.pools.get(file.pool_id),
            file.storage_key,
            digest,
            max_bytes_per_second=ctx.runtime.settings.task_max_bytes_per_second,
            on_block=lambda _: ctx.heartbeat(),
        )
        digests[str(file.id)] = digest.hexdigest()
        await ctx.save(progress=100.0 * (number + 1) / len(files), digests=digests)
    return {"algorithm": params.algorithm, "digests": digests}


@workflow.defn(name="FileChecksum")
class FileChecksumWorkflow(TaskWorkflow[FileChecksumParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        return await self.step(hash_files, final=True)


FILE_CHECKSUM = register(
    TaskType(
        name="FileChecksum",
        category="files",
        default_priority=50,
        description="Computes a checksum of each file",
        params=FileChecksumParams,
        workflow=FileChecksumWorkflow,
        activities=(hash_files,),
        retry=RetryRules(max_retries=3, initial_seconds=1.0),
    )
)
