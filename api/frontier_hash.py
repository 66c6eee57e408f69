"""SHA-256 of an upload computed while its chunks arrive, so assembly need not read it again.

SHA-256 is sequential, so the digest can only take chunks in order. Each upload has a
*frontier*: chunks before it are hashed. After a chunk is stored, a background pass reads the
stored chunks that continue the frontier back from the pool (they are in the page cache, just
written) and feeds them to the digest. When the frontier reaches the end, the digest goes into
``uploads.verified_hash`` and assembly compares that instead of hashing the file again.

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
import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskdrive.db.chunk_ledger import ChunkUpload
from taskdrive.db.models import Upload, UploadChunk
from taskdrive.pools import Pool
from taskdrive.pools.base import LocalFiles

log = logging.getLogger("taskdrive.api.frontier_hash")

BLOCK = 8 * 1024 * 1024  # bytes read and hashed per thread hop (hashlib releases the GIL)


@dataclass
class _Frontier:
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    next_index: int = 0
    stored: set[int] = field(default_factory=set)  # stored chunks past ``next_index``
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wanted: int = 0  # bumped by every stored chunk; the pass runs until it stops moving


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
        self, sessions: async_sessionmaker[AsyncSession], *, max_uploads: int = 1024
    ) -> None:
        self._sessions = sessions
        self._max_uploads = max_uploads
        self._frontiers: OrderedDict[str, _Frontier] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    def chunk_stored(self, upload: Upload | ChunkUpload, pool: Pool, index: int) -> None:
        """Advances the upload's frontier in the background; the chunk's answer does not wait.

        Call once chunk ``index`` is durable and its ledger row committed."""
        if not isinstance(pool, LocalFiles):
            return
        self._frontier(upload.task_id).stored.add(index)
        task = asyncio.create_task(self._advance(_Shape.of(upload), pool))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self, upload: Upload | ChunkUpload, pool: Pool) -> None:
        """Waits for the pass in flight, learns from the ledger the chunks other processes
        stored, and takes in whatever continues the frontier; called before complete."""
        if isinstance(pool, LocalFiles) and upload.task_id in self._frontiers:
            await self._advance(_Shape.of(upload), pool, settling=True)

    def forget(self, task_id: str) -> None:
        self._frontiers.pop(task_id, None)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _frontier(self, task_id: str) -> _Frontier:
        frontier = self._frontiers.get(task_id)
        if frontier is None:
            frontier = self._frontiers[task_id] = _Frontier()
            while len(self._frontiers) > self._max_uploads:
                self._frontiers.popitem(last=False)  # the longest idle: it falls back to a pass
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
            if end_index > first:
                start = first * shape.chunk_size
                end = min(end_index * shape.chunk_size, shape.file_size)
                await _hash_range(path, frontier.digest, start, end)
                frontier.stored.difference_update(range(first, end_index))
                frontier.next_index = end_index
            if frontier.next_index == shape.chunks_count:
                await self._record(shape.task_id, frontier.digest.hexdigest())
                self.forget(shape.task_id)
                return
            if frontier.wanted == seen:
                return

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


async def _hash_range(path: Path, digest: hashlib._Hash, start: int, end: int) -> None:
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
    try:
        offset = start
        while offset < end:
            offset += await asyncio.to_thread(_read_and_hash, fd, digest, offset, end)
    finally:
        os.close(fd)


def _read_and_hash(fd: int, digest: hashlib._Hash, offset: int, end: int) -> int:
    block = os.pread(fd, min(BLOCK, end - offset), offset)
    if not block:
        raise EOFError(f"staging file ends at {offset}, before {end}")
    digest.update(block)
    return len(block)
