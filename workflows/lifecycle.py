"""The lifecycle every task type's workflow is built on.

A type subclasses ``TaskWorkflow``, declares ``@workflow.run`` as a one-line call to the base
(the SDK wants the run method on the class itself) and implements ``execute``, calling
``self.step(activity)`` for each piece of work and ``self.checkpoint()`` between items it loops
over in the workflow. The base gives it, without more code: Pending → InProgress → Completed /
Failed / Cancelled / Expired with Paused in between, every transition projected (who asked,
why) and mirrored in the Web UI's status attribute; the pause, resume and cancel signals
(``workflows.interrupts``) and the progress query; steps that stop at their next checkpoint on
pause or cancel and continue from it on resume; retries per the type's rules, counted on the
task with the last error; ``cleanup`` of partial output; continue-as-new when history grows.
The task's state and its projection are the layer below (``workflows.projected``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from taskdrive import registry
    from taskdrive.statuses import TaskStatus
    from taskdrive.tasks import (
        LifecycleSignal,
        StepRequest,
        StepResult,
        TaskInput,
        TaskOutcome,
    )
    from workflows.cancellation import run_cancellable
    from workflows.interrupts import Cancelled, TaskExpired
    from workflows.projected import ProjectedTask
    from workflows.projector import Projector

from workflows import versions

P = TypeVar("P", bound=BaseModel)
Step = Callable[[StepRequest], Awaitable[StepResult]]

# Activities fail to the workflow at once (``activities.steps`` marks every error
# non-retryable), so the workflow can count retries. What Temporal retries here is what never
# reached the activity's code: a worker that died or stopped heartbeating.
_INFRA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
# A removal step is retried by Temporal after a crash or timeout only; its own errors end it.
_CLEANUP_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
_TEMPORAL_CANCEL = LifecycleSignal("cancelled through Temporal", "temporal")
_PROGRESS_STEP = 1.0  # percent: smaller moves are reported by the steps themselves


class _Failed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TaskWorkflow(ProjectedTask, Generic[P]):
    """Base class of task workflows; ``P`` is the type's parameters model."""

    def __init__(self) -> None:
        super().__init__()
        self._params: P | None = None
        self._resumed_at: datetime | None = None

    # --- what a type implements -------------------------------------------------------------

    async def execute(self) -> dict[str, Any]:
        """Does the work; returns the task's results (small JSON: ids, sizes, counts)."""
        raise NotImplementedError

    async def cleanup(self) -> None:
        """Removes partial output after cancel, failure or expiry; ``self.checkpoints`` says
        what the interrupted steps had written."""

    def pause_timeout(self) -> timedelta | None:
        """How long a pause may last before the task ends Expired; None: as long as it takes."""
        return None

    # --- what a type calls ------------------------------------------------------------------

    def has(self, change: versions.Change) -> bool:
        """Whether this task runs with ``change``: false when replaying a history recorded
        before it, whose commands must stay as they were (``workflows.versions``)."""
        return versions.has(self.task_input.version, change)

    @property
    def params(self) -> P:
        assert self._params is not None, "run() parses the parameters first"
        return self._params

    @property
    def resumed_at(self) -> datetime | None:
        """When this run last came back from a pause (None: it has not been paused)."""
        return self._resumed_at

    async def cleanup_step(self, activity: Step, data: dict[str, Any] | None = None) -> None:
        """Runs a removal step from ``cleanup``, once, to its end. Unlike ``step`` it runs
        after a cancel (which is when cleanup runs) and is not retried by the task's rules:
        the outcome is decided, and a failed cleanup is only logged by the caller."""
        inp = self.task_input
        await workflow.execute_activity(
            activity,
            StepRequest(
                task_id=inp.header.task_id,
                account_id=inp.header.account_id,
                params=inp.params,
                data=data or {},
            ),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_seconds),
            retry_policy=_CLEANUP_RETRY,
        )

    async def step(
        self,
        activity: Step | str,
        *,
        key: str | None = None,
        data: dict[str, Any] | None = None,
        start_to_close: timedelta = timedelta(hours=12),
        final: bool = False,
    ) -> dict[str, Any]:
        """Runs one activity step to the end, through pauses, resumes and retries; returns
        its results. ``key`` names the step's checkpoint (the activity's name by default;
        give one per item when the same activity runs for several).

        ``final``: the step's results are the task's, as in ``return await self.step(x,
        final=True)``; its activity then projects the task Completed as soon as the work is
        done, which spares the workflow that write. Nothing may follow a final step."""
        if self._final_results is not None:
            raise RuntimeError("a final step has completed the task: nothing may follow it")
        inp = self.task_input
        projector = self._require_projector()
        name = key or _activity_name(activity)
        while True:
            await self.checkpoint()
            carried = projector.carry()
            request = StepRequest(
                task_id=inp.header.task_id,
                account_id=inp.header.account_id,
                params=inp.params,
                checkpoint=self._state.checkpoint.get(name, {}),
                data=data or {},
                projection=carried,
                completion=self._reserve_completion() if final else None,
            )
            handle = workflow.start_activity(
                activity,  # type: ignore[arg-type]  # a Step or its name; both are accepted
                request,
                result_type=StepResult,
                start_to_close_timeout=start_to_close,
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_seconds),
                retry_policy=_INFRA_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            await self.wait_until(handle.done)
            if not handle.done():
                handle.cancel()  # the step stops at its next checkpoint and answers
            try:
                result = await handle
            except ActivityError as err:
                self._note_answer(name, answered=not isinstance(err.cause, CancelledError))
                await self._step_failed(name, err)
                continue
            self._note_answer(name, answered=True)
            projector.answered(carried, applied=result.projected)
            self._state.checkpoint[name] = result.checkpoint
            if result.progress is not None:
                self._state.progress = result.progress
            if result.done:
                self._state.checkpoint.pop(name, None)
                results: dict[str, Any] = result.results
                if result.completed:
                    self._final_results = results
                return results

    async def checkpoint(
        self, *, progress: float | None = None, message: str | None = None
    ) -> None:
        """A safe point between items: reports progress, holds while paused, and ends the
        task here if it was cancelled."""
        if progress is not None:
            self._state.progress = progress
        if message is not None and message != self._message:
            self._message = message
            await self._write("task.progress", status_message=message)
        elif self._state.progress - self._projected_progress >= _PROGRESS_STEP:
            await self._write("task.progress")
        if self._cancel is not None:
            raise Cancelled
        if self._paused is not None:
            asked = self._paused
            await self._transition(TaskStatus.PAUSED, "task.paused", asked)
            await self._require_projector().flush_pending()
            try:
                await workflow.wait_condition(
                    lambda: self._paused is None or self._cancel is not None,
                    timeout=self.pause_timeout(),
                )
            except TimeoutError:
                raise TaskExpired("paused past the inactivity threshold") from None
            if self._cancel is not None:
                raise Cancelled
            self._resumed_at = workflow.now()
            await self._transition(TaskStatus.IN_PROGRESS, "task.resumed", self._resumed)
        if (
            workflow.info().is_continue_as_new_suggested()
            and self._paused is None
            and self._cancel is None
        ):
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._require_projector().flush()
            self._state.seq = self._require_projector().seq
            self._state.status = self._status
            workflow.continue_as_new(
                TaskInput(
                    header=self.task_input.header,
                    params=self.task_input.params,
                    retry=self.task_input.retry,
                    heartbeat_timeout_seconds=self.task_input.heartbeat_timeout_seconds,
                    state=self._state,
                    version=self.task_input.version,
                )
            )

    # --- the lifecycle ----------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        self._inp = inp
        self._state = inp.state
        self._projector = Projector(inp.header, inp.state.seq, inp.version)
        self._status = TaskStatus(inp.state.status)
        task_type = registry.get(inp.header.type)
        if task_type is None or task_type.params is None:
            raise ApplicationError(f"unknown task type {inp.header.type}", non_retryable=True)
        self._params = task_type.params.model_validate(inp.params)  # type: ignore[assignment]
        outcome, temporal_cancel = await run_cancellable(
            self._live(), lambda: self.cancel(_TEMPORAL_CANCEL)
        )
        if temporal_cancel and outcome.status == TaskStatus.CANCELLED:
            # Cleaned up like any cancel; Temporal records the workflow Canceled, as asked.
            raise asyncio.CancelledError(_TEMPORAL_CANCEL.reason)
        return outcome

    async def _live(self) -> TaskOutcome:
        try:
            if self._status == TaskStatus.PENDING:
                await self._transition(TaskStatus.IN_PROGRESS, "task.started", started=True)
            results = await self.execute()
        except Cancelled:
            await self._finish(TaskStatus.CANCELLED, "task.cancelled", self._cancel)
            return TaskOutcome(status=TaskStatus.CANCELLED)
        except TaskExpired as expired:
            asked = LifecycleSignal(str(expired), "system")
            await self._finish(TaskStatus.EXPIRED, "task.expired", asked)
            return TaskOutcome(status=TaskStatus.EXPIRED)
        except _Failed as failure:
            await self._cleanup_quietly()
            self._status = TaskStatus.FAILED
            await self._write(
                "task.failed",
                finished=True,
                error_code=failure.code,
                error_message=failure.message,
                status_message=failure.message,
                reason=failure.message,
            )
            raise ApplicationError(failure.message, type=failure.code, non_retryable=True) from None
        self._status = TaskStatus.COMPLETED
        self._state.progress = 100.0
        self._message = None
        if self._final_results is not None and self._final_results == results:
            self._require_projector().mark_status(self._status)  # the final step projected it
        else:
            await self._write("task.completed", finished=True, results=results)
        return TaskOutcome(status=TaskStatus.COMPLETED, results=results)

    async def _step_failed(self, name: str, err: ActivityError) -> None:
        cause = err.cause
        if isinstance(cause, CancelledError):
            return  # stopped without answering; the loop holds or ends as asked
        if not isinstance(cause, ApplicationError):
            raise _Failed("STEP_FAILED", str(cause or err))
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        if "checkpoint" in details:
            self._state.checkpoint[name] = details["checkpoint"]
        if self._cancel is not None:
            raise Cancelled
        code, message = cause.type or "STEP_FAILED", cause.message
        rules = self.task_input.retry
        if details.get("permanent") or self._state.retry_count >= rules.max_retries:
            raise _Failed(code, message)
        self._state.retry_count += 1
        delay = rules.delay(self._state.retry_count)
        await self._write(
            "task.retrying",
            status_message=f"retry {self._state.retry_count} of {rules.max_retries} "
            f"in {delay:g}s after: {message}",
            last_error=message,
            reason=message,
        )
        await self._require_projector().flush_pending()
        try:
            await workflow.wait_condition(
                lambda: self._cancel is not None, timeout=timedelta(seconds=delay)
            )
        except TimeoutError:
            return

    async def _finish(self, status: TaskStatus, event: str, asked: LifecycleSignal | None) -> None:
        """Ends the task Cancelled or Expired, partial output removed."""
        await self._cleanup_quietly()
        self._status = status
        reason = asked.reason if asked and asked.reason else status.lower()
        await self._write(
            event,
            finished=True,
            reason=reason,
            status_message=reason,
            actor=asked.by if asked else None,
        )

    def _note_answer(self, name: str, *, answered: bool) -> None:
        """A step cancelled before it could answer (it was not running: queued, or waiting
        for Temporal to retry it after its worker died) may have written past its last
        checkpoint; an answer brings the checkpoint up to date again."""
        unanswered = self._state.unanswered
        if answered and name in unanswered:
            unanswered.remove(name)
        elif not answered and name not in unanswered:
            unanswered.append(name)

    async def _cleanup_quietly(self) -> None:
        try:
            await self.cleanup()
        except ActivityError as err:
            workflow.logger.warning("cleanup of task %s failed: %s", self.task_input.header, err)


def _activity_name(activity: Step | str) -> str:
    if isinstance(activity, str):
        return activity
    definition = getattr(activity, "__temporal_activity_definition", None)
    name = getattr(definition, "name", None)
    return name if isinstance(name, str) else activity.__name__
