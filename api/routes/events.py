"""``/ws``: live task events (task.created, task.progress, task.completed, ...), seed 000."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.deps import Services
from taskdrive.auth import InvalidToken, Principal

router = APIRouter(tags=["events"])
AUTH_WAIT_SECONDS = 10.0
CLOSE_UNAUTHORIZED = 4401  # 4000-4999 are the application's; 4401 mirrors HTTP 401


async def _authenticate(websocket: WebSocket, services: Services) -> Principal | None:
    """A token from ``Authorization: Bearer``, ``?token=``, or a first message
    ``{"type": "auth", "token": "..."}`` (browsers cannot set headers on WebSockets)."""
    header = websocket.headers.get("authorization", "")
    token = (
        header[7:] if header.lower().startswith("bearer ") else websocket.query_params.get("token")
    )
    if token is None:
        try:
            first = json.loads(await asyncio.wait_for(websocket.receive_text(), AUTH_WAIT_SECONDS))
            token = (
                first.get("token")
                if isinstance(first, dict) and first.get("type") == "auth"
                else None
            )
        except (TimeoutError, ValueError, WebSocketDisconnect):
            token = None
    try:
        return services.tokens.verify(token) if isinstance(token, str) and token else None
    except InvalidToken:
        return None


@router.websocket("/ws")
async def task_events(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    principal = await _authenticate(websocket, services)
    if principal is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "a valid bearer token is required")
        return
    try:
        async with services.events.subscription(principal) as queue:
            # Only now is LISTEN in place: a client may start work as soon as it reads this.
            await websocket.send_json(
                {"type": "ready", "data": {"accountId": str(principal.account_id)}}
            )
            await _relay(websocket, queue)
    except TimeoutError:
        await websocket.close(1011, "event stream unavailable")


async def _relay(websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    closed: asyncio.Future[Any] = asyncio.ensure_future(_wait_closed(websocket))
    pending: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
    try:
        while True:
            done, _ = await asyncio.wait({pending, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                return
            await websocket.send_json(pending.result())
            pending = asyncio.ensure_future(queue.get())
    finally:
        pending.cancel()
        closed.cancel()


async def _wait_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
