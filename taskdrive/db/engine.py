"""Async engine and session factory."""

from __future__ import annotations

import time
from typing import Any

from psycopg import AsyncConnection as DriverConnection
from sqlalchemy import Engine, event, exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from taskdrive.settings import Settings


def database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise RuntimeError(
            "TASKDRIVE_DATABASE_URL is not set (`taskdrive up` sets it for the embedded Postgres)"
        )
    url = settings.database_url.get_secret_value()
    # Accept plain postgres URLs too; the driver is always psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def psycopg_dsn(settings: Settings) -> str:
    """The database URL as plain psycopg takes it (for LISTEN, outside SQLAlchemy)."""
    return database_url(settings).replace("postgresql+psycopg://", "postgresql://", 1)


# A pooled connection idle this long is pinged before it is used again: it may have outlived a
# database restart or a dropped TCP session. One in steady use is not: the ping is a round trip
# per checkout, and on the chunk path it was about 5% of each chunk's time (bench/upload.py).
# A restart between two uses closer than this fails the requests on those connections once,
# and invalidates the pool, as any disconnect does.
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(
    settings: Settings, *, ping_after_idle: float = PING_AFTER_IDLE_SECONDS
) -> AsyncEngine:
    engine = create_async_engine(
        database_url(settings),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    _ping_idle_connections(engine.sync_engine, ping_after_idle)
    return engine


def _ping_idle_connections(engine: Engine, after: float) -> None:
    """SQLAlchemy's pre-ping, for connections that sat idle ``after`` seconds or more."""
    idle_since = "taskdrive_idle_since"

    @event.listens_for(engine.pool, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[idle_since] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(idle_since)
        if since is None or time.monotonic() - since < after:
            return  # fresh, or in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            # As a failed pre-ping: this connection and every one pooled before now are
            # replaced, and the checkout tries again on a new one.
            raise exc.InvalidatePoolError() from err


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def driver_connection(connection: AsyncConnection | AsyncSession) -> DriverConnection[Any]:
    """The psycopg connection under a SQLAlchemy connection or session (in its transaction).

    For the hot paths that send their statements in psycopg's pipeline mode, several to a
    round trip; SQLAlchemy still owns the connection, its pooling and its transaction."""
    if isinstance(connection, AsyncSession):
        connection = await connection.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, DriverConnection), "the engine's driver is psycopg"
    return driver
