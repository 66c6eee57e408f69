"""The generic task API (seed 000's Generic Task System): every registered type, one surface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, func, select, update

from api import task_runs
from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from api.schemas.tasks import (
    CleanupTasksResult,
    CreateTaskRequest,
    TaskEventOut,
    TaskLogOut,
    TaskOut,
    TaskSortBy,
    TaskStats,
    TaskTypeOut,
)
from api.temporal_calls import signal
from taskdrive import registry
from taskdrive.db import tasks as queries
from taskdrive.db.models import Task, TaskEvent, TaskLog
from taskdrive.errors import ErrorCode, TaskdriveError
from taskdrive.statuses import TERMINAL_STATUSES, TaskStatus
from taskdrive.tasks import SIGNAL_CANCEL, SIGNAL_PAUSE, SIGNAL_RESUME, LifecycleSignal

router = APIRouter(tags=["tasks"])

_SORT: dict[TaskSortBy, ColumnElement[Any]] = {
    TaskSortBy.NAME: Task.name,  # type: ignore[dict-item]
    TaskSortBy.TYPE: Task.type,  # type: ignore[dict-item]
    TaskSortBy.STATUS: Task.status,  # type: ignore[dict-item]
    TaskSortBy.PRIORITY: Task.priority,  # type: ignore[dict-item]
    TaskSortBy.PROGRESS: Task.progress,  # type: ignore[dict-item]
    TaskSortBy.CREATED_AT: Task.created_at,  # type: ignore[dict-item]
    TaskSortBy.UPDATED_AT: Task.updated_at,  # type: ignore[dict-item]
    TaskSortBy.LAST_ACTIVITY: Task.last_activity,  # type: ignore[dict-item]
}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def _created(task: Task, created: bool) -> JSONResponse:
    body = TaskOut.of(task).model_dump(mode="json", by_alias=True)
    return JSONResponse(
        body, status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK
    )


@router.post(
    "/api/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses={200: {"model": TaskOut, "description": "The task this Idempotency-Key made"}},
)
async def create_task(
    *,
    body: CreateTaskRequest,
    principal: CurrentPrincipal,
    services: ServicesDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create a task of a registered type; the same ``Idempotency-Key`` gives the same task."""
    task, created = await task_runs.create_task(services, session, principal, body, idempotency_key)
    return _created(task, created)


