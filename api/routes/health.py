"""Health of the API and everything it depends on; open to all (no token)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ServicesDep
from taskdrive.pools import Pool

router = APIRouter(tags=["health"])
CHECK_SECONDS = 5.0


async def _check(check: Awaitable[object]) -> dict[str, str]:
    try:
        await asyncio.wait_for(check, CHECK_SECONDS)
        return {"status": "ok"}
    except Exception as exc:
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}


async def _database(services: ServicesDep) -> None:
    async with services.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _temporal(services: ServicesDep) -> None:
    client = await services.temporal()
    if not await client.service_client.check_health():
        raise RuntimeError("Temporal reports itself unhealthy")


async def _pool(pool: Pool) -> dict[str, str]:
    return {"id": str(pool.id), "name": pool.name, "kind": pool.kind, **await _check(pool.check())}


@router.get("/health")
async def health(*, services: ServicesDep) -> JSONResponse:
    """200 when the database, Temporal and every pool answer; 503 otherwise, with the report."""
    database, temporal, *pools = await asyncio.gather(
        _check(_database(services)),
        _check(_temporal(services)),
        *(_pool(pool) for pool in services.pools.values()),
    )
    healthy = all(part["status"] == "ok" for part in (database, temporal, *pools))
    body = {
        "status": "ok" if healthy else "degraded",
        "api": {"status": "ok"},
        "database": database,
        "temporal": temporal,
        "pools": pools,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)
