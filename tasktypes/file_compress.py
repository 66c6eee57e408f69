"""FileCompress: files in, one zip / tar.gz / tar.zst archive out, in constant memory.

Two steps. ``plan`` checks that the files exist and fixes the output: its name, its id
(``output_id(task, name)``) and its pool, kept in the workflow's state so that ``cleanup`` knows
what to take back. ``compress`` streams every file from its pool through ``write_archive`` into
``write_stream`` on the target pool, hashing the archive on the way, then records it. A step
repeated after a crash writes the same object and record again, never a second file.

A compress step is one unit: an archive cannot be continued mid-stream. A pause stops it at its
next save (at most about a MiB of input later), ``write_stream`` drops the partial object as
the body raises, and resume starts the archive again from its first byte.
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from functools import partial
from typing import Any, Final

from temporalio import activity, workflow

from workflows.lifecycle import TaskWorkflow

with workflow.unsafe.imports_passed_through():
    from pydantic import Field, ValidationInfo, field_validator, model_validator

    from activities.files import NewFile, add_files, load_files, output_id, storage_key
    from activities.relocation import configured_pool
    from activities.steps import StepContext, run_step
    from activities.streams import Digesting, read_object
    from taskdrive.db.models import File
    from taskdrive.fileops.archive_write import (
        ArchiveFormat,
        Member,
        archive_suffix,
        validate_level,
        write_archive,
    )
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome
    from tasktypes._outputs import remove_outputs

CONTENT_TYPES: Final[dict[ArchiveFormat, str]] = {
    "zip": "application/zip",
    "tar.gz": "application/gzip",
    "tar.zst": "application/zstd",
}
_DRIVE_PREFIX: Final = re.compile(r"^([A-Za-z]):")


class FileCompressParams(TaskParams):
    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)
    compression_format: ArchiveFormat = "zip"
    compression_level: int | None = Field(
        default=None, description="zip 0-9 (default 6), tar.gz 1-9 (6), tar.zst 1-22 (3)"
    )
    output_file_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="The archive's name; the format's suffix is added when missing. Default: "
        "the file's name for one file, 'archive' for several.",
    )
    pool_id: uuid.UUID | None = Field(default=None, description="Same as targetPoolId.")
    target_pool_id: uuid.UUID | None = Field(
        default=None, description="Where the archive goes; default: the first file's pool."
    )
    bundle_id: uuid.UUID | None = Field(default=None, description="The archive's bundle.")

    @field_validator("compression_level")
    @classmethod
    def _level_fits_format(cls, level: int | None, info: ValidationInfo) -> int | None:
        fmt = info.data.get("compression_format")  # absent when the format itself is invalid
        return level if fmt is None or level is None else validate_level(fmt, level)

    @field_validator("output_file_name")
    @classmethod
    def _name_is_printable(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or "\x00" in name):
            raise ValueError("must hold a visible character and no NUL")
        return name

    @model_validator(mode="after")
    def _one_target(self) -> FileCompressParams:
        if self.pool_id and self.target_pool_id and self.pool_id != self.target_pool_id:
            raise ValueError("poolId and targetPoolId name different pools; give one")
        return self


def member_names(file_names: Sequence[str]) -> list[str]:
    """Each file's path inside the archive: its name made a safe relative path (``..``, empty
    segments and backslashes go), then made unique, ``a.txt`` then ``a (2).txt``, ``a (3).txt``."""
    used: set[str] = set()
    next_number: dict[str, int] = {}
    names: list[str] = []
    for raw in file_names:
        cleaned = _DRIVE_PREFIX.sub(r"\1_", raw.replace("\x00", "").replace("\\", "/"))
        base = "/".join(p for p in cleaned.split("/") if p not in ("", ".", "..")) or "file"
        name, number = base, next_number.get(base, 2)
        while name in used:
            stem, extension = posixpath.splitext(base)
            name, number = f"{stem} ({number}){extension}", number + 1
        next_number[base] = number
        used.add(name)
        names.append(name)
    return names


def output_name(params: FileCompressParams, files: Sequence[File]) -> str:
    suffix = archive_suffix(params.compression_format)
    if params.output_file_name is not None:
        name = params.output_file_name
    elif len(files) == 1:
        name = posixpath.basename(member_names([files[0].name])[0])
    else:
        name = "archive"
    return name if name.endswith(suffix) else name + suffix


@activity.defn(name="FileCompress.plan")
async def plan_step(request: StepRequest) -> StepResult:
    return await run_step(request, _plan)


async def _plan(ctx: StepContext) -> dict[str, Any]:
    params = FileCompressParams.model_validate(ctx.params)
    files = await load_files(ctx.runtime, ctx.request.account_id, _ids(params))
    pool_id = params.target_pool_id or params.pool_id or files[0].pool_id
    configured_pool(ctx, pool_id)  # an unknown pool fails the task before any work
    name = output_name(params, files)
    return {"fileId": str(output_id(ctx.task_id, name)), "name": name, "poolId": str(pool_id)}


@activity.defn(name="FileCompress.compress")
async def compress_step(request: StepRequest) -> StepResult:
    return await run_step(request, _compress)


async def _compress(ctx: StepContext) -> dict[str, Any]:
    params = FileCompressParams.model_validate(ctx.params)
    output = ctx.request.data
    files = await load_files(ctx.runtime, ctx.request.account_id, _ids(params))
    fmt = params.compression_format
    level = validate_level(fmt, params.compression_level)
    target = configured_pool(ctx, uuid.UUID(output["poolId"]))
    file_id = uuid.UUID(output["fileId"])
    total = sum(file.size for file in files)
    read = 0

    async def contents(file: File) -> AsyncIterator[bytes]:
        nonlocal read
        source = ctx.runtime.pools.get(file.pool_id)
        async for piece in read_object(ctx, source, file.storage_key):
            yield piece
            read += len(piece)
            # Stops here when paused or cancelled: the raise unwinds through write_archive
            # into write_stream, which removes the partial object.
            await ctx.save(progress=100.0 * read / max(total, 1))

    members = [
        Member(name, file.size, file.created_at, partial(contents, file))
        for name, file in zip(member_names([f.name for f in files]), files, strict=True)
    ]
    ctx.log.info(
        "compressing %d files (%d bytes) into %s, %s level %d",
        len(files),
        total,
        output["name"],
        fmt,
        level,
    )
    async with aclosing(write_archive(fmt, members, level=level)) as archive:
        digesting = Digesting(archive)
        size = await target.write_stream(storage_key(file_id), aiter(digesting))
    new = NewFile(
        id=file_id,
        name=output["name"],
        size=size,
        hash=digesting.hexdigest(),
        pool_id=target.id,
        bundle_id=params.bundle_id,
        content_type=CONTENT_TYPES[fmt],
    )
    await add_files(ctx.runtime, ctx.request.account_id, [new])
    return {
        "resultFileId": str(file_id),
        "compressedSize": size,
        "originalSize": total,
        "compressionRatio": round(total / size, 3),  # input bytes per archive byte
        "format": fmt,
        "entries": len(members),
    }


@activity.defn(name="FileCompress.remove_output")
async def remove_output_step(request: StepRequest) -> StepResult:
    return await run_step(request, _remove_output)


async def _remove_output(ctx: StepContext) -> dict[str, Any]:
    output = ctx.request.data
    target = configured_pool(ctx, uuid.UUID(output["poolId"]))
    await remove_outputs(ctx.runtime, ctx.request.account_id, target, [uuid.UUID(output["fileId"])])
    return {}


def _ids(params: FileCompressParams) -> list[str]:
    return [str(file_id) for file_id in params.file_ids]


@workflow.defn(name="FileCompress")
class FileCompressWorkflow(TaskWorkflow[FileCompressParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        if "output" not in self.state:  # planned once, even across continue-as-new
            self.state["output"] = await self.step(plan_step)
        return await self.step(compress_step, data=self.state["output"], final=True)

    async def cleanup(self) -> None:
        # The archive appears whole or not at all, but a failure while recording it (or a
        # crash between the two) can leave the object, or both; remove whichever exists.
        output = self.state.get("output")
        if output is not None:
            await self.cleanup_step(remove_output_step, output)


FILE_COMPRESS = register(
    TaskType(
        name="FileCompress",
        category="files",
        default_priority=50,
        description="Compresses files into one zip, tar.gz or tar.zst archive",
        params=FileCompressParams,
        workflow=FileCompressWorkflow,
        activities=(plan_step, compress_step, remove_output_step),
        retry=RetryRules(max_retries=3, initial_seconds=1.0),
    )
)
