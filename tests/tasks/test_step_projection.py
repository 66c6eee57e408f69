"""A step's projection writes: a short task's row and audit trail, and a database that fails
the step's last transaction (a Postgres trigger, nothing mocked)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
from sqlalchemy import text

from taskdrive.settings import Settings
from tests.fixtures.app import database
from tests.tasking import audit_trail, create_task, wait_task

Account = tuple[uuid.UUID, dict[str, str]]


async def _transitions(
    api: httpx.AsyncClient, headers: dict[str, str], task_id: str
) -> list[tuple[str | None, str]]:
    return [(e["fromStatus"], e["toStatus"]) for e in await audit_trail(api, headers, task_id)]


async def test_a_short_task_records_every_transition_with_its_time(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    created = await create_task(api, headers, "NoOp", {})
    done = await wait_task(api, headers, created["taskId"], "Completed")

    assert await _transitions(api, headers, created["taskId"]) == [
        (None, "Pending"),
        ("Pending", "InProgress"),
        ("InProgress", "Completed"),
    ]
    started, completed = (datetime.fromisoformat(done[k]) for k in ("startedAt", "completedAt"))
    assert datetime.fromisoformat(created["createdAt"]) <= started <= completed


@contextmanager
def completions_refused_once(settings: Settings, task_name: str) -> Iterator[list[int]]:
    """Postgres refuses the first ``task.completed`` event of tasks named ``task_name``, and
    so the whole transaction writing it. Yields a list that holds, on exit, how many such
    writes reached the database."""
    tag = uuid.uuid4().hex[:12]
    sequence, function, trigger = (f"refuse_{kind}_{tag}" for kind in ("seq", "fn", "trg"))
    attempts: list[int] = []
    with database(settings) as conn:
        conn.execute(text(f"CREATE SEQUENCE {sequence}"))
        conn.execute(
            text(
                f"""
                CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF (SELECT name FROM tasks WHERE task_id = NEW.task_id) = '{task_name}'
                       AND nextval('{sequence}') = 1 THEN
                        RAISE EXCEPTION 'refused once, for the test';
                    END IF;
                    RETURN NEW;
                END $$
                """
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {trigger} BEFORE INSERT ON task_events FOR EACH ROW "
                f"WHEN (NEW.event_type = 'task.completed') EXECUTE FUNCTION {function}()"
            )
        )
    try:
        yield attempts
    finally:
        with database(settings) as conn:
            # A sequence never called has no value yet: is_called tells.
            row = conn.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
            attempts.append(row.last_value if row.is_called else 0)
            conn.execute(text(f"DROP TRIGGER {trigger} ON task_events"))
            conn.execute(text(f"DROP FUNCTION {function}()"))
            conn.execute(text(f"DROP SEQUENCE {sequence}"))


async def test_a_step_whose_last_projection_write_fails_still_completes_its_task(
    api: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    _, headers = account
    name = f"refused-{uuid.uuid4().hex[:8]}"
    with completions_refused_once(settings, name) as attempts:
        created = await create_task(api, headers, "NoOp", {}, name=name)
        done = await wait_task(api, headers, created["taskId"], "Completed")
    # The step's transaction (its start and its completion) was refused; the workflow then
    # wrote both itself.
    assert attempts == [2]
    assert done["startedAt"] is not None and done["completedAt"] is not None
    assert await _transitions(api, headers, created["taskId"]) == [
        (None, "Pending"),
        ("Pending", "InProgress"),
        ("InProgress", "Completed"),
    ]
