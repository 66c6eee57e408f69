"""The chunk ledger's claims and its own connection pool, against a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from taskdrive.auth import Principal
from taskdrive.db.chunk_ledger import ChunkClaim, ChunkLedger
from taskdrive.db.engine import psycopg_dsn
from taskdrive.errors import ErrorCode, TaskdriveError
from taskdrive.settings import Settings
from tests.uploading import poll_until


@pytest.fixture
def application_name() -> str:
    """This test's own, so that killing its connections touches no other test's."""
    return f"ledger-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def ledger(settings: Settings, application_name: str) -> AsyncIterator[ChunkLedger]:
    ledger = ChunkLedger(
        psycopg_dsn(settings), max_size=4, ping_after_idle=0.0, application_name=application_name
    )
    await ledger.open()
    try:
        yield ledger
    finally:
        await ledger.close()


@pytest.fixture
def owner() -> Principal:
    return Principal(account_id=uuid.uuid4())


@pytest.fixture
def upload(settings: Settings, owner: Principal) -> str:
    """An open upload of 4 chunks, straight in the tables (no API, no workflow)."""
    task_id = f"ledger-{uuid.uuid4().hex}"
    with psycopg.connect(psycopg_dsn(settings), autocommit=True) as db:
        db.execute(
            "INSERT INTO tasks (task_id, account_id, type, name, status, category) "
            "VALUES (%s, %s, 'FileUpload', 'f.bin', 'Running', 'uploads')",
            (task_id, owner.account_id),
        )
        db.execute(
            "INSERT INTO uploads (task_id, account_id, file_id, file_name, file_size, "
            "content_type, hash, chunk_size, chunks_count, pool_id, storage_key) "
            "VALUES (%s, %s, %s, 'f.bin', 40, 'application/octet-stream', %s, 10, 4, %s, %s)",
            (
                task_id,
                owner.account_id,
                uuid.uuid4(),
                "0" * 64,
                settings.default_pool_id,
                f"k/{task_id}",
            ),
        )
    return task_id


async def test_one_writer_per_chunk_and_a_stored_chunk_stays_stored(
    ledger: ChunkLedger, upload: str, owner: Principal
) -> None:
    async with ledger.transaction() as first:
        found, claim = await first.claim(upload, 0, owner)
        assert (found.chunks_count, found.chunk_size, claim) == (4, 10, ChunkClaim.CLAIMED)
        async with ledger.transaction() as second:
            assert (await second.claim(upload, 0, owner))[1] == ChunkClaim.BUSY
            assert (await second.claim(upload, 1, owner))[1] == ChunkClaim.CLAIMED
        totals = await first.record(upload, 0, 10)
        assert (totals.chunks_uploaded, totals.bytes_uploaded) == (1, 10)
    async with ledger.transaction() as third:
        assert (await third.claim(upload, 0, owner))[1] == ChunkClaim.STORED


async def test_a_request_that_ends_without_recording_gives_its_claim_back(
    ledger: ChunkLedger, upload: str, owner: Principal
) -> None:
    with pytest.raises(RuntimeError):
        async with ledger.transaction() as failing:
            assert (await failing.claim(upload, 2, owner))[1] == ChunkClaim.CLAIMED
            raise RuntimeError("the client went away mid-chunk")
    async with ledger.transaction() as retry:
        assert (await retry.claim(upload, 2, owner))[1] == ChunkClaim.CLAIMED
        totals = await retry.record(upload, 2, 10)
    assert (totals.chunks_uploaded, totals.bytes_uploaded) == (1, 10)


async def test_another_accounts_upload_is_not_found_and_an_admin_sees_it(
    ledger: ChunkLedger, upload: str
) -> None:
    async with ledger.transaction() as chunks:
        with pytest.raises(TaskdriveError) as caught:
            await chunks.claim(upload, 0, Principal(account_id=uuid.uuid4()))
        assert caught.value.code == ErrorCode.TASK_NOT_FOUND
        admin = Principal(account_id=uuid.uuid4(), is_admin=True)
        assert (await chunks.claim(upload, 0, admin))[1] == ChunkClaim.CLAIMED


async def test_connections_killed_while_idle_are_replaced_unseen(
    ledger: ChunkLedger, upload: str, owner: Principal, settings: Settings, application_name: str
) -> None:
    """As after a database restart: with ping_after_idle=0 every use pings first."""
    async with ledger.transaction() as chunks:
        await chunks.claim(upload, 3, owner)
    _terminate(settings, application_name)
    async with ledger.transaction() as chunks:
        assert (await chunks.claim(upload, 3, owner))[1] == ChunkClaim.CLAIMED


async def test_a_connection_killed_in_steady_use_fails_one_request_with_503(
    settings: Settings, upload: str, owner: Principal, application_name: str
) -> None:
    """Not pinged (used moments ago): the request that meets it is told to try again."""
    ledger = ChunkLedger(
        psycopg_dsn(settings), max_size=1, ping_after_idle=3600.0, application_name=application_name
    )
    await ledger.open()
    try:
        async with ledger.transaction() as chunks:
            await chunks.claim(upload, 3, owner)
        _terminate(settings, application_name)
        with pytest.raises(TaskdriveError) as caught:
            async with ledger.transaction() as chunks:
                await chunks.claim(upload, 3, owner)
        assert caught.value.code == ErrorCode.SERVICE_UNAVAILABLE
        async with ledger.transaction() as chunks:
            assert (await chunks.claim(upload, 3, owner))[1] == ChunkClaim.CLAIMED
    finally:
        await ledger.close()


@pytest.mark.parametrize("task_id", ["no\x00such", "x'); SELECT pg_sleep(1); --", "\udc80"])
async def test_a_task_id_no_upload_can_have_is_not_found(
    ledger: ChunkLedger, upload: str, owner: Principal, task_id: str
) -> None:
    async with ledger.transaction() as chunks:
        with pytest.raises(TaskdriveError) as caught:
            await chunks.claim(task_id, 0, owner)
        assert caught.value.code == ErrorCode.TASK_NOT_FOUND
        assert (await chunks.claim(upload, 0, owner))[1] == ChunkClaim.CLAIMED


async def test_a_claim_cancelled_while_it_waits_leaves_no_claim_and_no_busy_connection(
    settings: Settings, upload: str, owner: Principal, application_name: str
) -> None:
    """The statement is still running when its request goes: that connection is dropped."""
    ledger = ChunkLedger(psycopg_dsn(settings), max_size=1, application_name=application_name)
    await ledger.open()
    try:
        async with await psycopg.AsyncConnection.connect(psycopg_dsn(settings)) as blocker:
            await blocker.execute("LOCK TABLE uploads IN ACCESS EXCLUSIVE MODE")

            async def claim() -> None:
                async with ledger.transaction() as chunks:
                    await chunks.claim(upload, 1, owner)

            waiting = asyncio.create_task(claim())
            await poll_until(
                lambda: _lock_waits(blocker, application_name),
                lambda view: view["waiting"] > 0,
                deadline=30,
                what="the claim to wait on the table lock",
            )
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await blocker.rollback()
        async with ledger.transaction() as chunks:
            assert (await chunks.claim(upload, 1, owner))[1] == ChunkClaim.CLAIMED
    finally:
        await ledger.close()


async def _lock_waits(admin: psycopg.AsyncConnection[Any], application_name: str) -> dict[str, Any]:
    row = await (
        await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock'",
            (application_name,),
        )
    ).fetchone()
    return {"waiting": row[0] if row else 0}


def _terminate(settings: Settings, application_name: str) -> None:
    with psycopg.connect(psycopg_dsn(settings), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
