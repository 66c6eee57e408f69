"""SHA-256 of an upload computed while its chunks arrive, so assembly need not read it again.

SHA-256 is sequential, so the digest can only take chunks in order. Each upload has a
*frontier*: chunks before it are hashed. After a chunk is stored, a background pass feeds the
stored chunks that continue the frontier to the digest. When the frontier reaches the end, the
digest goes into ``uploads.verified_hash`` and assembly compares that instead of hashing the
file again.

A chunk request keeps the pieces of the body it received (:class:`HeldChunk`), so the pass
hashes those bytes rather than reading them back from the pool: with several chunks in
flight most arrive ahead of the frontier, and reading each back cost the kernel a copy of the
whole upload. The pieces held are bounded per process (``max_held_bytes``): a chunk that
finds the budget spent keeps nothing, and the pass reads it back from the pool (from the page
cache: it was just written).

The hashing runs on threads of its own at a lower CPU priority (``BACKGROUND_NICENESS``): it
is background work, and it takes the CPU the chunk requests leave idle. On the default
executor, at the requests' priority, it slowed their receiving: with four 8 MiB chunks in
flight on two cores a chunk's body took 20.4 ms to arrive against 17.1 ms now (medians under
the upload benchmark's load), and a chunk's round trip 39.7 against 35.7 ms.

Which chunks are stored comes from this process's own chunk requests as they commit, so a
pass costs no database round trip (under load each one waits for a busy CPU). Chunks stored
by another process, or before a restart, are only learnt from the ledger when the upload is
completed (:meth:`FrontierHasher.settle`).

The state lives in this process only, because a hash state cannot be saved portably. That is
enough: anything that loses it (a restart, chunks sent to another API replica, an S3 pool,
whose parts cannot be read before completion) leaves ``verified_hash`` NULL and assembly
hashes the whole file as before. Only bytes already durable in the pool are hashed, and a
stored chunk is never written again, so the digest is the digest of the assembled file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.hashing import update_digest
from taskdrive.db.chunk_ledger import ChunkUpload
from taskdrive.db.models import Upload, UploadChunk
from taskdrive.pools import Pool
from taskdrive.pools.base import LocalFiles

log = logging.getLogger("taskdrive.api.frontier_hash")

BLOCK = 8 * 1024 * 1024  # bytes read and hashed per thread hop (hashlib releases the GIL)
MAX_HELD_BYTES = 64 * 1024 * 1024  # default budget of received pieces kept for the digest
BACKGROUND_NICENESS = 10  # the hashing threads' nice value, above the requests' 0
HASH_THREADS = min(4, os.cpu_count() or 1)  # an upload's digest is sequential: one at a time
T = TypeVar("T")


class _Budget:
    """Bytes of received pieces this process may keep; used on the event loop only.

    Chunks parked with a frontier (stored, waiting for the digest to reach them) give way to
    pieces arriving, oldest first: an upload whose frontier is stuck (its next chunk goes to
    another replica, or never comes) must not keep the budget from everyone else."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._parked: OrderedDict[HeldChunk, None] = OrderedDict()

    def take(self, size: int) -> bool:
        if size > self.limit:
            return False
        while self.used + size > self.limit and self._parked:
            next(iter(self._parked)).release()  # read back from the pool when its turn comes
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def park(self, chunk: HeldChunk) -> None:
        self._parked[chunk] = None

    def give(self, chunk: HeldChunk, size: int) -> None:
        self.used -= size
        self._parked.pop(chunk, None)


