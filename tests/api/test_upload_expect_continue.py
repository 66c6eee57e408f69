"""``Expect: 100-continue``: a chunk the server will refuse is refused before its bytes travel."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from taskdrive.settings import Settings
from tests.fixtures.processes import child_env, free_port, taskdrive_process
from tests.uploading import create, random_bytes, send_chunk

Account = tuple[uuid.UUID, dict[str, str]]


async def _post_expecting_continue(
    port: int, path: str, headers: dict[str, str], body: bytes
) -> list[str]:
    """Sends the request head, and the body only once the server asks for it; the status lines
    the server answered with, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/octet-stream",
            f"Content-Length: {len(body)}",
            "Expect: 100-continue",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(30):
            first = (await reader.readline()).decode().strip()
            if not first.startswith("HTTP/1.1 100 "):
                return [first]
            await reader.readline()  # the blank line that ends the interim response
            writer.write(body)
            await writer.drain()
            return [first, (await reader.readline()).decode().strip()]
    finally:
        writer.close()


async def test_a_stored_chunk_is_refused_before_its_body_is_sent(
    settings: Settings, running_worker: None, account: Account, tmp_path: Path
) -> None:
    _, headers = account
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(settings, API_PORT=str(port))
    with taskdrive_process("api", env=env, log_path=tmp_path / "api.log") as server:
        await asyncio.to_thread(server.wait_http_ok, f"{base}/health")
        async with httpx.AsyncClient(base_url=base, timeout=60) as api:
            upload = await create(api, headers, random_bytes(2000), chunk_size=1000)
            assert (await send_chunk(api, headers, upload, 0)).status_code == 200
        path = f"/api/files/upload/chunk/{upload.task_id}"

        refused = await _post_expecting_continue(port, f"{path}/0", headers, upload.chunk(0))
        assert len(refused) == 1 and refused[0].startswith("HTTP/1.1 409 ")

        stored = await _post_expecting_continue(port, f"{path}/1", headers, upload.chunk(1))
        assert stored[0].startswith("HTTP/1.1 100 ") and stored[1].startswith("HTTP/1.1 200 ")
