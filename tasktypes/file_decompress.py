"""FileDecompress: one zip / tar.gz / tar.zst archive in, one file per entry out.

Archives are untrusted uploads, read by ``read_archive`` under the limits of the ``archive_*``
settings. An entry whose path escapes the target (``../``) or is absolute, a link, a special
file, more entries, more bytes or a higher compression ratio than the limits allow (bombs), or
a corrupt archive end the task
Failed with ARCHIVE_REJECTED, the reason in its message, and nothing stays behind: the step
deletes every object it wrote before it fails. Records are added only once every entry is
written and the archive has been read to its end (a zip's symlinks show only in its central
directory, after all the data), so a client never sees part of an archive.

Each entry becomes a file named by its path in the archive (``docs/a.txt``), with the id
``output_id(task, path)``: a repeated step writes the same objects and records. When a path
occurs twice the later entry wins, as when extracting to a folder.

Like a compress step, the extraction is one unit: a pause stops it at its next save (within
about a MiB of an entry) and deletes what it wrote; resume extracts again from the start.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

from temporalio import activity, workflow

from workflows.lifecycle import TaskWorkflow

with workflow.unsafe.imports_passed_through():
    from pydantic import Field

    from activities.files import NewFile, add_files, load_files, output_id, storage_key
    from activities.relocation import configured_pool
    from activities.steps import StepContext, StepFailed, run_step
    from activities.streams import Digesting, read_object
    from taskdrive.db.models import File
    from taskdrive.errors import ErrorCode
    from taskdrive.fileops.archive_read import (
        ArchiveRejected,
        Entry,
        Limits,
        detect_format,
        read_archive,
    )
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome
    from tasktypes._outputs import remove_outputs

# Output allowed before the ratio limit applies: the first bytes of any archive have consumed
# little input yet (a small file compresses well, headers are tiny).
_RATIO_GRACE_BYTES: Final = 1024**2
_HEAD_BYTES: Final = 8  # enough for every format's magic number
# The extraction's checkpoint says whether the step removed all it wrote before it stopped.
_CLEAN: Final = "clean"
EXTRACT: Final = "FileDecompress.extract"


class FileDecompressParams(TaskParams):
    file_id: uuid.UUID
    target_bundle_id: uuid.UUID | None = Field(default=None, description="The entries' bundle.")
    pool_id: uuid.UUID | None = Field(
        default=None, description="Where the entries go; default: the archive's pool."
    )


class _Extraction:
    """One run of the step: what it wrote so far, and the archive bytes it has read."""

    def __init__(self, ctx: StepContext, params: FileDecompressParams, archive: File) -> None:
        self.ctx = ctx
        self.params = params
        self.archive = archive
        self.target = configured_pool(ctx, params.pool_id or archive.pool_id)
        self.touched: set[uuid.UUID] = set()  # every id written to, even in part
        self.files: dict[str, NewFile] = {}  # by path: a later entry replaces an earlier one
        self.read = 0

    async def run(self) -> dict[str, Any]:
        self.ctx.checkpoint[_CLEAN] = False  # heartbeated with the first save
        try:
            async with _entries(self.ctx, self.archive, self._counted) as entries:
                async for entry in entries:
                    self.files[entry.name] = await self._store(entry)
                    await self._save()  # also between entries that have no data
            # The archive is fully read and valid: only now do its files appear.
            await add_files(self.ctx.runtime, self.ctx.request.account_id, [*self.files.values()])
        except ArchiveRejected as rejected:
            await self._discard()
            reason = rejected.code.lower().replace("_", " ")
            raise StepFailed(
                ErrorCode.ARCHIVE_REJECTED,
                f"{self.archive.name} was rejected: {rejected.message} ({reason}); "
                "nothing was extracted",
                permanent=True,
            ) from rejected
        except BaseException:  # a pause or cancel (at a save), or any error: all or nothing
            await self._discard()
            raise
        sizes = sum(new.size for new in self.files.values())
        self.ctx.log.info("extracted %d files (%d bytes)", len(self.files), sizes)
        return {
            "fileIds": [str(new.id) for new in self.files.values()],
            "entries": len(self.files),
            "totalSize": sizes,
        }

    async def _counted(self, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for piece in pieces:
            self.read += len(piece)
            yield piece

    async def _store(self, entry: Entry) -> NewFile:
        file_id = output_id(self.ctx.task_id, entry.name)
        self.touched.add(file_id)
        body = Digesting(self._saving(entry.chunks))
        size = await self.target.write_stream(storage_key(file_id), aiter(body))
        return NewFile(
            id=file_id,
            name=entry.name,
            size=size,
            hash=body.hexdigest(),
            pool_id=self.target.id,
            bundle_id=self.params.target_bundle_id,
        )

    async def _saving(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
            # A pause or cancel raises here, inside write_stream's body, which then removes
            # the entry's partial object.
            await self._save()

    async def _save(self) -> None:
        # Progress by archive bytes read; no checkpoint: an extraction is one unit.
        await self.ctx.save(progress=100.0 * self.read / max(self.archive.size, 1))

    async def _discard(self) -> None:
        ctx = self.ctx
        await remove_outputs(ctx.runtime, ctx.request.account_id, self.target, self.touched)
        if self.touched:
            ctx.log.info("removed everything extracted so far: %d file(s)", len(self.touched))
        ctx.checkpoint[_CLEAN] = True


@asynccontextmanager
async def _entries(
    ctx: StepContext,
    archive: File,
    wrap: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] | None = None,
) -> AsyncIterator[AsyncIterator[Entry]]:
    """The archive's entries, its bytes passed through ``wrap``; ArchiveRejected for an
    unknown format."""
    source = ctx.runtime.pools.get(archive.pool_id)
    head = b"".join([piece async for piece in source.read(archive.storage_key, 0, _HEAD_BYTES)])
    fmt = detect_format(archive.name, head)
    pieces = read_object(ctx, source, archive.storage_key)
    settings = ctx.runtime.settings
    limits = Limits(
        max_total_bytes=settings.archive_max_total_bytes,
        max_entries=settings.archive_max_entries,
        max_ratio=settings.archive_max_ratio,
        ratio_grace_bytes=_RATIO_GRACE_BYTES,
    )
    entries = read_archive(wrap(pieces) if wrap else pieces, fmt, limits)
    try:
        yield entries
    finally:
        await entries.aclose()  # stops the decompressing thread when abandoned early


@activity.defn(name=EXTRACT)
async def extract_step(request: StepRequest) -> StepResult:
    return await run_step(request, _extract)


async def _extract(ctx: StepContext) -> dict[str, Any]:
    params = FileDecompressParams.model_validate(ctx.params)
    archive = await _archive(ctx, params)
    ctx.log.info("extracting %s (%s, %d bytes)", archive.name, archive.id, archive.size)
    return await _Extraction(ctx, params, archive).run()


@activity.defn(name="FileDecompress.remove_entries")
async def remove_entries_step(request: StepRequest) -> StepResult:
    return await run_step(request, _remove_entries)


async def _remove_entries(ctx: StepContext) -> dict[str, Any]:
    """For cleanup when the extraction could not remove its output itself (a worker that
    died): reads the archive again for its entries' paths, the only way to their ids."""
    params = FileDecompressParams.model_validate(ctx.params)
    archive = await _archive(ctx, params)
    target = configured_pool(ctx, params.pool_id or archive.pool_id)
    ids: list[uuid.UUID] = []
    try:
        async with _entries(ctx, archive) as entries:
            async for entry in entries:
                ids.append(output_id(ctx.task_id, entry.name))
    except ArchiveRejected:
        pass  # the extraction stopped at the same place: nothing after it was written
    await remove_outputs(ctx.runtime, ctx.request.account_id, target, ids)
    ctx.log.info("removed whatever was extracted of the archive's %d entries", len(ids))
    return {}


