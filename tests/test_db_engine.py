"""The engine's connection pool against a real Postgres whose backends are terminated under it,
as a database restart or a dropped TCP session would leave them."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from taskdrive.db.engine import make_engine, psycopg_dsn
from taskdrive.settings import Settings

BACKEND_PID = text("SELECT pg_backend_pid()")


async def _pooled_backend(engine: AsyncEngine) -> int:
    """Uses a connection and returns it to the pool; its server process id."""
    async with engine.connect() as connection:
        pid = await connection.scalar(BACKEND_PID)
    assert isinstance(pid, int)
    return pid


async def _terminate(settings: Settings, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(
        psycopg_dsn(settings), autocommit=True
    ) as admin:
        # With a timeout, it returns once the backend is gone, not when it is signalled.
        cursor = await admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        assert await cursor.fetchone() == (True,)


async def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced_if_dead(
    settings: Settings,
) -> None:
    engine = make_engine(settings, ping_after_idle=0.0)
    try:
        dead = await _pooled_backend(engine)
        await _terminate(settings, dead)
        assert await _pooled_backend(engine) != dead  # no error: the ping found it dead
    finally:
        await engine.dispose()


async def test_a_dead_connection_in_steady_use_fails_once_then_the_pool_recovers(
    settings: Settings,
) -> None:
    """The price of not pinging busy connections: the request that meets the dead one fails."""
    engine = make_engine(settings, ping_after_idle=3600.0)
    try:
        dead = await _pooled_backend(engine)
        await _terminate(settings, dead)
        with pytest.raises(DBAPIError):
            await _pooled_backend(engine)
        assert await _pooled_backend(engine) != dead
    finally:
        await engine.dispose()
