"""Async engine and session factory."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection as DriverConnection
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


def make_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        database_url(settings),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=True,
    )


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
