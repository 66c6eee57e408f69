"""Writes a workflow's task state into the Postgres projection through the projection activity."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from taskdrive.projection import ProjectionWrite, TaskHeader
    from taskdrive.temporal import SA_STATUS

PROJECT_ACTIVITY = "project_task"
_LOCAL_PATCH = "projection-local-activity"

# The projection must catch up however long Postgres is away: retry forever, backing off.
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


class Projector:
    """Numbers the writes of one task; the numbering survives continue-as-new via ``seq``."""

    def __init__(self, header: TaskHeader, seq: int) -> None:
        self.header = header
        self.seq = seq

    async def write(self, status: str, event_type: str, **fields: Any) -> None:
        self.seq += 1
        write = ProjectionWrite(
            header=self.header,
            seq=self.seq,
            status=status,
            event_type=event_type,
            occurred_at=workflow.now().isoformat(),
            **fields,
        )
        if workflow.patched(_LOCAL_PATCH):
            # A local activity: the write runs inside the workflow task that asked for it,
            # sparing a round trip through the server (two workflow tasks) per transition.
            await workflow.execute_local_activity(
                PROJECT_ACTIVITY,
                write,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_RETRY,
            )
        else:  # histories recorded before the patch
            await workflow.execute_activity(
                PROJECT_ACTIVITY,
                write,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_RETRY,
            )

    @staticmethod
    def mark_status(status: str) -> None:
        """Keeps the Web UI's TaskdriveStatus search attribute in step with the projection."""
        workflow.upsert_search_attributes([SA_STATUS.value_set(status)])
