"""The benchmark's client side: the bytes it sends and how, identical for every target."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

MiB = 1024 * 1024
REQUEST_TIMEOUT = 120.0  # one chunk or one complete; a stuck server fails the run, not hangs it
COMPLETED_TIMEOUT = 300.0  # create-to-Completed bound when complete answers 202


class BenchError(RuntimeError):
    """The system misbehaved (an unexpected status, a wrong hash): the figures would lie."""


@dataclass(frozen=True)
class Payload:
    """``size`` bytes in chunks, never held whole: chunk i is a window of a random block laid
    twice end to end, starting at a per-chunk offset. Chunks differ, each costs one copy to
    build, and the same chunk costs the same for every target. A fresh block per upload gives
    a fresh file hash (the API would answer an already-known hash with the existing file)."""

    size: int
    chunk_size: int
    doubled: bytes

    @classmethod
    def random(cls, size: int, chunk_size: int) -> Payload:
        block = os.urandom(chunk_size)
        return cls(size, chunk_size, block + block)

    @property
    def chunks_count(self) -> int:
        return -(-self.size // self.chunk_size)

    def _window(self, index: int) -> tuple[int, int]:
        start = (index * 1_048_573) % self.chunk_size  # a prime stride: distinct windows
        length = min(self.chunk_size, self.size - index * self.chunk_size)
        return start, start + length

    def chunk(self, index: int) -> bytes:
        start, end = self._window(index)
        return self.doubled[start:end]

    def sha256(self) -> str:
        """The whole file's hash, for create; memoryview windows spare the copies."""
        digest = hashlib.sha256()
        view = memoryview(self.doubled)
        for index in range(self.chunks_count):
            start, end = self._window(index)
            digest.update(view[start:end])
        return digest.hexdigest()


def _check(response: httpx.Response, expected: int, what: str) -> None:
    if response.status_code != expected:
        raise BenchError(f"{what}: {response.status_code} {response.text[:500]}")


async def send_chunks(
    client: httpx.AsyncClient,
    url: Callable[[int], str],
    payload: Payload,
    headers: Mapping[str, str],
    *,
    parallel: int,
    multipart: bool,
) -> None:
    """Every chunk, ``parallel`` requests in flight. The one sender for API and baseline."""
    indices = iter(range(payload.chunks_count))  # shared: each lane takes the next index

    async def lane() -> None:
        for index in indices:
            body = payload.chunk(index)
            if multipart:
                response = await client.post(
                    url(index),
                    files={"chunk": ("blob", body, "application/octet-stream")},
                    headers=headers,
                )
            else:
                response = await client.post(
                    url(index),
                    content=body,
                    headers={**headers, "Content-Type": "application/octet-stream"},
                )
            _check(response, 200, f"chunk {index}")

    async with asyncio.TaskGroup() as group:
        for _ in range(parallel):
            group.create_task(lane())


async def api_upload(
    client: httpx.AsyncClient,
    base: str,
    headers: Mapping[str, str],
    payload: Payload,
    *,
    parallel: int,
    multipart: bool,
) -> tuple[float, str]:
    """Seconds from create to Completed, and the file's id; raises unless the stored file has
    our hash."""
    digest = await asyncio.to_thread(payload.sha256)  # the client's own work, before the clock
    api = f"{base}/api/files/upload"
    started = time.perf_counter()
    response = await client.post(
        f"{api}/create",
        json={
            "fileName": "bench.bin",
            "fileSize": payload.size,
            "contentType": "application/octet-stream",
            "hash": digest,
            "chunkSize": payload.chunk_size,
        },
        headers=headers,
    )
    _check(response, 200, "create")
    created: dict[str, Any] = response.json()
    if created["fileExists"] or created["chunkSize"] != payload.chunk_size:
        raise BenchError(f"create: unexpected answer {created}")
    task_id = created["taskId"]
    await send_chunks(
        client,
        lambda index: f"{api}/chunk/{task_id}/{index}",
        payload,
        headers,
        parallel=parallel,
        multipart=multipart,
    )
    response = await client.post(f"{api}/complete/{task_id}", headers=headers)
    if response.status_code == 202:
        # Assembly outlasted the complete wait: Completed (so verified) once the task says so.
        await _wait_completed(client, api, headers, task_id)
        elapsed = time.perf_counter() - started
        view = await client.get(f"{api}/resume/{task_id}", headers=headers)
        _check(view, 200, "resume")
        response = await client.get(
            f"{base}/api/files/{view.json()['fileId']}/info", headers=headers
        )
        _check(response, 200, "file info")
    else:
        elapsed = time.perf_counter() - started
        _check(response, 200, "complete")  # the CloudFile: assembled and verified
    stored: dict[str, Any] = response.json()
    if stored["hash"] != digest or stored["size"] != payload.size:
        raise BenchError(f"stored file {stored} is not the {payload.size} bytes sent ({digest})")
    return elapsed, str(stored["id"])


async def _wait_completed(
    client: httpx.AsyncClient, api: str, headers: Mapping[str, str], task_id: str
) -> None:
    async with asyncio.timeout(COMPLETED_TIMEOUT):
        while True:
            response = await client.get(f"{api}/progress/{task_id}", headers=headers)
            _check(response, 200, "progress")
            status = response.json()["status"]
            if status == "Completed":
                return
            if status in ("Failed", "Cancelled", "Expired"):
                raise BenchError(f"upload {task_id} ended {status}: {response.text[:500]}")
            await asyncio.sleep(0.05)  # pacing between polls of the projection


async def baseline_upload(
    client: httpx.AsyncClient,
    base: str,
    headers: Mapping[str, str],
    payload: Payload,
    *,
    parallel: int,
) -> float:
    """Seconds from the first chunk to the last answer; each chunk lands at its offset."""
    name = uuid.uuid4().hex
    started = time.perf_counter()
    await send_chunks(
        client,
        lambda index: f"{base}/chunk/{name}/{index * payload.chunk_size}",
        payload,
        headers,
        parallel=parallel,
        multipart=False,
    )
    return time.perf_counter() - started


# --- processes -------------------------------------------------------------------------------
