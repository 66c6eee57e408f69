"""An upload of 20,000 chunks completes, with a Temporal history far from its limits."""

from __future__ import annotations

import uuid

import httpx
from temporalio.client import Client

from tests.uploading import complete, create, random_bytes, send_chunks, sha256

CHUNKS = 20_000
CHUNK_SIZE = 16  # the suite's settings allow tiny chunks (upload_min_chunk_size=1)
# Temporal terminates a workflow at 51,200 events; per-chunk signals would get close to it.
HISTORY_LIMIT = 51_200


async def test_twenty_thousand_chunks(
    api: httpx.AsyncClient, account: tuple[uuid.UUID, dict[str, str]], temporal_client: Client
) -> None:
    _, headers = account
    data = random_bytes(CHUNKS * CHUNK_SIZE - 5)
    upload = await create(api, headers, data, chunk_size=CHUNK_SIZE)
    assert upload.chunks_count == CHUNKS
    await send_chunks(api, headers, upload, list(reversed(range(CHUNKS))), parallel=8)

    response = await complete(api, headers, upload)
    assert response.status_code == 200, response.text
    assert response.json()["hash"] == sha256(data)

    events = 0
    async for _ in temporal_client.get_workflow_handle(upload.task_id).fetch_history_events():
        events += 1
    assert events < HISTORY_LIMIT // 10