class HeldChunk:
    """One chunk's body as received, kept for the digest while the budget allows.

    Pass the body through :meth:`tee`; then hand it to :meth:`FrontierHasher.chunk_stored`,
    or :meth:`release` it when the chunk is not stored."""

    def __init__(self, budget: _Budget) -> None:
        self._budget = budget
        self.pieces: list[bytes] = []
        self.size = 0
        self.complete = True  # False once a piece did not fit: the pass reads the chunk back

    async def tee(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for piece in body:
            if self.complete:
                if self._budget.take(len(piece)):
                    self.pieces.append(piece)
                    self.size += len(piece)
                else:
                    self.release()
            yield piece

    def park(self) -> None:
        """Stored: from now on it gives way to arriving pieces when the budget is short."""
        if self.complete:
            self._budget.park(self)

    def release(self) -> None:
        """Drops the pieces (idempotent); the chunk is read back from the pool if hashed."""
        self._budget.give(self, self.size)
        self.pieces, self.size, self.complete = [], 0, False


@dataclass
class _Frontier:
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    next_index: int = 0
    stored: set[int] = field(default_factory=set)  # stored chunks past ``next_index``
    held: dict[int, HeldChunk] = field(default_factory=dict)  # their bytes, where kept
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wanted: int = 0  # bumped by every stored chunk; the pass runs until it stops moving

    def release(self) -> None:
        for chunk in self.held.values():
            chunk.release()
        self.held.clear()


@dataclass(frozen=True)
class _Shape:
    task_id: str
    storage_key: str
    file_size: int
    chunk_size: int
    chunks_count: int

    @classmethod
    def of(cls, upload: Upload | ChunkUpload) -> _Shape:
        return cls(
            upload.task_id,
            upload.storage_key,
            upload.file_size,
            upload.chunk_size,
            upload.chunks_count,
        )


class FrontierHasher:
    """Per-process frontiers of the uploads this process receives chunks for."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_uploads: int = 1024,
        max_held_bytes: int = MAX_HELD_BYTES,
    ) -> None:
        self._sessions = sessions
        self._max_uploads = max_uploads
        self._budget = _Budget(max_held_bytes)
        self._frontiers: OrderedDict[str, _Frontier] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._hasher = ThreadPoolExecutor(
            HASH_THREADS, thread_name_prefix="frontier-hash", initializer=_background_priority
        )

    @property
    def held_bytes(self) -> int:
        """Bytes of received pieces kept for the digests now."""
        return self._budget.used

    def holder(self, pool: Pool) -> HeldChunk | None:
        """Where a chunk request for ``pool`` keeps its body; None when no digest will take
        it (pools other than local files are not hashed here)."""
        return HeldChunk(self._budget) if isinstance(pool, LocalFiles) else None

    def chunk_stored(
        self, upload: Upload | ChunkUpload, pool: Pool, index: int, held: HeldChunk | None
    ) -> None:
        """Advances the upload's frontier in the background; the chunk's answer does not wait.

        Call once chunk ``index`` is durable and its ledger row committed, with the body
        ``holder`` gave its request (the frontier takes it over)."""
        if not isinstance(pool, LocalFiles):
            if held is not None:
                held.release()
            return
        frontier = self._frontier(upload.task_id)
        frontier.stored.add(index)
        if held is not None:
            if held.complete and index >= frontier.next_index and index not in frontier.held:
                frontier.held[index] = held
                held.park()
            else:
                held.release()
        task = asyncio.create_task(self._advance(_Shape.of(upload), pool))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self, upload: Upload | ChunkUpload, pool: Pool) -> None:
        """Waits for the pass in flight, learns from the ledger the chunks other processes
        stored, and takes in whatever continues the frontier; called before complete."""
        if isinstance(pool, LocalFiles) and upload.task_id in self._frontiers:
            await self._advance(_Shape.of(upload), pool, settling=True)

    def forget(self, task_id: str) -> None:
        frontier = self._frontiers.pop(task_id, None)
        if frontier is not None:
            frontier.release()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for frontier in self._frontiers.values():
            frontier.release()
        self._frontiers.clear()
        self._hasher.shutdown(wait=False, cancel_futures=True)

    def _frontier(self, task_id: str) -> _Frontier:
        frontier = self._frontiers.get(task_id)
        if frontier is None:
            frontier = self._frontiers[task_id] = _Frontier()
            while len(self._frontiers) > self._max_uploads:
                # The longest idle: its assembly hashes the file instead.
                self._frontiers.popitem(last=False)[1].release()
        self._frontiers.move_to_end(task_id)
        return frontier

    async def _advance(self, shape: _Shape, pool: LocalFiles, *, settling: bool = False) -> None:
        frontier = self._frontier(shape.task_id)
        frontier.wanted += 1
        if frontier.lock.locked() and not settling:
            return  # the pass in flight sees ``wanted`` move and goes round again
        try:
            async with frontier.lock:
                if self._frontiers.get(shape.task_id) is not frontier:
                    return  # finished or forgotten while we waited
                if settling:
                    frontier.stored.update(await self._ledger(shape.task_id, frontier.next_index))
                await self._run(shape, pool, frontier)
        except Exception:
            # Never fatal: without a verified hash, assembly hashes the file itself.
            log.exception("progressive hash of upload %s abandoned", shape.task_id)
            self.forget(shape.task_id)

    async def _run(self, shape: _Shape, pool: LocalFiles, frontier: _Frontier) -> None:
        path = pool.staging_path(shape.storage_key)
        while True:
            seen = frontier.wanted
            first = frontier.next_index
            end_index = first
            while end_index in frontier.stored:
                end_index += 1
            index = first
            while index < end_index:
                held = frontier.held.pop(index, None)
                if held is not None and held.complete:
                    try:
                        await self._hashing(update_digest, frontier.digest, held.pieces)
                    finally:
                        held.release()
                    stop = index + 1
                else:
                    # A run of chunks whose bytes were not kept: read back from the pool.
                    if held is not None:
                        held.release()
                    stop = index + 1
                    while stop < end_index and not _kept(frontier.held.get(stop)):
                        if (dropped := frontier.held.pop(stop, None)) is not None:
                            dropped.release()
                        stop += 1
                    start = index * shape.chunk_size
                    end = min(stop * shape.chunk_size, shape.file_size)
                    await self._hash_range(path, frontier.digest, start, end)
                frontier.stored.difference_update(range(index, stop))
                frontier.next_index = index = stop
            if frontier.next_index == shape.chunks_count:
                await self._record(shape.task_id, frontier.digest.hexdigest())
                self.forget(shape.task_id)
                return
            if frontier.wanted == seen:
                return

    async def _hash_range(self, path: Path, digest: hashlib._Hash, start: int, end: int) -> None:
        offset = start
        while offset < end:
            offset += await self._hashing(_read_and_hash, path, digest, offset, end)

    def _hashing(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on the hashing threads, which run at background priority: the digests
        take the CPU that chunk requests leave idle instead of competing with them."""
        return asyncio.get_running_loop().run_in_executor(self._hasher, fn, *args)

    async def _ledger(self, task_id: str, first: int) -> list[int]:
        """The chunks at or past ``first`` the ledger holds, whoever stored them."""
        async with self._sessions() as session:
            return list(
                await session.scalars(
                    select(UploadChunk.chunk_index).where(
                        UploadChunk.task_id == task_id, UploadChunk.chunk_index >= first
                    )
                )
            )

    async def _record(self, task_id: str, digest: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Upload).where(Upload.task_id == task_id).values(verified_hash=digest)
            )


def _background_priority() -> None:
    """Lowers the calling thread's CPU priority (on Linux ``nice`` is per thread)."""
    with contextlib.suppress(OSError, AttributeError):  # not permitted, or not POSIX
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


def _kept(held: HeldChunk | None) -> bool:
    return held is not None and held.complete


def _read_and_hash(path: Path, digest: hashlib._Hash, offset: int, end: int) -> int:
    """One block: opened, read and closed in one thread hop."""
    fd = os.open(path, os.O_RDONLY)
    try:
        block = os.pread(fd, min(BLOCK, end - offset), offset)
    finally:
        os.close(fd)
    if not block:
        raise EOFError(f"staging file ends at {offset}, before {end}")
    digest.update(block)
    return len(block)
