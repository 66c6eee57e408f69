"""Streaming SHA-256 of a pool object, heartbeating its offset and honouring a rate cap."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from temporalio import activity

from activities.streams import Pacer
from taskdrive.pools import ObjectNotFound, Pool
from taskdrive.pools.base import LocalFiles

# One thread hop reads and hashes a block this large (hashlib releases the GIL meanwhile).
BLOCK = 8 * 1024 * 1024


async def sha256_of(pool: Pool, key: str, *, max_bytes_per_second: int = 0) -> tuple[str, int]:
    """Returns (hex digest, size). Heartbeats ``{"offset": n}`` after every block."""
    digest = hashlib.sha256()
    size = await hash_object(
        pool,
        key,
        digest,
        max_bytes_per_second=max_bytes_per_second,
        on_block=lambda offset: activity.heartbeat({"offset": offset}),
    )
    return digest.hexdigest(), size


async def hash_object(
    pool: Pool,
    key: str,
    digest: hashlib._Hash,
    *,
    max_bytes_per_second: int = 0,
    on_block: Callable[[int], object] | None = None,
) -> int:
    """Feeds the object's bytes to ``digest``; returns its size. ``on_block(offset)`` runs
    after every block (heartbeats); ``max_bytes_per_second`` (0: none) paces the reading."""

    def still_here() -> None:  # heartbeats while paced
        if on_block is not None:
            on_block(pacer.passed)

    pacer = Pacer(max_bytes_per_second, still_here)
    blocks = _file_blocks(pool.object_path(key), digest) if isinstance(pool, LocalFiles) else None
    async for length in blocks or _streamed_blocks(pool, key, digest):
        if on_block is not None:
            on_block(pacer.passed + length)
        await pacer.advance(length)
    return pacer.passed


async def _file_blocks(path: Path, digest: hashlib._Hash) -> AsyncIterator[int]:
    def read_and_hash(file: BinaryIO) -> int:
        block = file.read(BLOCK)
        digest.update(block)
        return len(block)

    try:
        file = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError as exc:
        raise ObjectNotFound(str(path)) from exc
    try:
        while length := await asyncio.to_thread(read_and_hash, file):
            yield length
    finally:
        file.close()


async def _streamed_blocks(pool: Pool, key: str, digest: hashlib._Hash) -> AsyncIterator[int]:
    pending: list[bytes] = []
    size = 0
    async for piece in pool.read(key):
        pending.append(piece)
        size += len(piece)
        if size >= BLOCK:
            await asyncio.to_thread(update_digest, digest, pending)
            yield size
            pending, size = [], 0
    if pending:
        await asyncio.to_thread(update_digest, digest, pending)
        yield size


def update_digest(digest: hashlib._Hash, pieces: list[bytes]) -> None:
    """Feeds ``pieces`` to ``digest``; call in a worker thread (hashlib releases the GIL)."""
    for piece in pieces:
        digest.update(piece)
