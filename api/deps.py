"""Typed dependencies: the app's shared services, the database session and the caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.events import EventHub
from api.frontier_hash import FrontierHasher
from api.progress_reports import ProgressReports
from taskdrive.auth import InvalidToken, Principal, TokenVerifier
from taskdrive.db.chunk_ledger import ChunkLedger
from taskdrive.errors import ErrorCode, TaskdriveError
from taskdrive.pools import PoolRegistry
from taskdrive.settings import Settings
from taskdrive.temporal import connect


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    ledger: ChunkLedger
    pools: PoolRegistry
    events: EventHub
    frontier: FrontierHasher
    progress: ProgressReports = field(init=False)
    tokens: TokenVerifier = field(init=False)
    _client: Client | None = None
    _client_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.tokens = TokenVerifier(self.settings)
        self.progress = ProgressReports(
            self.temporal, interval=self.settings.upload_progress_interval_seconds
        )

    async def temporal(self) -> Client:
        """Connects on first use, so the API starts (and reports health) while Temporal is down."""
        async with self._client_lock:
            if self._client is None:
                try:
                    self._client = await connect(self.settings)
                except Exception as exc:
                    raise TaskdriveError(
                        ErrorCode.SERVICE_UNAVAILABLE, f"Temporal is unreachable: {exc}"
                    ) from exc
            return self._client


# The dependencies are coroutines although they never await: FastAPI runs a plain ``def``
# dependency in a worker thread, and that hop cost every request milliseconds under load.
async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _session(
    services: Annotated[Services, Depends(_services)],
) -> AsyncIterator[AsyncSession]:
    async with services.sessions() as session:
        yield session


_bearer = HTTPBearer(auto_error=False)


async def _principal(
    services: Annotated[Services, Depends(_services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise TaskdriveError(ErrorCode.UNAUTHORIZED, "Authorization: Bearer <token> is required")
    try:
        return services.tokens.verify(credentials.credentials)
    except InvalidToken as exc:
        raise TaskdriveError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from exc


ServicesDep = Annotated[Services, Depends(_services)]
SessionDep = Annotated[AsyncSession, Depends(_session)]
CurrentPrincipal = Annotated[Principal, Depends(_principal)]
