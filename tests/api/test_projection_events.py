"""The projection's audit trail and notifications: every transition recorded, in order, once."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import psycopg
from sqlalchemy import text

from taskdrive.db.engine import psycopg_dsn
from taskdrive.db.projection import NOTIFY_CHANNEL
from taskdrive.settings import Settings
from tests.fixtures.app import database
from tests.uploading import complete, create, random_bytes, send_chunks


def _events(settings: Settings, task_id: str) -> list[tuple[int, str, str | None, str]]:
    with database(settings) as conn:
        rows = conn.execute(
            text(
                "SELECT seq, event_type, from_status, to_status FROM task_events"
                " WHERE task_id = :t ORDER BY seq"
            ),
            {"t": task_id},
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_transitions_are_recorded_and_notified_in_order(
    api: httpx.AsyncClient, account: tuple[uuid.UUID, dict[str, str]], settings: Settings
) -> None:
    account_id, headers = account
    dsn = psycopg_dsn(settings)
    notes: list[dict[str, object]] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        upload = await create(api, headers, random_bytes(3000), chunk_size=1000)
        await send_chunks(api, headers, upload, [0, 1, 2])
        assert (await complete(api, headers, upload)).status_code == 200

        async def collect() -> None:
            async for note in listener.notifies():
                payload = json.loads(note.payload)
                if payload["data"]["taskId"] == upload.task_id:
                    notes.append(payload)
                    if payload["type"] == "task.completed":
                        return

        await asyncio.wait_for(collect(), 60)

    events = _events(settings, upload.task_id)
    assert [seq for seq, *_ in events] == sorted({seq for seq, *_ in events})
    kinds = [kind for _, kind, _, _ in events]
    assert kinds[0] == "task.created" and kinds[1] == "task.started"
    assert kinds[-1] == "task.completed"
    assert events[1][2:] == ("Pending", "InProgress")
    assert events[-1][3] == "Completed"
    assert [n["type"] for n in notes] == kinds
    assert all(n["accountId"] == str(account_id) for n in notes)
    completed = notes[-1]["data"]
    assert isinstance(completed, dict) and completed["results"]["fileName"] == "file.bin"
