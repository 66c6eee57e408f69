"""Streaming SHA-256 of a pool object, heartbeating its offset and honouring a rate cap."""

from __future__ import annotations

import asyncio
import hashlib
import time

from temporalio import activity

from taskdrive.pools import Pool


async def sha256_of(pool: Pool, key: str, *, max_bytes_per_second: int = 0) -> tuple[str, int]:
    """Returns (hex digest, size). Heartbeats ``{"offset": n}`` after every piece read."""
    digest = hashlib.sha256()
    offset = 0
    started = time.monotonic()
    async for piece in pool.read(key):
        # hashlib releases the GIL on large buffers: hash off the event loop so heartbeats and
        # other activities of this worker keep running.
        await asyncio.to_thread(digest.update, piece)
        offset += len(piece)
        activity.heartbeat({"offset": offset})
        if max_bytes_per_second:
            ahead = offset / max_bytes_per_second - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return digest.hexdigest(), offset
