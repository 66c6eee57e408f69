"""A chunk request's ledger work: two simple queries on a connection of the ledger's own pool.

Every chunk needs the same two things of Postgres: its upload (with the caller's right to it)
and the chunk claimed, before the bytes; the chunk recorded and the transaction committed,
after them. They are the API's busiest statements, and the event loop's CPU they take is CPU
the bytes of the other chunks in flight wait for (bench/upload.py). So they go the cheapest
way psycopg offers:

- Each step is one simple query: BEGIN travels with the claim, COMMIT with the record.
- They go through psycopg's libpq wrapper (``psycopg.pq``) rather than a cursor: values quoted
  by libpq, the few columns read as text (:class:`ChunkTransaction`).
- Both statements are calls of PL/pgSQL functions (migrations 0004 and 0007), whose plans
  Postgres keeps per connection: a simple query plans no more than a prepared one would.
- The connections are the ledger's own (``psycopg_pool``), in autocommit mode, so psycopg adds
  no BEGIN round trip, and neither SQLAlchemy's pool nor psycopg's pipeline mode is on the
  path.

Measured (event-loop CPU per chunk, four requests in flight against a real Postgres, the
bytes left out): 275 to 330 µs in pipeline mode on SQLAlchemy's connections, 150 to 165 µs
through a client-side cursor on this pool, 115 µs as it is now; with 20 ms between claim and
record, as a chunk's bytes take, 275 to 285 µs through the cursor against 190 to 205 now.

When a request ends without recording (an error, a client gone mid-chunk), its transaction
is rolled back before the connection goes back to the pool, and with it the claim. A crashed
API process never leaves a chunk claimed either: the lock dies with its transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import psycopg
from psycopg import AsyncConnection, pq
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
                    pq.TransactionStatus.INTRANS,
                    pq.TransactionStatus.INERROR,
                ):
                    # The claim goes with it. A connection that fails even that is broken and
                    # the pool discards it; the request's own error is the one to report. One
                    # with a statement still running (a request cancelled while it waited) the
                    # pool closes itself.
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
    """The two statements, sent through psycopg's libpq wrapper (``psycopg.pq``) itself.

    psycopg's cursors adapt parameters, keep state for prepared statements and result sets,
    and load rows through its adapters: several times the Python of the round trip itself,
    and on the chunk path that code runs with caches cold from the bytes streaming past
    (measured in process: 0.29 ms of event-loop CPU per chunk for the ledger). Here each
    statement is one simple query, its values quoted by libpq (``PQescapeLiteral``), its few
    columns read as text."""

    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._pgconn = connection.pgconn
        self._quote = pq.Escaping(self._pgconn).escape_literal

    async def claim(
        self, task_id: str, index: int, principal: Principal
    ) -> tuple[ChunkUpload, ChunkClaim]:
        """The upload, and chunk ``index`` claimed for this transaction unless it is stored;
        404 for an upload the caller may not see (another account's looks absent)."""
        key = _task_key(task_id)
        if key is None:
            raise _not_found(task_id)
        # claim_chunk_of_upload() takes the chunk's transaction-scoped advisory lock, then
        # checks the ledger with a snapshot taken after it (claim_upload_chunk, migration 0004).
        query = b"BEGIN; SELECT * FROM claim_chunk_of_upload(%s, %d, %d, %s, %s)" % (
            self._quote(key),
            index,
            chunk_lock_key(task_id, index),
            b"true" if principal.is_admin else b"false",
            self._quote(str(principal.account_id).encode()),
        )
        result = (await self._run(query))[-1]
        if result.ntuples == 0:
            raise _not_found(task_id)
        row = [result.get_value(0, column) for column in range(8)]
        upload = ChunkUpload(
            task_id=task_id,
            status=_text(row[0]),
            storage_key=_text(row[1]),
            multipart_upload_id=None if row[2] is None else _text(row[2]),
            file_size=int(_text(row[3])),
            chunk_size=int(_text(row[4])),
            chunks_count=int(_text(row[5])),
            pool_id=uuid.UUID(_text(row[6])),
        )
        return upload, ChunkClaim(_text(row[7]))

    async def record(self, task_id: str, index: int, size: int) -> LedgerTotals:
        """Records a durable chunk, bumps the upload's totals and commits (releasing the
        claim); call with the chunk claimed."""
        query = (
            b"SELECT chunks_uploaded, bytes_uploaded, extract(epoch FROM last_activity) "
            b"FROM record_upload_chunk(%s, %d, %d); COMMIT"
        ) % (self._quote(task_id.encode()), index, size)  # claim() checked the id
        try:
            result = (await self._run(query))[0]
        except psycopg.errors.ForeignKeyViolation as exc:  # removed meanwhile (a cleanup)
            raise _gone(task_id) from exc
        if result.ntuples == 0:
            raise _gone(task_id)
        chunks, uploaded, epoch = (_text(result.get_value(0, column)) for column in range(3))
        return LedgerTotals(int(chunks), int(uploaded), datetime.fromtimestamp(float(epoch), UTC))

    async def _run(self, query: bytes) -> list[pq.abc.PGresult]:
        """Sends ``query`` and returns its results, one per statement; raises the first
        statement's error as psycopg would."""
        try:
            results = await _round_trip(self._pgconn, query)
        except psycopg.OperationalError as exc:
            # The connection broke (a database restart meets a connection in steady use):
            # the pool replaces it, and the client may send the chunk again.
            raise TaskdriveError(
                ErrorCode.SERVICE_UNAVAILABLE, f"the database connection failed: {exc}"
            ) from exc
        for result in results:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                state = _text(result.error_field(pq.DiagnosticField.SQLSTATE) or b"")
                message = _text(result.error_message)
                raise psycopg.errors.lookup(state)(message) if state else psycopg.Error(message)
        return results


async def _round_trip(pgconn: pq.abc.PGconn, query: bytes) -> list[pq.abc.PGresult]:
    """One simple query on a non-blocking connection, waiting on the event loop for the
    socket; every result is read, so the connection is idle (or in its transaction) after."""
    loop = asyncio.get_running_loop()
    socket = pgconn.socket
    pgconn.send_query(query)
    while pgconn.flush():
        await _ready(loop.add_writer, loop.remove_writer, socket)
    results: list[pq.abc.PGresult] = []
    while True:
        while pgconn.is_busy():
            await _ready(loop.add_reader, loop.remove_reader, socket)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return results
        results.append(result)


async def _ready(
    watch: Callable[..., object], unwatch: Callable[[int], object], socket: int
) -> None:
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watch(socket, _resolve, ready)
    try:
        await ready
    finally:
        unwatch(socket)


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _task_key(task_id: str) -> bytes | None:
    """The task id as the database compares it; None for one no task can have (Postgres
    text holds neither NUL nor lone surrogates)."""
    try:
        key = task_id.encode()
    except UnicodeEncodeError:
        return None
    return None if b"\0" in key else key


def _text(value: bytes | None) -> str:
    return (value or b"").decode()


def _not_found(task_id: str) -> TaskdriveError:
    return TaskdriveError(
        ErrorCode.TASK_NOT_FOUND, f"upload task {task_id} not found", taskId=task_id
    )


def _gone(task_id: str) -> TaskdriveError:
    return TaskdriveError(ErrorCode.TASK_GONE, "the upload has ended", taskId=task_id)
