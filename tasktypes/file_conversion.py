"""FileConversion: one image to PNG, JPEG, WebP or GIF, optionally resized, as a new file.

The conversion itself is ``taskdrive.fileops.images``. This module adds what a task needs:
the source checked at create (a file the account has, of a type that converts: the model
cannot see the file record, so ``validate_create`` does), and one step that reads the image,
converts it in a thread, writes the result beside the source (same pool) and records it.

The step's one checkpoint is just before it writes: a pause or cancel during the read or the
conversion stops it there, so a cancelled task leaves no output (no ``cleanup`` needed), and a
resumed one converts again. The write goes under an id derived from the task (``output_id``):
a step repeated after a crash, or the task run again, rewrites the same object and record
rather than adding a second file.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from temporalio import activity, workflow

from workflows.lifecycle import TaskWorkflow

with workflow.unsafe.imports_passed_through():
    from pydantic import Field
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    from activities.files import NewFile, add_files, load_files, output_id, storage_key
    from activities.steps import StepContext, StepFailed, run_step
    from activities.streams import read_object
    from taskdrive.db.models import File
    from taskdrive.errors import ErrorCode, TaskdriveError
    from taskdrive.fileops.images import (
        ConversionOptions,
        ImageFormat,
        ImageRejected,
        UnsupportedConversion,
        check_conversion,
        content_type,
        convert_image,
        output_name,
    )
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome

# The source is read into memory, so its size is capped (``conversion_max_source_bytes``) as
# well as its pixels (``conversion_max_pixels``): the pixel budget bounds the decoded bitmap,
# the size the bytes held beside it. Bigger images are refused as IMAGE_REJECTED.
HEARTBEAT_SECONDS = 1.0  # while the conversion runs in its thread

T = TypeVar("T")


class FileConversionParams(TaskParams):
    file_id: uuid.UUID = Field(description="The image to convert; one of the account's files.")
    target_format: ImageFormat = Field(description="The format of the new file.")
    options: ConversionOptions = Field(
        default_factory=ConversionOptions,
        description="Resize (width, height), thumbnail box and encoder quality; all optional.",
    )
    target_bundle_id: uuid.UUID | None = Field(
        default=None, description="Bundle the new file joins; none by default."
    )


async def check_source(
    session: AsyncSession, account_id: uuid.UUID, params: FileConversionParams
) -> None:
    """The create-time check: the file is the account's and its type converts (else 404/400)."""
    source = await session.scalar(
        select(File).where(
            File.id == params.file_id, File.account_id == account_id, File.deleted_at.is_(None)
        )
    )
    if source is None:
        raise TaskdriveError(
            ErrorCode.FILE_NOT_FOUND,
            f"file {params.file_id} not found",
            field="parameters.fileId",
            fileId=str(params.file_id),
        )
    try:
        check_conversion(source.name, source.content_type, params.target_format)
    except UnsupportedConversion as exc:
        raise TaskdriveError(
            ErrorCode.UNSUPPORTED_CONVERSION, str(exc), field="parameters.fileId"
        ) from None


@activity.defn(name="FileConversion.convert")
async def convert(request: StepRequest) -> StepResult:
    return await run_step(request, _convert)


async def _convert(ctx: StepContext) -> dict[str, Any]:
    params = FileConversionParams.model_validate(ctx.params)
    account_id = ctx.request.account_id
    (source,) = await load_files(ctx.runtime, account_id, [str(params.file_id)])
    described = f"{source.name} ({source.id})"
    settings = ctx.runtime.settings
    if source.size > settings.conversion_max_source_bytes:
        raise StepFailed(
            ErrorCode.IMAGE_REJECTED,
            f"{described} is {source.size} bytes; images up to "
            f"{settings.conversion_max_source_bytes} are converted",
            permanent=True,
        )
    pool = ctx.runtime.pools.get(source.pool_id)
    data = b"".join([piece async for piece in read_object(ctx, pool, source.storage_key)])
    target = params.target_format
    ctx.log.info("converting %s to %s", described, target)

    def work() -> tuple[bytes, int, int, str]:
        encoded, width, height = convert_image(
            io.BytesIO(data), target, params.options, max_pixels=settings.conversion_max_pixels
        )
        return encoded, width, height, hashlib.sha256(encoded).hexdigest()

    try:
        encoded, width, height, digest = await _in_thread(ctx, work)
    except ImageRejected as exc:
        raise StepFailed(ErrorCode.IMAGE_REJECTED, f"{described}: {exc}", permanent=True) from exc
    await ctx.save(progress=50.0)  # the last point to stop at before anything is written
    new_id = output_id(ctx.task_id, "converted")
    size = await pool.write_stream(storage_key(new_id), _once(encoded))
    await add_files(
        ctx.runtime,
        account_id,
        [
            NewFile(
                id=new_id,
                name=output_name(source.name, target),
                size=size,
                hash=digest,
                pool_id=source.pool_id,
                bundle_id=params.target_bundle_id,
                content_type=content_type(target),
            )
        ],
    )
    ctx.log.info("wrote %s: %dx%d, %d bytes", new_id, width, height, size)
    return {
        "resultFileId": str(new_id),
        "format": target,
        "width": width,
        "height": height,
        "size": size,
    }


async def _in_thread(ctx: StepContext, work: Callable[[], T]) -> T:
    """Runs CPU-bound ``work`` off the event loop, heartbeating until it is done: a large
    image can take longer than the heartbeat timeout."""
    job = asyncio.ensure_future(asyncio.to_thread(work))
    while not job.done():
        await asyncio.wait({job}, timeout=HEARTBEAT_SECONDS)
        ctx.heartbeat()
    return job.result()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@workflow.defn(name="FileConversion")
class FileConversionWorkflow(TaskWorkflow[FileConversionParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        return await self.step(convert, final=True)


FILE_CONVERSION = register(
    TaskType(
        name="FileConversion",
        # Its own queue: conversions are CPU- and memory-bound (a decoded image), so they get
        # their own limit (TASKDRIVE_CATEGORY_CONCURRENCY {"media": N}) and do not hold the
        # slots of I/O-bound file work.
        category="media",
        default_priority=50,
        description="Converts an image to PNG, JPEG, WebP or GIF, optionally resized",
        params=FileConversionParams,
        workflow=FileConversionWorkflow,
        activities=(convert,),
        retry=RetryRules(max_retries=3, initial_seconds=1.0),
        validate_create=check_source,
    )
)
