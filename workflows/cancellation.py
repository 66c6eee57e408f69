"""Cancellation requested through Temporal itself (the Web UI, ``temporal workflow cancel``),
turned into the task's own cancel.

Temporal delivers such a request by cancelling the workflow's main coroutine wherever it is
waiting: inside a timer, a projection write (which then fails as a cancelled local activity) or
a step. A cleanup written against each of those places misses one sooner or later and leaves
staging or a half-written file behind. So the body runs as its own task, shielded from that
cancellation; the request is handed to the workflow as if the cancel signal had arrived, and
the body winds down through the one path every cancel takes: the step stops at its
checkpoint, cleanup runs, the terminal status is projected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def run_cancellable(
    body: Coroutine[Any, Any, T], on_cancel_requested: Callable[[], None]
) -> tuple[T, bool]:
    """Runs ``body`` to its end; returns its result and whether Temporal asked to cancel."""
    task = asyncio.ensure_future(body)
    requested = False
    while True:
        try:
            return await asyncio.shield(task), requested
        except asyncio.CancelledError:
            if task.done():  # the body itself was cancelled: nothing left to wind down
                raise
            requested = True
            on_cancel_requested()
