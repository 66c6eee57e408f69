"""A chunk request's ledger work: two simple queries on a connection of the ledger's own pool.

Every chunk needs the same two things of Postgres: its upload (with the caller's right to it)
and the chunk claimed, before the bytes; the chunk recorded and the transaction committed,
after them. They are the API's busiest statements, and the event loop's CPU they take is CPU
the bytes of the other chunks in flight wait for (bench/upload.py). So they go the cheapest
way psycopg offers:

- Each step is one simple query: BEGIN travels with the claim, COMMIT with the record.
  psycopg binds the parameters client-side, with its own quoting.
- Both statements are calls of PL/pgSQL functions (migrations 0004 and 0007), whose plans
  Postgres keeps per connection: a simple query plans no more than a prepared one would.
- The connections are the ledger's own (``psycopg_pool``), in autocommit mode, so psycopg adds
  no BEGIN round trip, and neither SQLAlchemy's pool nor psycopg's pipeline mode is on the
  path. Measured on the upload benchmark, the API's event loop spent 0.626 core-seconds per
  GiB against 0.666 with those statements in pipeline mode on SQLAlchemy's connections (five
  uploads each); on an idle machine the two statements cost 100 to 140 µs of CPU per chunk
  against 275 to 330.

When a request ends without recording (an error, a client gone mid-chunk), its transaction
is rolled back before the connection goes back to the pool, and with it the claim. A crashed
API process never leaves a chunk claimed either: the lock dies with its transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from taskdrive.auth import Principal
from taskdrive.db.engine import PING_AFTER_IDLE_SECONDS
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


APPLICATION_NAME = "taskdrive-chunk-ledger"  # how its connections show in pg_stat_activity

# claim_chunk_of_upload() takes the chunk's transaction-scoped advisory lock, then checks the
# ledger with a snapshot taken after it (claim_upload_chunk, migration 0004).
_CLAIM = (
    "BEGIN; SELECT * FROM claim_chunk_of_upload("
    "%(task_id)s, %(index)s, %(lock_key)s, %(admin)s, %(account_id)s)"
)
_RECORD = "SELECT * FROM record_upload_chunk(%(task_id)s, %(index)s, %(size)s); COMMIT"


class ChunkLedger:
    """The chunk ledger's connections: one pool per API process, opened by the app."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int,
        ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        # When each connection was last given back: one idle ``ping_after_idle`` or longer is
        # pinged before use, as the engine's are (taskdrive.db.engine): it may have outlived
        # a database restart.
        self._ping_after_idle = ping_after_idle
        self._returned: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo,
            kwargs={"autocommit": True, "application_name": application_name},
            min_size=1,
            max_size=max_size,
            check=self._check,
            open=False,
            name="chunk-ledger",
        )

    async def open(self) -> None:
        """Starts connecting in the background: the API starts while the database is down."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ChunkTransaction]:
        """One chunk request's transaction: ``claim``, then ``record`` (which commits)."""
        try:
            connection = await self._pool.getconn()
        except PoolTimeout as exc:
            raise TaskdriveError(
                ErrorCode.SERVICE_UNAVAILABLE, f"the database is unreachable: {exc}"
            ) from exc
        try:
            yield ChunkTransaction(connection)
        finally:
            try:
                if connection.info.transaction_status in (
                    TransactionStatus.INTRANS,
                    TransactionStatus.INERROR,
                ):
                    # The claim goes with it. A connection that fails even that is broken and
                    # the pool discards it; the request's own error is the one to report.
                    with contextlib.suppress(psycopg.Error):
                        await connection.rollback()
            finally:
                self._returned[connection] = time.monotonic()
                await self._pool.putconn(connection)

    async def _check(self, connection: AsyncConnection[Any]) -> None:
        returned = self._returned.get(connection)
        if returned is not None and time.monotonic() - returned < self._ping_after_idle:
            return  # in steady use
        await connection.execute("SELECT 1")  # raises on a dead one: the pool takes another


class ChunkTransaction:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._cursor = AsyncClientCursor(connection)

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
        await self._execute(_CLAIM, params)
        self._cursor.nextset()  # past BEGIN's (empty) result
        row = await self._cursor.fetchone()
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
        try:
            await self._execute(_RECORD, params)
        except psycopg.errors.ForeignKeyViolation as exc:  # removed meanwhile (a cleanup)
            raise _gone(task_id) from exc
        row = await self._cursor.fetchone()
        if row is None:
            raise _gone(task_id)
        return LedgerTotals(row[0], row[1], row[2])

    async def _execute(self, query: str, params: dict[str, Any]) -> None:
        try:
            await self._cursor.execute(query, params)
        except psycopg.OperationalError as exc:
            # The connection broke (a database restart meets a connection in steady use):
            # the pool replaces it, and the client may send the chunk again.
            raise TaskdriveError(
                ErrorCode.SERVICE_UNAVAILABLE, f"the database connection failed: {exc}"
            ) from exc


def _gone(task_id: str) -> TaskdriveError:
    return TaskdriveError(ErrorCode.TASK_GONE, "the upload has ended", taskId=task_id)
