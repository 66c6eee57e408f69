"""The benchmark's yardstick: a bare ASGI endpoint that does only what a chunk upload must do.

``POST /chunk/{name}/{offset}`` hashes the body (SHA-256) and writes it at ``offset`` of
``$BENCH_BASELINE_DIR/{name}`` as it arrives, ``fdatasync`` before answering, so a 200 here is
as durable as the API's. No auth, no database, no Temporal: what is left is the server, the
HTTP parsing, the hashing and the I/O. ``GET /health`` answers 200 once the server is up.

Run by ``bench.upload`` as ``python -m bench.baseline_app --port P`` under the same uvicorn
options as ``taskdrive api`` (see ``taskdrive.cli.cmd_api``), and with glibc's heap kept rather
than trimmed (``bench.upload.BASELINE_ALLOCATOR_ENV``): its small heap would otherwise be
faulted in afresh for every few requests, which the API's does not.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from taskdrive.pools.descriptors import SharedFiles
from taskdrive.pools.local import IDLE_CLOSE_SECONDS
from taskdrive.pools.writeback import start_writeback

DIR_ENV = "BENCH_BASELINE_DIR"
BATCH = 1024 * 1024  # bytes per thread hop, as the local pool's PIECE_SIZE
_IOV_MAX = 1024  # pwritev's limit on Linux; more pieces are joined first
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Sink:
    """One chunk's file, written at the chunk's offset as the body arrives and hashed on the way.

    Like the local pool: pieces are batched to ``BATCH`` bytes per thread hop, the next batch
    is received while one is written, each batch's writeback is started as soon as it is
    written (``taskdrive.pools.writeback``), and the last batch shares its hop with
    ``fdatasync``; the chunks of one file share its descriptor. Streaming
    also keeps memory flat: holding whole chunks would make the allocator map and fault in
    fresh pages for every chunk, which costs kernel time the API does not pay."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.offset = offset
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, pieces: list[bytes]) -> None:
        """hashlib and the syscalls release the GIL: the event loop keeps serving meanwhile."""
        start = self.offset
        self._write(pieces)
        start_writeback(self.fd, start, self.offset - start)

    def _write(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.digest.update(piece)
        data = pieces if len(pieces) <= _IOV_MAX else [b"".join(pieces)]
        total = sum(len(piece) for piece in data)
        done = os.pwritev(self.fd, data, self.offset) if data else 0
        if done < total:  # short writes are allowed on regular files, if rare
            rest = memoryview(b"".join(data))[done:]
            while rest:
                n = os.pwrite(self.fd, rest, self.offset + done)
                done += n
                rest = rest[n:]
        self.offset += total
        self.size += total

    def finish(self, pieces: list[bytes]) -> tuple[int, str]:
        self._write(pieces)
        os.fdatasync(self.fd)
        return self.size, self.digest.hexdigest()


async def _answer(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    root = Path(os.environ[DIR_ENV])
    root.mkdir(parents=True, exist_ok=True)
    # One descriptor per file, shared by its chunks, as the local pool shares a staging file.
    files = SharedFiles(os.O_WRONLY | os.O_CREAT, IDLE_CLOSE_SECONDS)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        parts = scope["path"].split("/")
        if scope["method"] == "GET" and scope["path"] == "/health":
            await _answer(send, 200, {"status": "ok"})
            return
        if not (
            scope["method"] == "POST"
            and len(parts) == 4
            and parts[1] == "chunk"
            and _NAME.fullmatch(parts[2])
            and parts[3].isdigit()
        ):
            await _answer(send, 404, {"error": "POST /chunk/{name}/{offset}"})
            return
        loop = asyncio.get_running_loop()
        descriptor = await files.open(root / parts[2])
        sink = _Sink(descriptor.fd, int(parts[3]))
        writing: asyncio.Future[None] | None = None  # a batch being written meanwhile
        try:
            pending: list[bytes] = []
            pending_size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                if message.get("body"):
                    pending.append(message["body"])
                    pending_size += len(message["body"])
                more = message.get("more_body", False)
                if more and pending_size >= BATCH:
                    if writing is not None:
                        await writing
                    writing = loop.run_in_executor(None, sink.write, pending)
                    pending, pending_size = [], 0
            if writing is not None:
                await writing
            size, digest = await asyncio.to_thread(sink.finish, pending)
        finally:
            if writing is not None and not writing.done():
                await asyncio.wait([writing])  # a disconnect: the thread still uses the file
            descriptor.close()
        await _answer(send, 200, {"size": size, "sha256": digest})

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    # Exactly what `taskdrive api` passes: defaults for everything else (loop, http, workers=1,
    # access log), so both servers run the same implementation with the same options.
    uvicorn.run(
        "bench.baseline_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
