"""Running one step of a task as an activity: checkpoints, pause/cancel, live progress, errors.

A type's activity is ``async def my_step(request: StepRequest) -> StepResult`` whose body is
``return await run_step(request, work)``; ``work(ctx)`` does the job and calls
``await ctx.save(...)`` at every point it could continue from. What this gives the type:

- **Pause and cancel stop at the next checkpoint.** The workflow cancels the activity; the
  work keeps running (shielded) until its next ``save``, which ends it there, and the step
  answers ``done=False`` with that checkpoint. Nothing between checkpoints is lost.
- **Resume continues from the checkpoint.** The workflow runs the step again with it, as
  ``ctx.checkpoint``. A worker crash does the same through Temporal's retry: every ``save``
  heartbeats the checkpoint, and the next attempt starts from the last one.
- **Live progress.** ``save(progress=...)`` updates the task's row (at most once a second).
- **Errors the workflow can count.** Any exception becomes a non-retryable ApplicationError
  carrying the checkpoint; the workflow retries the step per the type's retry rules (and
  counts it), continuing from that checkpoint. ``StepFailed(permanent=True)`` is not retried.
- **The task's projection on the way.** The workflow's pending projection writes come with
  the request (``workflows.projector``) and are applied as the work begins: once it has run
  for ``CARRY_WINDOW`` or reports progress, whichever is first, or with the step's end if that
  comes sooner. A final step's Completed write is applied after the work, in one transaction
  with those writes when the work was that short: a short task costs the database one
  transaction, not two, and its row goes from Pending to Completed (its events still record
  when it started). If the database fails that transaction, the step still answers, and the
  workflow sends the writes itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.runtime import Runtime, current
from taskdrive.db.projection import apply_progress, apply_writes
from taskdrive.errors import ErrorCode
from taskdrive.projection import ProjectionWrite
from taskdrive.secrets import unseal
from taskdrive.tasks import StepRequest, StepResult

PROGRESS_INTERVAL = 1.0  # seconds between live progress writes
# Seconds a step's work may run before the writes it carried are applied on their own; a
# shorter step applies them with its end, in one transaction. Long enough for a small step,
# short enough that a person watching never sees a working task as Pending.
CARRY_WINDOW = 0.25


class StepFailed(Exception):
    """A failure with a stable code. ``permanent``: retrying cannot help (bad input)."""

    def __init__(self, code: ErrorCode | str, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.code = code.code if isinstance(code, ErrorCode) else code
        self.message = message
        self.permanent = permanent


class _Stop(Exception):
    """Raised by ``save`` once the workflow asked the step to stop."""


class StepContext:
    def __init__(self, request: StepRequest, runtime: Runtime) -> None:
        self.request = request
        self.runtime = runtime
        self.checkpoint: dict[str, Any] = dict(request.checkpoint)
        details = activity.info().heartbeat_details
        if details and isinstance(details[0], dict):
            # A retry after a crash or timeout: the last heartbeat is the freshest checkpoint.
            self.checkpoint = dict(details[0].get("checkpoint", self.checkpoint))
        self.progress: float | None = None
        self.stop_requested = False
        self._reported = 0.0
        self._carried = list(request.projection)  # not yet applied
        self._carrying = asyncio.Lock()  # one application of them at a time
        self.log = logging.LoggerAdapter(activity.logger, {})

    @property
    def task_id(self) -> str:
        return self.request.task_id

    @property
    def params(self) -> dict[str, Any]:
        return self.request.params

    def secret(self, field: str) -> str:
        """The plain text of a sealed secret parameter; keep it in memory only."""
        return unseal(self.runtime.settings, self.task_id, str(self.params[field]))

    def heartbeat(self) -> None:
        """Liveness between checkpoints (long reads and writes); does not stop the step."""
        activity.heartbeat({"checkpoint": self.checkpoint})

    async def save(
        self, *, progress: float | None = None, message: str | None = None, **checkpoint: Any
    ) -> None:
        """Records a point the step can continue from; stops the step here if asked to."""
        self.checkpoint.update(checkpoint)
        if progress is not None:
            self.progress = progress
        activity.heartbeat({"checkpoint": self.checkpoint})
        now = time.monotonic()
        if progress is not None and (now - self._reported >= PROGRESS_INTERVAL or message):
            self._reported = now
            await self.apply_carried()  # progress shows on a row that is InProgress
            async with self.runtime.sessions.begin() as session:
                await apply_progress(session, self.task_id, round(progress, 2), message)
        if self.stop_requested:
            raise _Stop

    @property
    def carried_applied(self) -> bool:
        return not self._carried

    async def apply_carried(self, then: ProjectionWrite | None = None) -> bool:
        """Applies the carried writes not yet applied, then ``then``, in one transaction;
        False when the database failed it (the writes stay pending)."""
        async with self._carrying:
            writes = [*self._carried, *([then] if then is not None else [])]
            if not writes:
                return True
            try:
                await apply_writes(self.runtime.engine, writes)
            except Exception as exc:
                self.log.warning("a projection write failed: %s", exc)
                return False
            self._carried = []
            return True

    async def carried_settled(self) -> None:
        """Returns once no application of the carried writes is under way."""
        async with self._carrying:
            pass


async def run_step(
    request: StepRequest, work: Callable[[StepContext], Awaitable[dict[str, Any]]]
) -> StepResult:
    ctx = StepContext(request, current())
    job = asyncio.create_task(_guarded(ctx, work))
    carry = asyncio.create_task(_apply_carried_after(ctx, CARRY_WINDOW))
    try:
        while True:
            try:
                result = await asyncio.shield(job)
                break
            except asyncio.CancelledError:
                if job.done():
                    raise
                # Pause, cancel or worker shutdown: go on to the next checkpoint, then answer.
                ctx.stop_requested = True
    finally:
        carry.cancel()
        await ctx.carried_settled()
        if ctx.runtime.task_logs is not None:
            await ctx.runtime.task_logs.flush_now()  # the step's logs are in before its answer
    if result.done and request.completion is not None:
        # The task's Completed write, with its results and the time the work ended. The work
        # is done whatever happens here: on failure the workflow sends the write itself.
        completion = replace(
            request.completion, results=result.results, occurred_at=datetime.now(UTC).isoformat()
        )
        result.completed = await ctx.apply_carried(then=completion)
    else:
        await ctx.apply_carried()
    result.projected = ctx.carried_applied
    return result


async def _apply_carried_after(ctx: StepContext, delay: float) -> None:
    await asyncio.sleep(delay)
    # Shielded: the step's end cancels this, and a transaction under way is let finish.
    await asyncio.shield(ctx.apply_carried())


async def _guarded(
    ctx: StepContext, work: Callable[[StepContext], Awaitable[dict[str, Any]]]
) -> StepResult:
    try:
        results = await work(ctx)
    except _Stop:
        return StepResult(done=False, checkpoint=ctx.checkpoint, progress=ctx.progress)
    except ApplicationError:
        raise
    except StepFailed as exc:
        raise _failure(ctx, exc.code, exc.message, permanent=exc.permanent) from exc
    except Exception as exc:
        ctx.log.warning("step failed: %s: %s", type(exc).__name__, exc)
        raise _failure(ctx, type(exc).__name__, str(exc) or type(exc).__name__) from exc
    return StepResult(done=True, checkpoint=ctx.checkpoint, results=results, progress=ctx.progress)


def _failure(ctx: StepContext, code: str, message: str, *, permanent: bool = False) -> Exception:
    # Non-retryable for Temporal: the workflow decides, so it can count retries and show the
    # last error. Timeouts and crashes stay Temporal's to retry, from the last heartbeat.
    return ApplicationError(
        message,
        {"checkpoint": ctx.checkpoint, "permanent": permanent},
        type=code,
        non_retryable=True,
    )
