"""A chunk request's ledger work in two round trips, on the driver's own connection.

Every chunk needs the same two things of Postgres: its upload (with the caller's right to it)
and the chunk claimed, before the bytes; the chunk recorded and the transaction committed,
after them. Through the ORM session that was five round trips (the pool's ping, BEGIN, the
select, the record, COMMIT) and about 2 ms of CPU per chunk on the API's event loop, which the
bytes of the other chunks in flight were waiting for. Here the statements are plain SQL on the
psycopg connection in pipeline mode: BEGIN travels with the select and COMMIT with the record.

The connection comes from the engine's pool, so its health checks and limits still apply; when
the request ends without recording (an error, a client gone mid-chunk), the pool's reset rolls
the transaction back and with it the claim.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from taskdrive.auth import Principal
from taskdrive.db.engine import driver_connection
from taskdrive.errors import ErrorCode, TaskdriveError


class ChunkClaim(Enum):
    CLAIMED = "claimed"
    STORED = "stored"
    BUSY = "busy"


@dataclass(frozen=True)
class ChunkUpload:
    """What a chunk request needs of its upload."""

    task_id: str
    status: str
    storage_key: str
    multipart_upload_id: str | None
    file_size: int
    chunk_size: int
    chunks_count: int
    pool_id: uuid.UUID


@dataclass(frozen=True)
class LedgerTotals:
    chunks_uploaded: int
    bytes_uploaded: int
    last_activity: datetime


def chunk_lock_key(task_id: str, index: int) -> int:
    """A 63-bit advisory lock key for one chunk of one upload."""
    digest = hashlib.blake2b(f"{task_id}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# claim_upload_chunk() (migration 0004) takes the chunk's transaction-scoped advisory lock, then
# checks the ledger with a snapshot taken after it. A crashed API process never leaves a chunk
# claimed: the lock dies with its transaction.
_CLAIM = """
SELECT t.status, u.storage_key, u.multipart_upload_id, u.file_size, u.chunk_size,
       u.chunks_count, u.pool_id, claim_upload_chunk(u.task_id, %(index)s, %(lock_key)s)
FROM uploads u JOIN tasks t ON t.task_id = u.task_id
WHERE u.task_id = %(task_id)s AND t.deleted_at IS NULL
  AND (%(admin)s OR u.account_id = %(account_id)s)
"""

_RECORD = """
WITH stored AS (
    INSERT INTO upload_chunks (task_id, chunk_index, size)
    VALUES (%(task_id)s, %(index)s, %(size)s) RETURNING size
)
UPDATE uploads SET chunks_uploaded = chunks_uploaded + 1,
       bytes_uploaded = bytes_uploaded + (SELECT size FROM stored),
       last_activity = clock_timestamp()
WHERE task_id = %(task_id)s
RETURNING chunks_uploaded, bytes_uploaded, last_activity
"""


class ChunkLedger:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._connection = connection

    @classmethod
    @asynccontextmanager
    async def connect(cls, engine: AsyncEngine) -> AsyncIterator[ChunkLedger]:
        async with engine.connect() as pooled:
            yield cls(await driver_connection(pooled))

    async def claim(
        self, task_id: str, index: int, principal: Principal
    ) -> tuple[ChunkUpload, ChunkClaim]:
        """The upload, and chunk ``index`` claimed for this transaction unless it is stored;
        404 for an upload the caller may not see (another account's looks absent)."""
        params = {
            "task_id": task_id,
            "index": index,
            "lock_key": chunk_lock_key(task_id, index),
            "admin": principal.is_admin,
            "account_id": principal.account_id,
        }
        async with self._connection.pipeline(), self._connection.cursor() as cursor:
            await cursor.execute(_CLAIM, params)
            row = await cursor.fetchone()
        if row is None:
            raise TaskdriveError(
                ErrorCode.TASK_NOT_FOUND, f"upload task {task_id} not found", taskId=task_id
            )
        upload = ChunkUpload(task_id, *row[:7])
        return upload, ChunkClaim(row[7])

    async def record(self, task_id: str, index: int, size: int) -> LedgerTotals:
        """Records a durable chunk, bumps the upload's totals and commits (releasing the
        claim); call with the chunk claimed."""
        params = {"task_id": task_id, "index": index, "size": size}
        async with self._connection.pipeline(), self._connection.cursor() as cursor:
            await cursor.execute(_RECORD, params)
            await self._connection.commit()
            row = await cursor.fetchone()
        if row is None:  # removed meanwhile (a cleanup of ended uploads)
            raise TaskdriveError(ErrorCode.TASK_GONE, "the upload has ended", taskId=task_id)
        return LedgerTotals(row[0], row[1], row[2])
