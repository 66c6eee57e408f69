"""Wire models of the generic task API (seed 000's task JSON, camelCase)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from api.schemas.common import CamelModel
from taskdrive.db.models import Task, TaskEvent, TaskLog
from taskdrive.statuses import TaskStatus


class CreateTaskRequest(CamelModel):
    type: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=500)
    description: str | None = Field(default=None, max_length=4000)
    priority: int | None = Field(default=None, ge=0, le=100)
    category: str | None = Field(default=None, max_length=64)
    max_retries: int | None = Field(default=None, ge=0, le=100)
    parameters: dict[str, Any] = Field(default_factory=dict)


class TaskOut(CamelModel):
    task_id: str
    name: str
    description: str | None
    type: str
    status: TaskStatus
    progress: float
    status_message: str | None
    parameters: dict[str, Any]
    results: dict[str, Any]
    error_code: str | None
    error_message: str | None
    last_error: str | None
    priority: int
    category: str
    retry_count: int
    max_retries: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    last_activity: datetime
    estimated_duration_seconds: float | None

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls(
            task_id=task.task_id,
            name=task.name,
            description=task.description,
            type=task.type,
            status=TaskStatus(task.status),
            progress=task.progress,
            status_message=task.status_message,
            parameters=task.parameters,
            results=task.results,
            error_code=task.error_code,
            error_message=task.error_message,
            last_error=task.last_error,
            priority=task.priority,
            category=task.category,
            retry_count=task.retry_count,
            max_retries=task.max_retries,
            created_at=task.created_at,
            started_at=task.started_at,
            completed_at=task.completed_at,
            last_activity=task.last_activity,
            estimated_duration_seconds=_estimate(task),
        )


def _estimate(task: Task) -> float | None:
    """Whole duration: measured once finished, extrapolated from progress while running."""
    if task.started_at is None:
        return None
    if TaskStatus(task.status).is_terminal and task.completed_at is not None:
        return round((task.completed_at - task.started_at).total_seconds(), 1)
    if task.progress <= 0:
        return None
    elapsed = (datetime.now(UTC) - task.started_at).total_seconds()
    return round(elapsed * 100.0 / task.progress, 1)


class TaskLogOut(CamelModel):
    id: int
    level: str
    message: str
    source: str
    attempt: int
    logged_at: datetime

    @classmethod
    def of(cls, row: TaskLog) -> TaskLogOut:
        return cls(
            id=row.id,
            level=row.level,
            message=row.message,
            source=row.source,
            attempt=row.attempt,
            logged_at=row.logged_at,
        )


class TaskEventOut(CamelModel):
    seq: int
    event_type: str
    from_status: str | None
    to_status: str
    reason: str | None
    actor: str | None
    occurred_at: datetime

    @classmethod
    def of(cls, row: TaskEvent) -> TaskEventOut:
        return cls(
            seq=row.seq,
            event_type=row.event_type,
            from_status=row.from_status,
            to_status=row.to_status,
            reason=row.reason,
            actor=row.actor,
            occurred_at=row.occurred_at,
        )


class TaskStats(CamelModel):
    total_tasks: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    by_category: dict[str, int]
    average_duration_seconds: float | None
    success_rate: float | None
    """Completed / (Completed + Failed), in percent."""


class TaskTypeOut(CamelModel):
    name: str
    category: str
    default_priority: int
    description: str
    max_retries: int
    creatable: bool
    parameters_schema: dict[str, Any] | None


class CleanupTasksResult(CamelModel):
    removed_tasks: int


class TaskSortBy(StrEnum):
    NAME = "name"
    TYPE = "type"
    STATUS = "status"
    PRIORITY = "priority"
    PROGRESS = "progress"
    CREATED_AT = "createdAt"
    UPDATED_AT = "updatedAt"
    LAST_ACTIVITY = "lastActivity"