async def _archive(ctx: StepContext, params: FileDecompressParams) -> File:
    (archive,) = await load_files(ctx.runtime, ctx.request.account_id, [str(params.file_id)])
    return archive


@workflow.defn(name="FileDecompress")
class FileDecompressWorkflow(TaskWorkflow[FileDecompressParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        self.state["extracting"] = True
        return await self.step(extract_step, final=True)

    async def cleanup(self) -> None:
        # The step removes what it wrote whenever it stops or fails, and says so in its
        # checkpoint. Only when it could not say (its worker died, a delete failed) does the
        # archive have to be read again; a "clean" checkpoint from before a run that never
        # answered (a pause, a resume, then its worker died) no longer counts.
        checkpoint: dict[str, Any] = self.checkpoints.get(EXTRACT, {})
        clean = checkpoint.get(_CLEAN) and EXTRACT not in self.unanswered_steps
        if self.state.get("extracting") and not clean:
            await self.cleanup_step(remove_entries_step)


FILE_DECOMPRESS = register(
    TaskType(
        name="FileDecompress",
        category="files",
        default_priority=50,
        description="Extracts an archive's entries as files, rejecting unsafe archives",
        params=FileDecompressParams,
        workflow=FileDecompressWorkflow,
        activities=(extract_step, remove_entries_step),
        retry=RetryRules(max_retries=3, initial_seconds=1.0),
    )
)
