"""The benchmark's yardstick: a bare ASGI endpoint that does only what a chunk upload must do.

``POST /chunk/{name}/{offset}`` hashes the body (SHA-256) and writes it at ``offset`` of
``$BENCH_BASELINE_DIR/{name}``, ``fdatasync`` before answering, so a 200 here is as durable as
the API's. No auth, no database, no Temporal: what is left is the server, the HTTP parsing and
the I/O. ``GET /health`` answers 200 once the server is up.

Run by ``bench.upload`` as ``python -m bench.baseline_app --port P`` under the same uvicorn
options as ``taskdrive api`` (see ``taskdrive.cli.cmd_api``).
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

DIR_ENV = "BENCH_BASELINE_DIR"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _store(path: Path, pieces: list[bytes], offset: int) -> tuple[int, str]:
    """Hash, write at ``offset``, make durable: one thread hop per chunk, like the pool's last
    write and flush. hashlib and the syscalls release the GIL, so the event loop keeps going."""
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = sum(len(piece) for piece in pieces)
        done = os.pwritev(fd, pieces, offset) if pieces else 0
        if done < size:  # short writes are allowed on regular files, if rare
            rest = memoryview(b"".join(pieces))[done:]
            while rest:
                n = os.pwrite(fd, rest, offset + done)
                done += n
                rest = rest[n:]
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return size, digest.hexdigest()


async def _answer(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    root = Path(os.environ[DIR_ENV])
    root.mkdir(parents=True, exist_ok=True)

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
        pieces: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if message.get("body"):
                pieces.append(message["body"])
            more = message.get("more_body", False)
        size, digest = await asyncio.to_thread(_store, root / parts[2], pieces, int(parts[3]))
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
