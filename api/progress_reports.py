"""Upload progress sent to the workflows beside the chunk answers, not before them.

A signal is a round trip to Temporal and a workflow task. Awaiting it made the chunk that
crossed a progress step answer later, and that lane of the client idle meanwhile. The
progress a signal carries is only a report (the ledger in Postgres is the record, and the
workflow keeps the furthest report it has seen), so it can travel in the background: one
sender per upload, at most one signal per ``interval`` (each costs the worker a workflow task
and a projection write), and reports that pile up meanwhile go as one, merged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from api.temporal_calls import signal
from taskdrive.errors import TaskdriveError
from taskdrive.upload_params import SIGNAL_PROGRESS, ChunkProgress

log = logging.getLogger("taskdrive.api.progress")


class ProgressReports:
    def __init__(self, temporal: Callable[[], Awaitable[Client]], *, interval: float) -> None:
        self._temporal = temporal
        self._interval = interval
        self._pending: dict[str, ChunkProgress] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}

    def report(self, task_id: str, progress: ChunkProgress) -> None:
        """Queues ``progress`` for the upload's workflow; returns at once."""
        queued = self._pending.get(task_id)
        self._pending[task_id] = queued.merged(progress) if queued else progress
        if task_id not in self._senders:
            sender = asyncio.create_task(self._send(task_id))
            self._senders[task_id] = sender
            sender.add_done_callback(lambda _: self._senders.pop(task_id, None))

    async def flush(self, task_id: str) -> None:
        """Sends the report queued for ``task_id`` now, so that a pause or cancel asked through
        the API finds the workflow's progress current (a task that ends keeps its last one)."""
        progress = self._pending.pop(task_id, None)
        if progress is not None:
            await self._signal(task_id, progress)

    async def _send(self, task_id: str) -> None:
        while (progress := self._pending.pop(task_id, None)) is not None:
            await self._signal(task_id, progress)
            await asyncio.sleep(self._interval)  # rate limit, not synchronization

    async def _signal(self, task_id: str, progress: ChunkProgress) -> None:
        try:
            await signal(await self._temporal(), task_id, SIGNAL_PROGRESS, progress, required=False)
        except TaskdriveError as exc:  # Temporal unreachable: the next report tries again
            log.warning("progress of upload %s not reported: %s", task_id, exc.message)

    async def close(self) -> None:
        """Stops the senders; what they had not sent is dropped (it was only a report)."""
        senders = list(self._senders.values())
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
