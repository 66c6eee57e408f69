"""A password given to FileEncrypt, FileDecrypt or an upload's encryptPassword appears nowhere
it could be read later: not in Temporal's histories, not in any database row, not in any log."""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client

from taskdrive.settings import Settings
from tests.fixtures.app import database
from tests.tasking import closed_history, create_task, logs, upload_file, wait_task
from tests.uploading import complete, create, random_bytes, send_chunks

Account = tuple[uuid.UUID, dict[str, str]]


def database_text(settings: Settings) -> str:
    """Every row of every table of the schema, each as Postgres prints a whole row."""
    with database(settings) as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
        return "\n".join(
            conn.execute(
                text(f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t")
            ).scalar_one()
            for table in list(tables)
        )


async def history_bytes(client: Client, workflow_id: str) -> bytes:
    """The workflow's whole history, serialized: payloads as their raw (JSON) bytes, and as
    the JSON export shows them (base64) in case something there is shown decoded."""
    history = await closed_history(client, workflow_id)
    raw = b"".join(event.SerializeToString() for event in history.events)
    return raw + history.to_json().encode()


async def api_views(api: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> str:
    """What the API shows of a task: the task, its audit trail and its execution log."""
    task = await api.get(f"/api/tasks/{task_id}", headers=headers)
    events = await api.get(f"/api/tasks/{task_id}/events", headers=headers)
    return "\n".join([task.text, events.text, *await logs(api, headers, task_id)])


async def finished(
    api: httpx.AsyncClient, headers: dict[str, str], type: str, parameters: dict[str, Any]
) -> dict[str, Any]:
    created = await create_task(api, headers, type, parameters)
    return await wait_task(
        api, headers, created["taskId"], lambda t: t["status"] in ("Completed", "Failed")
    )


async def test_passwords_appear_in_no_history_row_or_log(
    api: httpx.AsyncClient,
    account: Account,
    settings: Settings,
    temporal_client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, headers = account
    password = f"canary-{secrets.token_hex(16)}"
    wrong = f"canary-{secrets.token_hex(16)}"
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test

    file_id = (await upload_file(api, headers, random_bytes(70_000), name="a.txt"))["id"]
    encrypt = await finished(
        api, headers, "FileEncrypt", {"fileIds": [file_id], "password": password}
    )
    decrypt = await finished(
        api, headers, "FileDecrypt", {"fileIds": [file_id], "password": password}
    )
    data = random_bytes(70_000)
    upload = await create(api, headers, data, file_name="b.bin", encryptPassword=password)
    await send_chunks(api, headers, upload, [0])
    uploaded = await complete(api, headers, upload)
    assert uploaded.status_code == 200, uploaded.text
    refused = await finished(
        api, headers, "FileDecrypt", {"fileIds": [uploaded.json()["id"]], "password": wrong}
    )
    assert [encrypt["status"], decrypt["status"], refused["errorCode"]] == [
        "Completed",
        "Completed",
        "WRONG_PASSWORD",
    ]

    task_ids = [encrypt["taskId"], decrypt["taskId"], upload.task_id, refused["taskId"]]
    histories = {task_id: await history_bytes(temporal_client, task_id) for task_id in task_ids}
    # The password did travel through them, sealed: these are the right bytes to search.
    assert all(b"sealed:v1:" in history for history in histories.values())
    views = "\n".join([await api_views(api, headers, task_id) for task_id in task_ids])
    assert "encrypting a.txt" in views  # the execution logs are in
    rows = database_text(settings)
    records = "\n".join(repr(vars(record)) for record in caplog.records)
    assert "decrypting a.txt" in records  # the worker's logs were captured

    for secret in (password, wrong):
        for task_id, history in histories.items():
            assert secret.encode() not in history, f"in the history of {task_id}"
        assert secret not in rows, "in the database"
        assert secret not in views, "in the API's views"
        assert secret not in caplog.text, "in the logs"
        assert secret not in records, "in the log records"
