"""Live task events over WebSocket, from a real API process."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

from taskdrive.settings import Settings
from tests.fixtures.app import Auth
from tests.fixtures.processes import child_env, free_port, taskdrive_process
from tests.uploading import complete, create, random_bytes, send_chunks


async def _events_until_completed(ws: Any, task_id: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        event = json.loads(await ws.recv())
        if event["data"].get("taskId") == task_id:
            seen.append(event)
            if event["type"] == "task.completed":
                return seen


async def test_an_account_sees_its_own_task_events_live(
    settings: Settings, running_worker: None, auth: Auth, tmp_path: Path
) -> None:
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    port = free_port()
    with taskdrive_process(
        "api", env=child_env(settings, API_PORT=str(port)), log_path=tmp_path / "api.log"
    ) as api_process:
        await asyncio.to_thread(api_process.wait_http_ok, f"http://127.0.0.1:{port}/health")
        token = auth(owner)["Authorization"].split()[1]
        async with (
            websockets.connect(f"ws://127.0.0.1:{port}/ws") as mine,
            websockets.connect(
                f"ws://127.0.0.1:{port}/ws",
                additional_headers={**auth(stranger)},
            ) as theirs,
        ):
            # The seed's client: authenticate with a first message.
            await mine.send(json.dumps({"type": "auth", "token": token}))
            assert json.loads(await mine.recv())["type"] == "ready"
            assert json.loads(await theirs.recv())["type"] == "ready"

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
                headers = auth(owner)
                upload = await create(api, headers, random_bytes(3000), chunk_size=1000)
                await send_chunks(api, headers, upload, [0, 1, 2])
                assert (await complete(api, headers, upload)).status_code == 200

            events = await asyncio.wait_for(_events_until_completed(mine, upload.task_id), 60)
            kinds = [e["type"] for e in events]
            assert kinds[0] == "task.created"
            assert "task.progress" in kinds
            progress = [e["data"]["progress"] for e in events if e["type"] == "task.progress"]
            assert progress == sorted(progress)
            assert events[-1]["data"]["results"]["fileSize"] == 3000
            assert all("accountId" not in e for e in events)

            # The other account heard nothing of it: events are relayed in NOTIFY order, so
            # anything misrouted would come before the stranger's own upload's first event.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
                own = await create(api, auth(stranger), random_bytes(10))
            while (event := json.loads(await asyncio.wait_for(theirs.recv(), 60)))["data"].get(
                "taskId"
            ) != own.task_id:
                assert event["data"].get("taskId") != upload.task_id


async def test_a_connection_without_a_valid_token_is_closed(
    settings: Settings, running_worker: None, tmp_path: Path
) -> None:
    port = free_port()
    with taskdrive_process(
        "api", env=child_env(settings, API_PORT=str(port)), log_path=tmp_path / "api.log"
    ) as api_process:
        await asyncio.to_thread(api_process.wait_http_ok, f"http://127.0.0.1:{port}/health")
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token=forged") as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
                raise AssertionError("the server spoke to an unauthenticated client")
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4401
