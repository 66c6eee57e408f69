"""Compression benchmark: FileCompress (zip, level 6) through the whole system, beside the same
compression in a plain loop.

``python -m bench.compress [--size-mib N]`` starts the system as ``bench.upload`` does (Temporal
dev server, Postgres, worker and API as subprocesses over a temp data folder), uploads one file
of N MiB (default 1024) of text-like bytes (random words: deflate makes about a third of them)
to the local pool, and then, in ``--repeat`` rounds taking turns to go first:

* the task: FileCompress of that file, timed from create to Completed by the task's own
  createdAt and completedAt (the archive streamed from the pool through the worker's archive
  writer into the pool, hashed, fsync'd, recorded);
* the plain loop: stream-zip at the same level over the same file, read in 4 MiB chunks from
  the pool's folder, the archive written to a file in the same folder and fsync'd.

The round with the median ratio counts (``bench.rounds``). Printed: its MB/s of input (10^6
bytes per second) for each, and a last line ending with ``ratio <task/plain>``. Every timed
run starts after ``sync``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import stream_zip

from bench.client import REQUEST_TIMEOUT, BenchError, Payload, api_upload
from bench.rounds import Round, median_round, rounds_note
from bench.upload import MB, MiB, System, note, print_figures, running_system
from taskdrive.auth import issue_token

LEVEL = 6
READ_CHUNK = 4 * MiB
COMPLETED_TIMEOUT = 3600.0  # bounds a hang, asserts nothing
POLL_INTERVAL = 0.25  # seconds between polls of the task's status


@dataclass(frozen=True)
class Options:
    size: int
    chunk_size: int
    repeat: int


def text_like(size: int, seed: int) -> bytes:
    """``size`` bytes of random words from a random vocabulary, lines of about 80 characters:
    compressible like prose, not like zeros."""
    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(4096)
    ]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]  # Zipf-like, as in text
    words = rng.choices(vocabulary, weights, k=size // 5)
    lines = (" ".join(words[i : i + 14]) for i in range(0, len(words), 14))
    text = "\n".join(lines).encode()
    return (text * (size // len(text) + 1))[:size]


async def compress_task(
    client: httpx.AsyncClient, base: str, headers: dict[str, str], file_id: str
) -> tuple[float, dict[str, Any]]:
    """Seconds from create to Completed, by the task's own clock (its createdAt and
    completedAt): polling often enough to time it from here would cost the API and Postgres
    CPU that the compression competes for. Also returns the task's results."""
    response = await client.post(
        f"{base}/api/tasks",
        json={
            "type": "FileCompress",
            "parameters": {
                "fileIds": [file_id],
                "compressionFormat": "zip",
                "compressionLevel": LEVEL,
            },
        },
        headers=headers,
    )
    if response.status_code != 201:
        raise BenchError(f"create: {response.status_code} {response.text[:500]}")
    task_id = response.json()["taskId"]
    async with asyncio.timeout(COMPLETED_TIMEOUT):
        while True:
            response = await client.get(f"{base}/api/tasks/{task_id}", headers=headers)
            task = response.json()
            if task["status"] == "Completed":
                took = datetime.fromisoformat(task["completedAt"]) - datetime.fromisoformat(
                    task["createdAt"]
                )
                return took.total_seconds(), task["results"]
            if task["status"] in ("Failed", "Cancelled"):
                raise BenchError(f"task {task_id} ended {task['status']}: {task}")
            await asyncio.sleep(POLL_INTERVAL)  # pacing between polls of the projection


def plain_compress(source: Path, target: Path) -> tuple[float, int]:
    """Seconds to zip ``source`` into ``target`` with stream-zip in one loop, and its size."""
    size = source.stat().st_size

    def chunks() -> Iterator[bytes]:
        with source.open("rb", buffering=0) as file:
            while chunk := file.read(READ_CHUNK):
                yield chunk

    started = time.perf_counter()
    member = ("bench.txt", datetime.now(UTC), 0o100644, stream_zip.ZIP_AUTO(size, level=LEVEL))
    written = 0
    with target.open("wb", buffering=0) as out:
        for piece in stream_zip.stream_zip([(*member, chunks())]):
            written += out.write(piece)
        os.fsync(out.fileno())
    return time.perf_counter() - started, written


async def measure(options: Options, system: System) -> list[str]:
    settings = system.settings
    headers = {"Authorization": f"Bearer {issue_token(settings, uuid.uuid4())}"}
    pool_dir = settings.data_dir / "pool"
    block = await asyncio.to_thread(text_like, options.chunk_size, seed=options.size)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False) as client:
        base = system.api_base
        await asyncio.to_thread(system.api.wait_http_ok, f"{base}/health")

        async def upload(size: int) -> str:
            payload = Payload(size, options.chunk_size, block + block)
            _, file_id = await api_upload(
                client, base, headers, payload, parallel=4, multipart=False
            )
            return file_id

        note("warming up")  # connections, imports, the first workflows and activities
        await compress_task(client, base, headers, await upload(min(options.size, 8 * MiB)))
        note(f"uploading {options.size // MiB} MiB")
        file_id = await upload(options.size)
        source = pool_dir / "files" / file_id

        async def on_task() -> float:
            await asyncio.to_thread(os.sync)
            seconds, results = await compress_task(client, base, headers, file_id)
            (pool_dir / "files" / results["resultFileId"]).unlink()  # fresh pages each round
            return seconds

        async def on_plain() -> tuple[float, int]:
            await asyncio.to_thread(os.sync)
            target = system.folder / "plain.zip"
            seconds, written = await asyncio.to_thread(plain_compress, source, target)
            target.unlink()
            return seconds, written

        tasks: list[float] = []
        plains: list[float] = []
        for round_ in range(1, options.repeat + 1):
            if round_ % 2:
                tasks.append(await on_task())
                plain, archive_size = await on_plain()
            else:
                plain, archive_size = await on_plain()
                tasks.append(await on_task())
            plains.append(plain)
            note(
                f"round {round_}/{options.repeat}: task {options.size / tasks[-1] / MB:.1f}, "
                f"plain {options.size / plains[-1] / MB:.1f} MB/s"
            )
    rate = options.size / MB  # MB/s = rate / seconds
    rounds = [Round(rate / t, rate / p) for t, p in zip(tasks, plains, strict=True)]
    median = median_round(rounds)
    return [
        f"compress: {options.size // MiB} MiB of text-like bytes into zip level {LEVEL} "
        f"({options.size / archive_size:.2f}:1), local pool, MB/s of input "
        f"({rounds_note(rounds)})",
        f"compress: task {median.measured:.1f} MB/s (create to Completed), plain loop "
        f"{median.baseline:.1f} MB/s, ratio {median.ratio:.2f}",
    ]


async def run(options: Options) -> list[str]:
    async with running_system() as system:
        return await measure(options, system)


def main() -> None:
    parser = argparse.ArgumentParser(description="Compression: FileCompress vs a plain loop.")
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--chunk-mib", type=int, default=8, help="upload chunk size")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median counts")
    args = parser.parse_args()
    options = Options(
        size=args.size_mib * MiB, chunk_size=args.chunk_mib * MiB, repeat=max(1, args.repeat)
    )

    print_figures(lambda: run(options))


if __name__ == "__main__":
    main()
