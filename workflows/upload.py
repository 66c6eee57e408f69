"""FileUpload: waits for chunks (their bytes never pass through here), then assembles and
verifies the file (and, given ``encryptPassword``, stores it age-encrypted), or ends Cancelled
or Expired. Handlers only change state; ``run`` acts."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from taskdrive.errors import ErrorCode
    from taskdrive.statuses import TaskStatus
    from taskdrive.tasktypes import upload as up
    from workflows.cancellation import run_cancellable
    from workflows.projector import Projector

_IO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=[ErrorCode.HASH_MISMATCH.code, "UPLOAD_NOT_FOUND"],
)
# What fails an upload for good (the bytes are not what was declared; an encrypted upload whose
# password cannot be unsealed): discard it and end Failed with that code.
_FAILS_UPLOAD = (ErrorCode.HASH_MISMATCH.code, ErrorCode.UPLOAD_FAILED.code)
_TEMPORAL_CANCEL = up.LifecycleSignal(reason="cancelled through Temporal")


@workflow.defn(name=up.FILE_UPLOAD.name)
class UploadWorkflow:
    def __init__(self) -> None:
        self._spec: up.UploadSpec | None = None
        self._state = up.UploadState(status=TaskStatus.PENDING, last_activity="")
        self._wake = False

    @workflow.run
    async def run(self, inp: up.UploadInput) -> up.UploadOutcome:
        self._spec = spec = inp.spec
        fresh = inp.state is None
        if inp.state is not None:
            self._state = inp.state
        else:
            self._state.last_activity = workflow.now().isoformat()
        projector = Projector(spec.header, self._state.seq)
        outcome, temporal_cancel = await run_cancellable(
            self._live(inp, projector, fresh), lambda: self.cancel(_TEMPORAL_CANCEL)
        )
        if temporal_cancel and outcome.status == TaskStatus.CANCELLED:
            # Cleaned up like any cancel; Temporal records the workflow Canceled, as asked.
            raise asyncio.CancelledError(_TEMPORAL_CANCEL.reason)
        return outcome

    async def _live(
        self, inp: up.UploadInput, projector: Projector, fresh: bool
    ) -> up.UploadOutcome:
        if fresh:
            await self._transition(projector, TaskStatus.IN_PROGRESS, "task.started")
        return await self._drive(inp, projector)

    async def _drive(self, inp: up.UploadInput, projector: Projector) -> up.UploadOutcome:
        spec, state = inp.spec, self._state
        projected_chunks = state.chunks_uploaded
        while True:
            self._wake = False
            if state.cancel_requested:
                await self._discard(projector, TaskStatus.CANCELLED, state.cancel_reason)
                return up.UploadOutcome(status=TaskStatus.CANCELLED)
            wanted = TaskStatus.PAUSED if state.paused else TaskStatus.IN_PROGRESS
            if state.status != wanted:
                event = "task.paused" if state.paused else "task.resumed"
                await self._transition(projector, wanted, event)
                continue
            if state.complete_requested and not state.paused:
                return await self._assemble(projector)
            if state.chunks_uploaded != projected_chunks:
                projected_chunks = state.chunks_uploaded
                await self._write(projector, "task.progress")
                continue
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.seq = projector.seq
                workflow.continue_as_new(replace(inp, state=state))
            if not await self._wait_for_activity(spec):
                await self._discard(projector, TaskStatus.EXPIRED, "inactive past the threshold")
                return up.UploadOutcome(status=TaskStatus.EXPIRED)

    async def _wait_for_activity(self, spec: up.UploadSpec) -> bool:
        """Waits for a signal; False once the upload has been inactive past the threshold."""
        stale_after = timedelta(seconds=spec.stale_after_seconds)
        deadline = datetime.fromisoformat(self._state.last_activity) + stale_after
        remaining = deadline - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(lambda: self._wake, timeout=remaining)
                return True
            except TimeoutError:
                pass
        # The API records chunk activity in Postgres and signals only at progress steps: ask
        # the database for the real last activity before expiring.
        last = await workflow.execute_activity(
            "upload_last_activity",
            spec.header.task_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_IO_RETRY,
        )
        if last is not None:
            self._state.last_activity = _later(self._state.last_activity, last)
        deadline = datetime.fromisoformat(self._state.last_activity) + stale_after
        return workflow.now() < deadline or self._wake

    async def _assemble(self, projector: Projector) -> up.UploadOutcome:
        spec, state = self._require_spec(), self._state
        state.phase = "assembling"
        await self._write(projector, "task.progress", status_message="Assembling and verifying")
        result = await self._run_phase(
            projector, "assemble_upload", ActivityCancellationType.TRY_CANCEL
        )
        if result is not None and spec.sealed_password is not None:
            # Only encrypted uploads reach this, so histories of the others keep their shape.
            state.phase = "encrypting"
            await self._write(projector, "task.progress", status_message="Encrypting")
            # Waits for the activity to stop on cancel: the discard that follows must come
            # after its last write, or an encrypted object or record could outlive it.
            result = await self._run_phase(
                projector, "encrypt_upload", ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            )
        if result is None:
            return up.UploadOutcome(status=TaskStatus.CANCELLED)
        state.phase = "completed"
        state.status = TaskStatus.COMPLETED
        await projector.write(
            TaskStatus.COMPLETED,
            "task.completed",
            progress=100.0,
            finished=True,
            results={
                "fileId": result.file_id,
                "fileName": result.file_name or spec.file_name,
                "fileSize": result.size,
            },
        )
        Projector.mark_status(TaskStatus.COMPLETED)
        return up.UploadOutcome(status=TaskStatus.COMPLETED, file_id=result.file_id)

    async def _run_phase(
        self, projector: Projector, activity: str, cancellation: ActivityCancellationType
    ) -> up.AssembleResult | None:
        """Runs assembly or encryption to its end; None once a cancel has discarded the upload.
        A check the bytes fail discards it too and fails the workflow with that error."""
        spec, state = self._require_spec(), self._state
        handle = workflow.start_activity(
            activity,
            up.AssembleRequest(spec=spec),
            result_type=up.AssembleResult,
            start_to_close_timeout=timedelta(hours=6),
            heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout_seconds),
            retry_policy=_IO_RETRY,
            cancellation_type=cancellation,
        )
        await workflow.wait_condition(lambda: handle.done() or state.cancel_requested)
        if not handle.done():
            handle.cancel()
        try:
            result: up.AssembleResult = await handle
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type in _FAILS_UPLOAD:
                state.phase = "failed"
                await self._discard(
                    projector, TaskStatus.FAILED, cause.message, error_code=cause.type
                )
                raise ApplicationError(cause.message, type=cause.type, non_retryable=True) from err
            if state.cancel_requested:
                await self._discard(projector, TaskStatus.CANCELLED, state.cancel_reason)
                return None
            raise
        return result

    async def _discard(
        self,
        projector: Projector,
        status: TaskStatus,
        reason: str | None,
        *,
        error_code: str | None = None,
    ) -> None:
        """Removes staging (and any half-finished object), then records the terminal status."""
        spec = self._require_spec()
        await workflow.execute_activity(
            "discard_upload",
            up.DiscardRequest(spec=spec, delete_object=status != TaskStatus.COMPLETED),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_IO_RETRY,
        )
        self._state.status = status
        event = {
            TaskStatus.CANCELLED: "task.cancelled",
            TaskStatus.EXPIRED: "task.expired",
            TaskStatus.FAILED: "task.failed",
        }[status]
        await projector.write(
            status,
            event,
            progress=self._progress(),
            finished=True,
            reason=reason,
            error_code=error_code,
            error_message=reason if status == TaskStatus.FAILED else None,
            status_message=reason,
        )
        Projector.mark_status(status)

    async def _transition(self, projector: Projector, status: TaskStatus, event: str) -> None:
        self._state.status = status
        await projector.write(
            status,
            event,
            progress=self._progress(),
            started=status == TaskStatus.IN_PROGRESS,
        )
        Projector.mark_status(status)

    async def _write(self, projector: Projector, event: str, **fields: object) -> None:
        await projector.write(
            self._state.status,
            event,
            progress=self._progress(),
            data={
                "chunksUploaded": self._state.chunks_uploaded,
                "chunksCount": self._require_spec().chunks_count,
            },
            **fields,
        )

    # Signals: record intent and wake ``run``; never do I/O here.
    @workflow.signal(name=up.SIGNAL_PROGRESS)
    def chunks_progress(self, progress: up.ChunkProgress) -> None:
        state = self._state
        state.chunks_uploaded = max(state.chunks_uploaded, progress.chunks_uploaded)
        state.bytes_uploaded = max(state.bytes_uploaded, progress.bytes_uploaded)
        state.last_activity = _later(state.last_activity, progress.at)
        self._wake = True

    @workflow.signal(name=up.SIGNAL_COMPLETE)
    def complete(self, progress: up.ChunkProgress) -> None:
        self.chunks_progress(progress)
        self._state.complete_requested = True

    @workflow.signal(name=up.SIGNAL_PAUSE)
    def pause(self, signal: up.LifecycleSignal) -> None:
        if self._state.phase == "receiving":
            self._state.paused = True
            self._touch()

    @workflow.signal(name=up.SIGNAL_RESUME)
    def resume(self, signal: up.LifecycleSignal) -> None:
        self._state.paused = False
        self._touch()

    @workflow.signal(name=up.SIGNAL_CANCEL)
    def cancel(self, signal: up.LifecycleSignal) -> None:
        if self._state.phase not in ("completed", "failed"):
            self._state.cancel_requested = True
            self._state.cancel_reason = signal.reason or "cancelled"
            self._touch()

    @workflow.query(name=up.QUERY_PROGRESS)
    def progress(self) -> up.UploadProgress:
        spec, state = self._require_spec(), self._state
        return up.UploadProgress(
            task_id=spec.header.task_id,
            status=state.status,
            phase=state.phase,
            progress=self._progress(),
            chunks_uploaded=state.chunks_uploaded,
            chunks_count=spec.chunks_count,
            bytes_uploaded=state.bytes_uploaded,
            file_size=spec.file_size,
            last_activity=state.last_activity,
        )

    def _touch(self) -> None:
        self._state.last_activity = _later(self._state.last_activity, workflow.now().isoformat())
        self._wake = True

    def _progress(self) -> float:
        if self._state.status == TaskStatus.COMPLETED:
            return 100.0
        spec = self._require_spec()
        return up.upload_progress_percent(self._state.bytes_uploaded, spec.file_size)

    def _require_spec(self) -> up.UploadSpec:
        assert self._spec is not None, "run() sets the spec first"
        return self._spec


def _later(a: str, b: str) -> str:
    """The later of two ISO-8601 instants (string order breaks across offsets and precisions)."""
    if not a:
        return b
    return b if datetime.fromisoformat(b) > datetime.fromisoformat(a) else a
