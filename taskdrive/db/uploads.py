"""Queries over upload sessions and their chunk ledger. They take a session and never commit.

A chunk request's own claim and record are in :mod:`taskdrive.db.chunk_ledger`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskdrive.auth import Principal
from taskdrive.db.models import Task, Upload, UploadChunk
from taskdrive.errors import ErrorCode, TaskdriveError


def owned_by(principal: Principal) -> ColumnElement[bool]:
    """Admins see every account; another account's rows look like they do not exist."""
    if principal.is_admin:
        return and_(True)
    return Upload.account_id == principal.account_id


async def get_upload(
    session: AsyncSession, task_id: str, principal: Principal
) -> tuple[Upload, Task]:
    row = (
        await session.execute(
            select(Upload, Task)
            .join(Task, Task.task_id == Upload.task_id)
            .where(Upload.task_id == task_id, Task.deleted_at.is_(None), owned_by(principal))
        )
    ).first()
    if row is None:
        raise TaskdriveError(
            ErrorCode.TASK_NOT_FOUND, f"upload task {task_id} not found", taskId=task_id
        )
    return row[0], row[1]


async def stored_indices(session: AsyncSession, task_id: str) -> list[int]:
    rows = await session.scalars(
        select(UploadChunk.chunk_index)
        .where(UploadChunk.task_id == task_id)
        .order_by(UploadChunk.chunk_index)
    )
    return list(rows)


async def missing_indices(session: AsyncSession, upload: Upload) -> list[int]:
    if upload.chunks_uploaded >= upload.chunks_count:
        # The count moves with each ledger row, in its transaction, and a chunk has one row:
        # all are in, and the common case (complete after the last chunk) reads none of them.
        return []
    stored = set(await stored_indices(session, upload.task_id))
    return [i for i in range(upload.chunks_count) if i not in stored]


async def recent_speed(session: AsyncSession, task_id: str, window: timedelta) -> float:
    """Bytes per second over the chunks stored in the last ``window``."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(UploadChunk.size), 0), func.min(UploadChunk.stored_at)
            ).where(
                UploadChunk.task_id == task_id,
                UploadChunk.stored_at > func.clock_timestamp() - window,
            )
        )
    ).one()
    total, first = int(row[0]), row[1]
    if not total or first is None:
        return 0.0
    now = await session.scalar(select(func.clock_timestamp()))
    assert now is not None
    elapsed: float = max((now - first).total_seconds(), 1.0)
    return float(total) / elapsed


async def list_uploads(
    session: AsyncSession,
    principal: Principal,
    *,
    statuses: Sequence[str],
    order_by: Sequence[ColumnElement[object]],
    offset: int,
    limit: int,
) -> tuple[list[tuple[Upload, Task]], int]:
    where = [owned_by(principal), Task.deleted_at.is_(None)]
    if statuses:
        where.append(Task.status.in_(statuses))
    base = select(Upload, Task).join(Task, Task.task_id == Upload.task_id).where(*where)
    total = await session.scalar(select(func.count()).select_from(base.subquery()))
    rows = await session.execute(base.order_by(*order_by).offset(offset).limit(limit))
    return [(r[0], r[1]) for r in rows], int(total or 0)
