"""The projection activity: workers are the only writers of task state after create."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from taskdrive.db.projection import apply_projection
from taskdrive.projection import ProjectionWrite


class ProjectionActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="project_task")
    async def project_task(self, write: ProjectionWrite) -> bool:
        """Applies one write; False means a newer write was already there (a harmless retry)."""
        async with self._sessions.begin() as session:
            return await apply_projection(session, write)