@router.get("/api/tasks")
async def list_tasks(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    type: Annotated[list[str] | None, Query()] = None,
    status: Annotated[list[TaskStatus] | None, Query()] = None,
    category: Annotated[list[str] | None, Query()] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    sort_by: Annotated[TaskSortBy, Query(alias="sortBy")] = TaskSortBy.CREATED_AT,
    sort_descending: Annotated[bool, Query(alias="sortDescending")] = True,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[TaskOut]:
    """The caller's tasks (every account's for an admin); the total is in ``X-Total``."""
    column = _SORT[sort_by]
    order = [column.desc() if sort_descending else column.asc(), Task.task_id.asc()]
    where = queries.TaskFilter(
        types=type or [], statuses=status or [], categories=category or [], search=search
    )
    rows, total = await queries.list_tasks(
        session, principal, where, order_by=order, offset=offset, limit=limit
    )
    response.headers["X-Total"] = str(total)
    return [TaskOut.of(task) for task in rows]


@router.get("/api/tasks/recent")
async def recent_tasks(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[TaskOut]:
    """The most recently active tasks."""
    rows, _ = await queries.list_tasks(
        session,
        principal,
        queries.TaskFilter(),
        order_by=[Task.last_activity.desc(), Task.task_id.asc()],
        offset=0,
        limit=limit,
    )
    return [TaskOut.of(task) for task in rows]


@router.get("/api/tasks/stats")
async def task_stats(*, principal: CurrentPrincipal, session: SessionDep) -> TaskStats:
    """Counts by status, type and category; average duration and success rate."""
    live = select(Task).where(queries.owned_by(principal), Task.deleted_at.is_(None)).subquery()

    async def counts(column: ColumnElement[Any]) -> dict[str, int]:
        rows = await session.execute(select(column, func.count()).group_by(column))
        return {str(key): int(n) for key, n in rows}

    by_status = await counts(live.c.status)
    by_type = await counts(live.c.type)
    by_category = await counts(live.c.category)
    duration = await session.scalar(
        select(func.avg(func.extract("epoch", live.c.completed_at - live.c.started_at))).where(
            live.c.status == TaskStatus.COMPLETED, live.c.started_at.is_not(None)
        )
    )
    completed = by_status.get(TaskStatus.COMPLETED, 0)
    failed = by_status.get(TaskStatus.FAILED, 0)
    return TaskStats(
        total_tasks=sum(by_status.values()),
        by_status={str(s): by_status.get(s, 0) for s in TaskStatus},
        by_type=by_type,
        by_category=by_category,
        average_duration_seconds=round(float(duration), 2) if duration is not None else None,
        success_rate=round(100.0 * completed / (completed + failed), 2)
        if completed + failed
        else None,
    )


@router.delete("/api/tasks/cleanup")
async def cleanup_tasks(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    older_than_days: Annotated[float, Query(alias="olderThanDays", ge=0)] = 30,
) -> CleanupTasksResult:
    """Soft-delete the caller's finished tasks that ended more than ``olderThanDays`` ago."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    result = await session.execute(
        update(Task)
        .where(
            queries.owned_by(principal),
            Task.deleted_at.is_(None),
            Task.status.in_(TERMINAL_STATUSES),
            func.coalesce(Task.completed_at, Task.updated_at) <= cutoff,
        )
        .values(deleted_at=datetime.now(UTC))
    )
    await session.commit()
    return CleanupTasksResult(removed_tasks=result.rowcount)  # type: ignore[attr-defined]


@router.get("/api/tasks/{task_id}")
async def get_task(*, task_id: str, principal: CurrentPrincipal, session: SessionDep) -> TaskOut:
    return TaskOut.of(await queries.get_task(session, task_id, principal))


@router.get("/api/tasks/{task_id}/logs")
async def task_logs(
    *,
    task_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TaskLogOut]:
    """What the task's activities logged, oldest first; the total is in ``X-Total``."""
    await queries.get_task(session, task_id, principal)
    where = TaskLog.task_id == task_id
    total = await session.scalar(select(func.count()).select_from(TaskLog).where(where))
    rows = await session.scalars(
        select(TaskLog).where(where).order_by(TaskLog.id).offset(offset).limit(limit)
    )
    response.headers["X-Total"] = str(total or 0)
    return [TaskLogOut.of(row) for row in rows]


@router.get("/api/tasks/{task_id}/events")
async def task_events(
    *, task_id: str, principal: CurrentPrincipal, session: SessionDep
) -> list[TaskEventOut]:
    """The audit trail: every transition with when, why and by whom."""
    await queries.get_task(session, task_id, principal)
    rows = await session.scalars(
        select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.seq)
    )
    return [TaskEventOut.of(row) for row in rows]


def _not_now(task: Task, message: str) -> TaskdriveError:
    """409 with the current status: the action does not fit where the task is."""
    return TaskdriveError(
        ErrorCode.INVALID_TASK_STATE, message, taskId=task.task_id, status=task.status
    )


async def _lifecycle(
    services: ServicesDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    task_id: str,
    *,
    allowed: frozenset[TaskStatus],
    name: str,
    verb: str,
) -> TaskOut:
    task = await queries.get_task(session, task_id, principal)
    current = TaskStatus(task.status)
    if current not in allowed:
        raise _not_now(task, f"a {current} task cannot be {verb}")
    await session.close()
    asked = LifecycleSignal(reason=f"{verb} through the API", by=str(principal.account_id))
    await services.progress.flush(task_id)
    await signal(await services.temporal(), task_id, name, asked, required=True)
    return TaskOut.of(task)


_RUNNING = frozenset({TaskStatus.PENDING, TaskStatus.IN_PROGRESS})


@router.post("/api/tasks/{task_id}/pause", status_code=status.HTTP_202_ACCEPTED)
async def pause_task(
    *, task_id: str, principal: CurrentPrincipal, services: ServicesDep, session: SessionDep
) -> TaskOut:
    """Pause at the next checkpoint; the task shows Paused once it got there."""
    return await _lifecycle(
        services, session, principal, task_id, allowed=_RUNNING, name=SIGNAL_PAUSE, verb="paused"
    )


@router.post("/api/tasks/{task_id}/resume", status_code=status.HTTP_202_ACCEPTED)
async def resume_task(
    *, task_id: str, principal: CurrentPrincipal, services: ServicesDep, session: SessionDep
) -> TaskOut:
    """Continue a paused task from its checkpoint."""
    return await _lifecycle(
        services,
        session,
        principal,
        task_id,
        allowed=frozenset({TaskStatus.PAUSED}),
        name=SIGNAL_RESUME,
        verb="resumed",
    )


@router.post("/api/tasks/{task_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_task(
    *, task_id: str, principal: CurrentPrincipal, services: ServicesDep, session: SessionDep
) -> TaskOut:
    """Cancel; the running step stops at its next checkpoint and partial output is removed."""
    return await _lifecycle(
        services,
        session,
        principal,
        task_id,
        allowed=_RUNNING | {TaskStatus.PAUSED},
        name=SIGNAL_CANCEL,
        verb="cancelled",
    )


@router.post("/api/tasks/{task_id}/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_task(
    *, task_id: str, principal: CurrentPrincipal, services: ServicesDep, session: SessionDep
) -> TaskOut:
    """Run a Failed or Cancelled task again, as the same task."""
    task = await queries.get_task(session, task_id, principal, for_update=True)
    current = TaskStatus(task.status)
    task_type = registry.get(task.type)
    if current not in (TaskStatus.FAILED, TaskStatus.CANCELLED) or not (
        task_type and task_type.creatable
    ):
        raise _not_now(task, f"a {current} {task.type} task cannot be retried")
    await task_runs.retry_task(services, session, task, by=str(principal.account_id))
    return TaskOut.of(await queries.get_task(session, task_id, principal))


@router.delete("/api/tasks/{task_id}")
async def delete_task(*, task_id: str, principal: CurrentPrincipal, session: SessionDep) -> TaskOut:
    """Soft delete a finished task; a task still running answers 409 (cancel it first)."""
    task = await queries.get_task(session, task_id, principal, for_update=True)
    current = TaskStatus(task.status)
    if not current.is_terminal:
        raise _not_now(task, f"a {current} task cannot be deleted; cancel it first")
    task.deleted_at = datetime.now(UTC)
    view = TaskOut.of(task)
    await session.commit()
    return view


@router.get("/api/task-types")
async def task_types(*, principal: CurrentPrincipal) -> list[TaskTypeOut]:
    """Every registered type, with its parameters' JSON schema."""
    del principal  # any signed-in caller
    return [
        TaskTypeOut(
            name=t.name,
            category=t.category,
            default_priority=t.default_priority,
            description=t.description,
            max_retries=t.retry.max_retries,
            creatable=t.creatable,
            parameters_schema=t.params.model_json_schema(by_alias=True) if t.params else None,
        )
        for t in sorted(registry.TASK_TYPES.values(), key=lambda t: t.name)
    ]
