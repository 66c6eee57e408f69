"""Fans the projection's Postgres notifications out to WebSocket subscribers.

One LISTEN connection per API process, opened when the first subscriber arrives and kept open
(reconnecting with backoff) while anyone listens. Each subscriber sees its own account's
events; an admin sees all. A subscriber that falls behind loses its oldest events rather than
slowing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from taskdrive.auth import Principal
from taskdrive.db.projection import NOTIFY_CHANNEL

log = logging.getLogger("taskdrive.api.events")
QUEUE_SIZE = 1000
LISTEN_WAIT_SECONDS = 10.0


class EventHub:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._subscribers: dict[asyncio.Queue[dict[str, Any]], Principal] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscription(
        self, principal: Principal
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of the events the principal may see, usable once LISTEN is in place."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers[queue] = principal
        try:
            if self._listener is None or self._listener.done():
                self._listening.clear()
                self._listener = asyncio.create_task(self._listen())
            await asyncio.wait_for(self._listening.wait(), LISTEN_WAIT_SECONDS)
            yield queue
        finally:
            del self._subscribers[queue]

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        backoff = 0.5
        while self._subscribers:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    backoff = 0.5
                    async for note in conn.notifies():
                        self._dispatch(json.loads(note.payload))
            except (psycopg.Error, OSError) as exc:
                log.warning("event listener lost Postgres (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _dispatch(self, payload: dict[str, Any]) -> None:
        account = payload.pop("accountId", None)
        for queue, principal in self._subscribers.items():
            if principal.is_admin or str(principal.account_id) == account:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(payload)
