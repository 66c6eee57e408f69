"""Delivers a workflow's task state to the Postgres projection.

Every write is numbered (the projection applies a write only above the row's number, so a
write delivered twice or late never moves a task backwards) and delivered in one of two ways:

* **with the next step.** A step the workflow starts in the same workflow task carries the
  writes not yet applied, and its activity applies them as its work begins (at most a quarter
  second in, or with the step's end if that comes first: ``activities.steps``). Most
  transitions (started, resumed, a status message, a retry) come right before a step, and
  this spares each a local activity: an activity dispatch, an activation and a history marker
  apiece, which is most of what a small task costs the worker.
* **by a local activity**, when the workflow waits on anything else first: the lifecycle
  sends whatever no step took before it waits (``wait_until``, a pause, a retry's delay,
  continue-as-new); terminal writes are sent at once. Always from the workflow's main
  coroutine, where the write was made: a local activity scheduled from a concurrent task
  replayed differently from how it ran (a nondeterminism error on the next worker).

A write stays *unconfirmed* until its step answers having applied it (``answered``) or its
local activity returns, and every delivery re-sends the unconfirmed ones: a step that never
ran (cancelled while queued), failed, or could not apply them loses nothing. A final step may
also apply the task's Completed write itself (``reserve``), in one transaction with the writes
it carried when its work is short (``activities.steps``).

Histories recorded before writes rode with steps replay the old way: one local activity per
write, awaited where it is made (``versions.CARRIED_PROJECTION``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from taskdrive.projection import ProjectionWrite, TaskHeader
    from taskdrive.temporal import SA_STATUS

from workflows import versions

PROJECT_ACTIVITY = "project_task"  # one write; histories before CARRIED_PROJECTION
PROJECT_WRITES_ACTIVITY = "project_task_writes"  # several, in one transaction

# The projection must catch up however long Postgres is away: retry forever, backing off.
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
_TIMEOUT = timedelta(seconds=30)


class Projector:
    """Numbers the writes of one task; the numbering survives continue-as-new via ``seq``.
    ``version``: the task's (``workflows.versions``)."""

    def __init__(self, header: TaskHeader, seq: int, version: int) -> None:
        self.header = header
        self.seq = seq
        self.version = version
        self._unconfirmed: list[ProjectionWrite] = []
        self._carried = 0  # the highest seq handed to a step

    async def write(
        self, status: str, event_type: str, *, wait: bool = False, **fields: Any
    ) -> None:
        """Queues a write for the next step or ``flush_pending``; ``wait``: delivers it now."""
        write = self._numbered(status, event_type, **fields)
        if not versions.has(self.version, versions.CARRIED_PROJECTION):
            await self._send_one(write)
            return
        self._unconfirmed.append(write)
        if wait:
            await self.flush()

    def carry(self) -> list[ProjectionWrite]:
        """The unconfirmed writes, for a step about to start to apply before its work."""
        if self._unconfirmed:
            self._carried = self._unconfirmed[-1].seq
        return list(self._unconfirmed)

    def reserve(self, status: str, event_type: str, **fields: Any) -> ProjectionWrite | None:
        """The next write, numbered but not queued, for a final step to apply when its work is
        done. Its number is spent either way: if the step stops short, later writes outrank
        a late application of it. None on histories before carried writes."""
        if not versions.has(self.version, versions.CARRIED_PROJECTION):
            return None
        return self._numbered(status, event_type, **fields)

    def confirm(self, writes: list[ProjectionWrite]) -> None:
        """``writes`` (as carried by a step that answered) are applied."""
        if writes:
            applied = writes[-1].seq
            self._unconfirmed = [w for w in self._unconfirmed if w.seq > applied]

    def answered(self, writes: list[ProjectionWrite], *, applied: bool) -> None:
        """A step that carried ``writes`` answered, having applied them or not (the database
        failed it at the end of its work): those it did not apply count again as taken by no
        step, so ``flush_pending`` delivers them before the workflow next waits."""
        if applied:
            self.confirm(writes)
        elif writes:
            self._carried = min(self._carried, writes[0].seq - 1)

    async def flush(self) -> None:
        """Delivers every unconfirmed write now."""
        if self._unconfirmed:
            await self._send(list(self._unconfirmed))

    async def flush_pending(self) -> None:
        """Delivers the writes no step has taken (with any a step took and did not confirm);
        call before the workflow waits on anything but a step."""
        if self._unconfirmed and self._unconfirmed[-1].seq > self._carried:
            await self.flush()

    async def _send(self, writes: list[ProjectionWrite]) -> None:
        await workflow.execute_local_activity(
            PROJECT_WRITES_ACTIVITY, writes, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
        )
        self.confirm(writes)

    async def _send_one(self, write: ProjectionWrite) -> None:
        if versions.has(self.version, versions.LOCAL_PROJECTION):
            await workflow.execute_local_activity(
                PROJECT_ACTIVITY, write, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
            )
        else:  # histories recorded before the projection became a local activity
            await workflow.execute_activity(
                PROJECT_ACTIVITY, write, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
            )

    def _numbered(self, status: str, event_type: str, **fields: Any) -> ProjectionWrite:
        self.seq += 1
        return ProjectionWrite(
            header=self.header,
            seq=self.seq,
            status=status,
            event_type=event_type,
            occurred_at=workflow.now().isoformat(),
            **fields,
        )

    def mark_status(self, status: str) -> None:
        """Keeps the Web UI's TaskdriveStatus search attribute in step with the projection.
        Each upsert is a history event and a visibility write, so one that would not change
        the value is left out (the value as of the start and every upsert since is in the
        workflow's info: this replays the same)."""
        if (
            versions.has(self.version, versions.STATUS_ON_CHANGE)
            and workflow.info().typed_search_attributes.get(SA_STATUS) == status
        ):
            return
        workflow.upsert_search_attributes([SA_STATUS.value_set(status)])
