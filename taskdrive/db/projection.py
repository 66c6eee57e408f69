"""Applying a projection write: a sequence-guarded upsert of the task row, the task event and a
NOTIFY, in one transaction. A retried or late write never moves a task backwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection as DriverConnection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from taskdrive.db.engine import driver_connection
from taskdrive.projection import ProjectionWrite

NOTIFY_CHANNEL = "taskdrive_tasks"


# The row's upsert, the event and the NOTIFY in one statement (no ORM): the event is inserted
# only from the upsert's row, and the NOTIFY only from the event's, so a write that lost to a
# newer one leaves no trace. Optional fields left NULL keep the row's. The event's from-status
# is the row's before this statement, read after ``_LOCK`` (a statement of its own, so this
# one's snapshot postdates the lock and no concurrent write slips between).
_LOCK = "SELECT 1 FROM tasks WHERE task_id = %(task_id)s FOR UPDATE"
_APPLY = """
    WITH upserted AS (
        INSERT INTO tasks (
            task_id, account_id, type, name, description, category, priority, parameters,
            status, progress, status_message, error_code, error_message, seq, results,
            retry_count, max_retries, last_error, request_digest, run_input,
            created_at, updated_at, last_activity, started_at, completed_at
        ) VALUES (
            %(task_id)s, %(account_id)s, %(type)s, %(name)s, %(description)s, %(category)s,
            %(priority)s, %(parameters)s::jsonb,
            %(status)s, %(progress)s, %(status_message)s, %(error_code)s, %(error_message)s,
            %(seq)s, COALESCE(%(results)s::jsonb, '{}'::jsonb),
            COALESCE(%(retry_count)s, 0), COALESCE(%(max_retries)s, 0), %(last_error)s,
            %(request_digest)s, %(run_input)s::jsonb, %(at)s, %(at)s, %(at)s,
            CASE WHEN %(started)s THEN %(at)s END, CASE WHEN %(finished)s THEN %(at)s END
        )
        ON CONFLICT (task_id) DO UPDATE SET
            status = excluded.status,
            progress = excluded.progress,
            status_message = excluded.status_message,
            error_code = excluded.error_code,
            error_message = excluded.error_message,
            seq = excluded.seq,
            updated_at = excluded.updated_at,
            last_activity = excluded.last_activity,
            results = COALESCE(%(results)s::jsonb, tasks.results),
            retry_count = COALESCE(%(retry_count)s, tasks.retry_count),
            max_retries = COALESCE(%(max_retries)s, tasks.max_retries),
            last_error = COALESCE(%(last_error)s, tasks.last_error),
            run_input = COALESCE(%(run_input)s::jsonb, tasks.run_input),
            started_at = CASE WHEN %(started)s
                THEN COALESCE(tasks.started_at, excluded.started_at) ELSE tasks.started_at END,
            completed_at = CASE WHEN %(finished)s
                THEN excluded.completed_at ELSE tasks.completed_at END
        WHERE tasks.seq < excluded.seq
        RETURNING 1
    ), event AS (
        INSERT INTO task_events (
            task_id, seq, event_type, from_status, to_status, reason, actor, data, occurred_at
        )
        SELECT %(task_id)s, %(seq)s, %(event_type)s,
            (SELECT status FROM tasks WHERE task_id = %(task_id)s),
            %(status)s, %(reason)s, %(actor)s, %(data)s::jsonb, %(at)s
        FROM upserted
        RETURNING 1
    )
    SELECT pg_notify(%(channel)s, %(body)s) FROM event
"""


async def apply_projection(
    session: AsyncSession,
    write: ProjectionWrite,
    *,
    request_digest: str | None = None,
    run_input: dict[str, Any] | None = None,
) -> bool:
    """Applies ``write`` in the session's transaction; returns False when a newer write won.

    ``request_digest`` goes into a row this write creates (an idempotent create's request),
    ``run_input`` into the row as the input of the run the caller starts.
    The caller commits. The event and the notification go out only if the row changed. The
    lock and the write go in one round trip (psycopg's pipeline mode).
    """
    connection = await driver_connection(session)
    params = _params(write, request_digest, run_input)
    return await _pipelined(connection, [params], commit=False)


async def apply_writes(engine: AsyncEngine, writes: Sequence[ProjectionWrite]) -> bool:
    """Applies ``writes`` in order and commits, on a pooled connection of its own; False when
    the last lost to a newer write.

    The workers' path: every task makes a few of these, and the worker's CPU per task is what
    bounds tasks per second. So plain SQL on the psycopg connection in pipeline mode, BEGIN
    and COMMIT included: one round trip, no ORM session.
    """
    if not writes:
        return False
    async with engine.connect() as pooled:
        connection = await driver_connection(pooled)
        return await _pipelined(connection, [_params(w) for w in writes], commit=True)


async def _pipelined(
    connection: DriverConnection[Any], writes: list[dict[str, Any]], *, commit: bool
) -> bool:
    """Each write's lock and upsert, in order, and COMMIT when asked, in one round trip
    (psycopg's pipeline mode); whether the last write applied."""
    locked: set[str] = set()
    async with connection.pipeline(), connection.cursor() as cursor:
        for params in writes:
            # A create (seq 0) finds no row to lock, nor a write to race; a row locked by an
            # earlier write here stays locked until the commit.
            if params["seq"] > 0 and params["task_id"] not in locked:
                await cursor.execute(_LOCK, params)
                locked.add(params["task_id"])
            await cursor.execute(_APPLY, params)
        if commit:
            await connection.commit()
        applied = await cursor.fetchone()
    return applied is not None


def _params(
    write: ProjectionWrite,
    request_digest: str | None = None,
    run_input: dict[str, Any] | None = None,
) -> dict[str, Any]:
    header = write.header
    return {
        "task_id": header.task_id,
        "account_id": uuid.UUID(header.account_id),
        "type": header.type,
        "name": header.name,
        "description": header.description,
        "category": header.category,
        "priority": header.priority,
        "parameters": json.dumps(header.parameters),
        "status": write.status,
        "progress": write.progress,
        "status_message": write.status_message,
        "error_code": write.error_code,
        "error_message": write.error_message,
        "seq": write.seq,
        "results": json.dumps(write.results) if write.results is not None else None,
        "retry_count": write.retry_count,
        "max_retries": write.max_retries,
        "last_error": write.last_error,
        "request_digest": request_digest,
        "run_input": json.dumps(run_input) if run_input is not None else None,
        "at": datetime.fromisoformat(write.occurred_at),
        "started": write.started,
        "finished": write.finished,
        "event_type": write.event_type,
        "reason": write.reason,
        "actor": write.actor,
        "data": json.dumps(write.data),
        "channel": NOTIFY_CHANNEL,
        "body": notification(write),
    }


def notification(write: ProjectionWrite) -> str:
    """The NOTIFY payload of a write (listeners re-read the row when data is truncated)."""
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
    # NOTIFY payloads are capped at 8000 bytes.
    body = json.dumps(payload, default=str)
    if len(body.encode()) > 7900:
        payload["data"] = {"taskId": header.task_id, "status": write.status, "truncated": True}
        body = json.dumps(payload)
    return body


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
