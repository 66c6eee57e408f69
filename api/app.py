"""The FastAPI app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import tasktypes  # noqa: F401  # importing it registers every task type
from api import errors
from api.deps import Services
from api.events import EventHub
from api.frontier_hash import FrontierHasher
from api.routes import events, files, health, tasks, upload_tasks, uploads
from taskdrive import heap
from taskdrive.db.chunk_ledger import ChunkLedger
from taskdrive.db.engine import make_engine, make_sessionmaker, psycopg_dsn
from taskdrive.pools import PoolRegistry
from taskdrive.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        sessions = make_sessionmaker(engine)
        services = Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            ledger=ChunkLedger(psycopg_dsn(settings), max_size=settings.database_pool_size),
            pools=PoolRegistry.from_settings(settings),
            events=EventHub(psycopg_dsn(settings)),
            frontier=FrontierHasher(sessions, max_held_bytes=settings.upload_hash_buffer_bytes),
        )
        app.state.services = services
        await services.ledger.open()
        heap.freeze_startup()
        try:
            yield
        finally:
            await services.progress.close()
            await services.frontier.close()
            await services.events.close()
            await services.pools.close()
            await services.ledger.close()
            await engine.dispose()

    app = FastAPI(
        title="taskdrive",
        summary="Durable tasks for file work: resumable uploads on Temporal",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (health, uploads, upload_tasks, files, tasks, events):
        app.include_router(module.router)
    return app
