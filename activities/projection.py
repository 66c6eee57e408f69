"""The projection activities: workers are the only writers of task state after create.

Local activities of the task workflows (``workflows.projector``); steps apply the writes they
carry with the same ``apply_writes``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from taskdrive.db.projection import apply_writes
from taskdrive.projection import ProjectionWrite


class ProjectionActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def all(self) -> list[Callable[..., Any]]:
        return [self.project_task, self.project_task_writes]

    @activity.defn(name="project_task_writes")
    async def project_task_writes(self, writes: list[ProjectionWrite]) -> None:
        """Applies ``writes`` in order, in one transaction; those a newer write beat are no-ops."""
        await apply_writes(self._engine, writes)

    @activity.defn(name="project_task")
    async def project_task(self, write: ProjectionWrite) -> bool:
        """One write, as histories recorded before writes rode with steps ask for it."""
        return await apply_writes(self._engine, [write])
