"""Execution logs: what a task's activities log, stored per task for the API to page out.

A logging handler on the activity logger picks every record that carries Temporal's activity
context (so its workflow id, which is the task id) and queues it; a background task writes the
queue to ``task_logs`` in batches. Logging never waits on the database, and a record that
cannot be stored is dropped with a warning rather than failing the activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.runtime import installed
from taskdrive.db.models import TaskLog

log = logging.getLogger("taskdrive.worker.task_logs")

FLUSH_INTERVAL = 0.5
MAX_QUEUED = 10_000
MAX_MESSAGE = 8_000


class TaskLogSink(logging.Handler):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(level=logging.INFO)
        self._sessions = sessions
        self._queue: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        context = getattr(record, "temporal_activity", None)
        if not isinstance(context, dict) or "workflow_id" not in context:
            return
        owner = installed()
        if owner is None or owner.task_logs is not self:
            return  # another worker's activity (tests run several in one process)
        message = record.getMessage()
        suffix = f" ({context})"
        if message.endswith(suffix):  # the SDK appends the context to the text too
            message = message[: -len(suffix)]
        if len(self._queue) >= MAX_QUEUED:
            return
        self._queue.append(
            {
                "task_id": str(context["workflow_id"]),
                "level": record.levelname,
                "message": message[:MAX_MESSAGE],
                "source": str(context.get("activity_type", record.name))[:200],
                "attempt": int(context.get("attempt", 1)),
                "logged_at": datetime.fromtimestamp(record.created, UTC),
            }
        )
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._flusher = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush_now()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush_now()
            await asyncio.sleep(FLUSH_INTERVAL)  # batch what arrives meanwhile

    async def flush_now(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            async with self._sessions.begin() as session:
                await session.execute(insert(TaskLog), batch)
        except Exception as exc:
            # A task whose row is gone (deleted) or a database outage: the logs are lost, the
            # work is not.
            log.warning("dropped %d task log records: %s", len(batch), exc)
