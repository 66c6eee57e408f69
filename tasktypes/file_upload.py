"""FileUpload: the resumable chunked upload (seed 000), on the shared lifecycle.

Created by ``POST /api/files/upload/create`` (its parameters are the upload's declared file
and where it goes, ``taskdrive.upload_params``), not by ``POST /api/tasks``. The workflow
first receives: the API stores each chunk in the pool and signals progress at 5% steps; a
pause holds the upload (the API refuses chunks meanwhile), a cancel discards it, and an upload
idle past the threshold (a pause counts as activity) ends Expired. On the client's complete it
runs two steps: assemble and verify the SHA-256, then, given ``encryptPassword``, store it
age-encrypted. Whatever ends it short of Completed (cancel, expiry, a hash mismatch) removes
staging, any finished object and the file record (``cleanup``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import activity, workflow

from workflows.interrupts import TaskExpired
from workflows.lifecycle import TaskWorkflow

with workflow.unsafe.imports_passed_through():
    from activities import uploads
    from activities.runtime import current
    from activities.steps import StepContext, StepFailed, run_step
    from taskdrive.errors import ErrorCode
    from taskdrive.registry import TaskType, register
    from taskdrive.secrets import SecretError
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome
    from taskdrive.upload_params import (
        SIGNAL_COMPLETE,
        SIGNAL_PROGRESS,
        ChunkProgress,
        FileUploadParams,
        later_instant,
        upload_progress_percent,
    )


def _job(ctx: StepContext) -> uploads.UploadJob:
    spec = FileUploadParams.model_validate(ctx.params)
    return uploads.UploadJob(ctx.runtime, ctx.task_id, ctx.request.account_id, spec)


@activity.defn(name="FileUpload.assemble")
async def assemble_upload(request: StepRequest) -> StepResult:
    return await run_step(request, lambda ctx: uploads.assemble(_job(ctx), ctx.save))


async def _encrypt(ctx: StepContext) -> dict[str, Any]:
    try:
        password = ctx.secret("encryptPassword")
    except SecretError as exc:
        raise StepFailed(ErrorCode.UPLOAD_FAILED, str(exc), permanent=True) from None
    return await uploads.encrypt(_job(ctx), password, ctx.save)


@activity.defn(name="FileUpload.encrypt")
async def encrypt_upload(request: StepRequest) -> StepResult:
    return await run_step(request, _encrypt)


async def _discard(ctx: StepContext) -> dict[str, Any]:
    await uploads.discard(_job(ctx))
    return {}


@activity.defn(name="FileUpload.discard")
async def discard_upload(request: StepRequest) -> StepResult:
    return await run_step(request, _discard)


@activity.defn(name="FileUpload.last_activity")
async def upload_last_activity(task_id: str) -> str | None:
    return await uploads.last_activity(current(), task_id)


@workflow.defn(name="FileUpload")
class FileUploadWorkflow(TaskWorkflow[FileUploadParams]):
    """``self.state`` holds what the API reported: chunksUploaded, bytesUploaded,
    lastActivity (ISO-8601) and completeRequested."""

    def __init__(self) -> None:
        super().__init__()
        # What the signals brought. Signals in the first workflow task are handled before
        # ``run`` has the input (and so ``self.state``): until then the news waits here, and
        # ``_receive`` folds it in once; afterwards each handler folds it in at once, so a
        # continue-as-new (which waits for the handlers) carries everything.
        self._reported = ChunkProgress(0, 0, "")
        self._complete = False
        self._wake = False

    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        await self._receive()
        await self.checkpoint(message="Assembling and verifying")
        encrypt = self.params.encrypt_password is not None
        results = await self.step(assemble_upload, final=not encrypt)
        if encrypt:
            await self.checkpoint(message="Encrypting")
            results = await self.step(encrypt_upload, final=True)
        return results

    async def cleanup(self) -> None:
        await self.cleanup_step(discard_upload)

    def pause_timeout(self) -> timedelta:
        return timedelta(seconds=self.params.stale_after_seconds)

    async def _receive(self) -> None:
        """Until the client asks to complete: reports progress, holds while paused, ends the
        task on cancel or after the threshold without activity."""
        state = self.state
        state.setdefault("lastActivity", workflow.now().isoformat())
        self._fold_in_reports()  # what came before ``run``; the handlers fold in the rest
        while True:
            self._wake = False
            if state.get("completeRequested"):
                return
            progress = upload_progress_percent(state.get("bytesUploaded", 0), self.params.file_size)
            await self.checkpoint(progress=progress)
            if self.resumed_at is not None:  # a resume is activity too
                self._touch(self.resumed_at.isoformat())
            if not await self._wait_for_activity():
                raise TaskExpired("inactive past the threshold")

    def _fold_in_reports(self) -> None:
        state, news = self.state, self._reported
        state["chunksUploaded"] = max(state.get("chunksUploaded", 0), news.chunks_uploaded)
        state["bytesUploaded"] = max(state.get("bytesUploaded", 0), news.bytes_uploaded)
        if news.at:
            self._touch(news.at)
        if self._complete:
            state["completeRequested"] = True

    async def _wait_for_activity(self) -> bool:
        """Waits for a signal; False once the upload has been inactive past the threshold."""
        stale_after = timedelta(seconds=self.params.stale_after_seconds)
        if await self.wait_until(lambda: self._wake, self._deadline(stale_after) - workflow.now()):
            return True
        # The API records every chunk in Postgres but signals only at progress steps: ask the
        # database for the real last activity before expiring.
        last = await workflow.execute_activity(
            upload_last_activity,
            self.task_input.header.task_id,
            start_to_close_timeout=timedelta(seconds=30),
        )
        if last is not None:
            self._touch(last)
        return workflow.now() < self._deadline(stale_after) or self._wake

    def _deadline(self, stale_after: timedelta) -> datetime:
        return datetime.fromisoformat(self.state["lastActivity"]) + stale_after

    def _touch(self, at: str) -> None:
        self.state["lastActivity"] = later_instant(self.state.get("lastActivity", ""), at)

    # The upload's own signals: note what the API reported and wake the receiving loop.
    @workflow.signal(name=SIGNAL_PROGRESS)
    def chunks_progress(self, progress: ChunkProgress) -> None:
        self._reported = self._reported.merged(progress)
        self._wake = True
        if self.input_ready:
            self._fold_in_reports()

    @workflow.signal(name=SIGNAL_COMPLETE)
    def complete(self, progress: ChunkProgress) -> None:
        self._complete = True
        self.chunks_progress(progress)


FILE_UPLOAD = register(
    TaskType(
        name="FileUpload",
        category="uploads",
        default_priority=50,
        description="Resumable chunked upload (created through /api/files/upload/create)",
        params=FileUploadParams,
        creatable=False,
        workflow=FileUploadWorkflow,
        activities=(assemble_upload, encrypt_upload, discard_upload, upload_last_activity),
        # Storage that fails assembly is retried; a hash mismatch is not (StepFailed permanent).
        retry=RetryRules(max_retries=5, initial_seconds=1.0, max_interval_seconds=60.0),
    )
)
