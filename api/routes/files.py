"""Files: download (with Range and ETag) and metadata."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from api.ranges import parse_range
from api.schemas.common import CloudFile
from taskdrive.auth import Principal
from taskdrive.db.models import File
from taskdrive.errors import ErrorCode, TaskdriveError
from taskdrive.pools import Pool

router = APIRouter(prefix="/api/files", tags=["files"])


async def _owned_file(session: SessionDep, file_id: uuid.UUID, principal: Principal) -> File:
    query = select(File).where(File.id == file_id, File.deleted_at.is_(None))
    if not principal.is_admin:
        query = query.where(File.account_id == principal.account_id)
    row = await session.scalar(query)
    if row is None:
        raise TaskdriveError(
            ErrorCode.FILE_NOT_FOUND, f"file {file_id} not found", fileId=str(file_id)
        )
    return row


@router.get("/{file_id}/info")
async def file_info(
    *, file_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> CloudFile:
    """The file's metadata."""
    return CloudFile.of(await _owned_file(session, file_id, principal))


@router.get(
    "/{file_id}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "A byte range"},
    },
)
async def download_file(
    *,
    file_id: uuid.UUID,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    """The file's bytes; ``Range: bytes=a-b`` answers 206."""
    row = await _owned_file(session, file_id, principal)
    await session.close()
    etag = f'"{row.hash}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.name)}",
    }
    if etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    span = parse_range(request.headers.get("range"), row.size)
    if span is not None and request.headers.get("if-range", etag) != etag:
        span = None  # the client's copy is of another version: send the whole file
    pool = services.pools.get(row.pool_id)
    start, end = span or (0, row.size)
    headers["Content-Length"] = str(end - start)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{row.size}"
    return StreamingResponse(
        _stream(pool, row.storage_key, start, end),
        status_code=206 if span is not None else 200,
        media_type=row.content_type,
        headers=headers,
    )


async def _stream(pool: Pool, key: str, start: int, end: int) -> AsyncIterator[bytes]:
    async for piece in pool.read(key, start, end):
        yield piece
