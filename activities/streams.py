"""Byte streams inside task steps: pacing, hashing on the way through, verified copies.

Task types read pool objects and write new ones (copies, archives, encrypted files) through
these, so every type gets the same rate cap (``task_max_bytes_per_second``), heartbeats while
bytes flow, and hash checks, without code of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable

from activities.steps import StepContext, StepFailed
from taskdrive.db.models import File
from taskdrive.errors import ErrorCode
from taskdrive.pools import Pool

PACE_SLICE = 0.5  # seconds: a paced stream sleeps in slices, heartbeating between them
HASH_IN_THREAD = 256 * 1024  # pieces this large are hashed off the event loop


class Pacer:
    """Holds a byte stream to at most ``max_bytes_per_second`` (0: no cap). ``on_wait`` runs
    between sleeps (a heartbeat), so a slow stream still looks alive."""

    def __init__(
        self, max_bytes_per_second: int, on_wait: Callable[[], object] | None = None
    ) -> None:
        self.max_bytes_per_second = max_bytes_per_second
        self.on_wait = on_wait
        self.passed = 0
        self._started = time.monotonic()

    async def advance(self, length: int) -> None:
        """Counts ``length`` more bytes and sleeps until the stream is back under the cap."""
        self.passed += length
        while self.max_bytes_per_second:
            ahead = self.passed / self.max_bytes_per_second - (time.monotonic() - self._started)
            if ahead <= 0:
                return
            await asyncio.sleep(min(ahead, PACE_SLICE))
            if self.on_wait is not None:
                self.on_wait()


class Digesting:
    """Passes a stream through unchanged while hashing it (SHA-256) and counting its bytes."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        self._digest = hashlib.sha256()
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pass()

    async def _pass(self) -> AsyncIterator[bytes]:
        async for piece in self._body:
            if len(piece) >= HASH_IN_THREAD:
                await asyncio.to_thread(self._digest.update, piece)  # releases the GIL
            else:
                self._digest.update(piece)
            self.size += len(piece)
            yield piece

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


async def read_object(ctx: StepContext, pool: Pool, key: str) -> AsyncIterator[bytes]:
    """The object's bytes, paced by the settings' task rate cap, heartbeating as they flow."""
    pacer = Pacer(ctx.runtime.settings.task_max_bytes_per_second, ctx.heartbeat)
    async for piece in pool.read(key):
        ctx.heartbeat()
        yield piece
        await pacer.advance(len(piece))


async def copy_verified(ctx: StepContext, file: File, target: Pool, key: str) -> int:
    """Copies ``file``'s bytes to ``key`` in ``target`` and checks them against the file's
    SHA-256; on a mismatch the copy is removed and the step fails for good. Returns the size."""
    source = ctx.runtime.pools.get(file.pool_id)
    copied = Digesting(read_object(ctx, source, file.storage_key))
    size = await target.write_stream(key, aiter(copied))
    if copied.hexdigest() != file.hash or size != file.size:
        await target.delete(key)
        raise StepFailed(
            ErrorCode.HASH_MISMATCH,
            f"the copy of {file.name} ({file.id}) does not match its SHA-256: the stored "
            f"bytes hash to {copied.hexdigest()}, the file record says {file.hash}",
            permanent=True,
        )
    return size
