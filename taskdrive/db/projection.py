"""Applying a projection write: a sequence-guarded upsert of the task row, the task event and a
NOTIFY, in one transaction. A retried or late write never moves a task backwards."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskdrive.db.models import Task, TaskEvent
from taskdrive.projection import ProjectionWrite

NOTIFY_CHANNEL = "taskdrive_tasks"


async def apply_projection(session: AsyncSession, write: ProjectionWrite) -> bool:
    """Applies ``write`` in the session's transaction; returns False when a newer write won.

    The caller commits. The event and the notification go out only if the row changed.
    """
    header = write.header
    at = datetime.fromisoformat(write.occurred_at)
    previous = await session.scalar(
        select(Task.status).where(Task.task_id == header.task_id).with_for_update()
    )
    values: dict[str, Any] = {
        "status": write.status,
        "progress": write.progress,
        "status_message": write.status_message,
        "error_code": write.error_code,
        "error_message": write.error_message,
        "seq": write.seq,
        "updated_at": at,
        "last_activity": at,
    }
    if write.results is not None:
        values["results"] = write.results
    for column in ("retry_count", "max_retries", "last_error"):
        if getattr(write, column) is not None:
            values[column] = getattr(write, column)
    stmt = insert(Task).values(
        task_id=header.task_id,
        account_id=uuid.UUID(header.account_id),
        type=header.type,
        name=header.name,
        description=header.description,
        category=header.category,
        priority=header.priority,
        parameters=header.parameters,
        created_at=at,
        started_at=at if write.started else None,
        completed_at=at if write.finished else None,
        **values,
    )
    update: dict[str, Any] = {key: stmt.excluded[key] for key in values}
    if write.started:
        update["started_at"] = func.coalesce(Task.started_at, stmt.excluded.started_at)
    if write.finished:
        update["completed_at"] = stmt.excluded.completed_at
    upsert: Any = stmt.on_conflict_do_update(
        index_elements=[Task.task_id], set_=update, where=Task.seq < stmt.excluded.seq
    ).returning(literal_column("1"))
    if (await session.execute(upsert)).first() is None:
        return False
    session.add(
        TaskEvent(
            task_id=header.task_id,
            seq=write.seq,
            event_type=write.event_type,
            from_status=previous,
            to_status=write.status,
            reason=write.reason,
            actor=write.actor,
            data=write.data,
            occurred_at=at,
        )
    )
    await session.flush()
    await notify(session, write)
    return True


async def notify(session: AsyncSession, write: ProjectionWrite) -> None:
    header = write.header
    payload = {
        "type": write.event_type,
        "accountId": header.account_id,
        "data": {
            "taskId": header.task_id,
            "name": header.name,
            "type": header.type,
            "status": write.status,
            "progress": write.progress,
            "lastActivity": write.occurred_at,
            **({"results": write.results} if write.results else {}),
            **({"errorMessage": write.error_message} if write.error_message else {}),
            **write.data,
        },
    }
    # NOTIFY payloads are capped at 8000 bytes; listeners re-read the row when data is missing.
    body = json.dumps(payload, default=str)
    if len(body.encode()) > 7900:
        payload["data"] = {"taskId": header.task_id, "status": write.status, "truncated": True}
        body = json.dumps(payload)
    await session.execute(
        text("SELECT pg_notify(:channel, :body)"), {"channel": NOTIFY_CHANNEL, "body": body}
    )


async def apply_progress(
    session: AsyncSession, task_id: str, progress: float, message: str | None
) -> None:
    """Live progress reported by a running step, between the workflow's own writes.

    No sequence number: it changes only progress and message, and only of a task still in
    progress, so it can never move a task's status; the workflow's next write supersedes it.
    """
    row = (
        await session.execute(
            text(
                "UPDATE tasks SET progress = :progress,"
                " status_message = coalesce(:message, status_message),"
                " last_activity = clock_timestamp(), updated_at = clock_timestamp()"
                " WHERE task_id = :task_id AND status = 'InProgress'"
                " RETURNING account_id, name, type"
            ),
            {"task_id": task_id, "progress": progress, "message": message},
        )
    ).first()
    if row is None:
        return
    payload = {
        "type": "task.progress",
        "accountId": str(row[0]),
        "data": {
            "taskId": task_id,
            "name": row[1],
            "type": row[2],
            "status": "InProgress",
            "progress": progress,
            **({"statusMessage": message} if message else {}),
        },
    }
    await session.execute(
        text("SELECT pg_notify(:channel, :body)"),
        {"channel": NOTIFY_CHANNEL, "body": json.dumps(payload)},
    )
