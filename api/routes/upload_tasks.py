"""Reading upload tasks: listing, progress, resume, details, stats, cleanup (seed 000)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import ColumnElement, case, func, select, update

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from api.schemas.uploads import (
    CleanupResult,
    PoolInfo,
    ResumeInfo,
    SortBy,
    UploadProgressResponse,
    UploadStats,
    UploadTask,
    UploadTaskDetails,
)
from taskdrive.db import uploads as ledger
from taskdrive.db.models import Task, Upload
from taskdrive.statuses import TaskStatus

router = APIRouter(prefix="/api/files/upload", tags=["upload tasks"])

_SORT_COLUMNS: dict[SortBy, ColumnElement[object]] = {
    SortBy.FILENAME: Upload.file_name,  # type: ignore[dict-item]
    SortBy.FILESIZE: Upload.file_size,  # type: ignore[dict-item]
    SortBy.CREATED_AT: Upload.created_at,  # type: ignore[dict-item]
    SortBy.UPDATED_AT: func.greatest(Task.updated_at, Upload.last_activity),
    SortBy.LAST_ACTIVITY: func.greatest(Task.last_activity, Upload.last_activity),
}
CLEANABLE = (TaskStatus.FAILED, TaskStatus.EXPIRED, TaskStatus.CANCELLED)
SPEED_WINDOW = timedelta(seconds=30)


@router.get("/tasks")
async def list_upload_tasks(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    status: Annotated[list[TaskStatus] | None, Query()] = None,
    sort_by: Annotated[SortBy, Query(alias="sortBy")] = SortBy.LAST_ACTIVITY,
    sort_descending: Annotated[bool, Query(alias="sortDescending")] = True,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[UploadTask]:
    """The caller's upload tasks; the total matching count is in ``X-Total``."""
    column = _SORT_COLUMNS[sort_by]
    order: list[Any] = [column.desc() if sort_descending else column.asc(), Upload.task_id.asc()]
    rows, total = await ledger.list_uploads(
        session, principal, statuses=status or [], order_by=order, offset=offset, limit=limit
    )
    response.headers["X-Total"] = str(total)
    return [UploadTask.of(u, t) for u, t in rows]


@router.get("/tasks/recent")
async def recent_upload_tasks(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[UploadTask]:
    """The most recently active upload tasks."""
    column = _SORT_COLUMNS[SortBy.LAST_ACTIVITY]
    rows, _ = await ledger.list_uploads(
        session, principal, statuses=[], order_by=[column.desc()], offset=0, limit=limit
    )
    return [UploadTask.of(u, t) for u, t in rows]


@router.get("/progress/{task_id}")
async def upload_progress(
    *, task_id: str, principal: CurrentPrincipal, session: SessionDep
) -> UploadProgressResponse:
    """Current progress of one upload."""
    view = UploadTask.of(*await ledger.get_upload(session, task_id, principal))
    return UploadProgressResponse.model_validate(
        view.model_dump(include=set(UploadProgressResponse.model_fields))
    )


@router.get("/resume/{task_id}")
async def resume_info(
    *, task_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ResumeInfo:
    """What a client needs to resume: the task and the chunks already stored."""
    upload, task = await ledger.get_upload(session, task_id, principal)
    stored = await ledger.stored_indices(session, task_id)
    return ResumeInfo(**UploadTask.of(upload, task).model_dump(), uploaded_chunks=stored)


@router.get("/tasks/{task_id}/details")
async def upload_details(
    *, task_id: str, principal: CurrentPrincipal, services: ServicesDep, session: SessionDep
) -> UploadTaskDetails:
    """The task with its pool, current speed and estimated time remaining."""
    upload, task = await ledger.get_upload(session, task_id, principal)
    view = UploadTask.of(upload, task)
    speed = 0.0
    remaining: float | None = None
    if not TaskStatus(task.status).is_terminal:
        speed = await ledger.recent_speed(session, task_id, SPEED_WINDOW)
        left = upload.file_size - upload.bytes_uploaded
        remaining = 0.0 if left == 0 else (left / speed if speed > 0 else None)
    pool = services.pools.get(upload.pool_id)
    return UploadTaskDetails(
        **view.model_dump(),
        pool=PoolInfo(id=pool.id, name=pool.name, kind=pool.kind),
        current_speed_bytes_per_second=round(speed, 1),
        estimated_time_remaining_seconds=round(remaining, 1) if remaining is not None else None,
    )


@router.get("/stats")
async def upload_stats(*, principal: CurrentPrincipal, session: SessionDep) -> UploadStats:
    """Counts by status, bytes stored and average progress of the caller's uploads."""

    def count(status: TaskStatus) -> ColumnElement[int]:
        return func.count(case((Task.status == status, 1)))

    progress = case(
        (Task.status == TaskStatus.COMPLETED, 100.0),
        else_=100.0 * Upload.bytes_uploaded / func.nullif(Upload.file_size, 0),
    )
    row = (
        await session.execute(
            select(
                func.count(),
                count(TaskStatus.IN_PROGRESS) + count(TaskStatus.PENDING),
                count(TaskStatus.COMPLETED),
                count(TaskStatus.FAILED),
                count(TaskStatus.EXPIRED),
                count(TaskStatus.CANCELLED),
                count(TaskStatus.PAUSED),
                func.coalesce(func.sum(Upload.bytes_uploaded), 0),
                func.coalesce(func.avg(progress), 0.0),
            )
            .select_from(Upload)
            .join(Task, Task.task_id == Upload.task_id)
            .where(ledger.owned_by(principal), Task.deleted_at.is_(None))
        )
    ).one()
    recent, _ = await ledger.list_uploads(
        session,
        principal,
        statuses=[],
        order_by=[_SORT_COLUMNS[SortBy.LAST_ACTIVITY].desc()],
        offset=0,
        limit=5,
    )
    return UploadStats(
        total_tasks=row[0],
        in_progress_tasks=row[1],
        completed_tasks=row[2],
        failed_tasks=row[3],
        expired_tasks=row[4],
        cancelled_tasks=row[5],
        paused_tasks=row[6],
        total_uploaded_bytes=int(row[7]),
        average_progress=round(float(row[8]), 2),
        recent_activity=[UploadTask.of(u, t) for u, t in recent],
    )


@router.delete("/tasks/cleanup")
async def cleanup_upload_tasks(
    *, principal: CurrentPrincipal, session: SessionDep
) -> CleanupResult:
    """Hide the caller's failed, expired and cancelled uploads (their staging is already gone)."""
    owned = select(Upload.task_id).where(ledger.owned_by(principal))
    result = await session.execute(
        update(Task)
        .where(
            Task.task_id.in_(owned),
            Task.status.in_(CLEANABLE),
            Task.deleted_at.is_(None),
        )
        .values(deleted_at=datetime.now(UTC))
    )
    await session.commit()
    return CleanupResult(removed_tasks=result.rowcount)  # type: ignore[attr-defined]
