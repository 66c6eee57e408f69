"""A task workflow's state and its projection: the layer under the lifecycle.

``ProjectedTask`` holds what a task workflow knows of its task (the input, the state carried
across continue-as-new, the status and message) and turns each change into a projection write
(``workflows.projector``), with the Web UI's status attribute kept in step; it answers the
progress query. ``workflows.lifecycle.TaskWorkflow`` builds the lifecycle on it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from taskdrive.projection import ProjectionWrite
    from taskdrive.statuses import TaskStatus
    from taskdrive.tasks import QUERY_PROGRESS, LifecycleSignal, TaskInput, TaskState, TaskView
    from workflows.interrupts import Interrupts
    from workflows.projector import Projector


class ProjectedTask(Interrupts):
    def __init__(self) -> None:
        super().__init__()
        self._inp: TaskInput | None = None
        self._state = TaskState()
        self._message: str | None = None
        self._projector: Projector | None = None
        self._projected_progress = -1.0
        self._final_results: dict[str, Any] | None = None  # a final step projected Completed

    @property
    def input_ready(self) -> bool:
        """False only in signal handlers run before ``run`` (signals in the first workflow task
        are handled first): ``task_input``, ``params`` and ``state`` are not there yet."""
        return self._inp is not None

    @property
    def task_input(self) -> TaskInput:
        assert self._inp is not None, "run() sets the input first"
        return self._inp

    @property
    def state(self) -> dict[str, Any]:
        """The type's own workflow state, carried across continue-as-new (JSON values)."""
        state: dict[str, Any] = self._state.checkpoint.setdefault("workflow", {})
        return state

    @property
    def checkpoints(self) -> dict[str, Any]:
        """Each unfinished step's last checkpoint, by step key."""
        return {k: v for k, v in self._state.checkpoint.items() if k != "workflow"}

    @property
    def unanswered_steps(self) -> frozenset[str]:
        """The keys of steps whose last run ended without an answer: cancelled while not
        running (queued, or waiting to be retried after its worker died). Such a step may
        have written past its checkpoint, so ``cleanup`` cannot trust the checkpoint alone."""
        return frozenset(self._state.unanswered)

    async def _transition(
        self,
        status: TaskStatus,
        event: str,
        asked: LifecycleSignal | None = None,
        *,
        started: bool = False,
    ) -> None:
        self._status = status
        await self._write(
            event,
            started=started,
            reason=asked.reason if asked else None,
            actor=asked.by if asked else None,
        )

    async def _write(self, event: str, **fields: Any) -> None:
        """Projects the task as it stands; terminal writes (``finished``) are delivered before
        this returns, others with the next step or once the workflow waits."""
        projector = self._require_projector()
        self._projected_progress = self._state.progress
        await projector.write(
            self._status, event, wait=bool(fields.get("finished")), **self._fields(**fields)
        )
        self._state.seq = projector.seq
        if event != "task.progress":
            projector.mark_status(self._status)

    def _reserve_completion(self) -> ProjectionWrite | None:
        """The Completed write a final step applies with its results (see ``step``)."""
        fields = self._fields(progress=100.0, status_message=None, finished=True)
        write = self._require_projector().reserve(TaskStatus.COMPLETED, "task.completed", **fields)
        self._state.seq = self._require_projector().seq
        return write

    def _fields(self, **fields: Any) -> dict[str, Any]:
        """A write's fields: the task's progress, message and retries unless given."""
        return {
            "progress": self._state.progress,
            "status_message": self._message,
            "retry_count": self._state.retry_count,
            "max_retries": self.task_input.retry.max_retries,
            **fields,
        }

    async def wait_until(
        self, condition: Callable[[], bool], at_most: timedelta | None = None
    ) -> bool:
        # What is queued for the projection goes out first: a wait may be long.
        await self._require_projector().flush_pending()
        return await super().wait_until(condition, at_most)

    def _require_projector(self) -> Projector:
        assert self._projector is not None, "run() creates the projector first"
        return self._projector

    # --- the query (the signals are ``Interrupts``') -----------------------------------------

    @workflow.query(name=QUERY_PROGRESS)
    def progress(self) -> TaskView:
        inp = self.task_input
        return TaskView(
            task_id=inp.header.task_id,
            type=inp.header.type,
            status=self._status,
            progress=self._state.progress,
            status_message=self._message,
            retry_count=self._state.retry_count,
            checkpoint=self._state.checkpoint,
        )
