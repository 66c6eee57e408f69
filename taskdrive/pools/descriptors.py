"""File descriptors used from worker threads, alone or shared by the writers of one file."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Descriptor:
    """A file descriptor used from worker threads.

    A cancelled ``await`` does not stop the thread it waits for, so closing the descriptor at
    once could let that thread write into whichever file reuses the number next. Thread calls
    are shielded, and closing waits for the one still running.

    A call is the executor's future itself, not ``to_thread`` in a task of its own: a chunk
    makes a call per MiB, and the task and coroutine around each were measurable on the
    event loop. The functions called need no context variables."""

    def __init__(self, fd: int, release: Callable[[int], None] = os.close) -> None:
        self.fd = fd
        self._release = release  # what close() does with the descriptor
        self._busy: asyncio.Future[Any] | None = None

    @classmethod
    async def open(cls, path: Path, flags: int) -> Descriptor:
        """``path`` opened in a worker thread; FileNotFoundError unless it is a regular file."""
        return cls(await _open(path, flags))

    @classmethod
    async def open_new(cls, path: Path) -> Descriptor:
        """Creates ``path``, which must not exist, for writing."""
        return await cls.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(fd, *args)`` in a worker thread, once the call before it is done."""
        await self.drain()
        self._busy = busy = _in_thread(fn, self.fd, *args)
        return await asyncio.shield(busy)

    async def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Starts ``fn(fd, *args)`` once the call before it is done, and returns while it runs:
        a writer receives its next piece meanwhile. Its error is raised by the next call."""
        await self.drain()
        self._busy = _in_thread(fn, self.fd, *args)

    async def drain(self) -> None:
        """Waits for the call in flight, raising its error."""
        if self._busy is not None:
            await asyncio.shield(self._busy)

    def close(self) -> None:
        busy, fd, release = self._busy, self.fd, self._release
        if busy is None:
            release(fd)
        elif busy.done():
            _release_after(busy, fd, release)
        else:
            busy.add_done_callback(lambda done: _release_after(done, fd, release))


@dataclass(slots=True, eq=False)
class _SharedFile:
    fd: int
    users: int = 0  # writers using it now
    idle: asyncio.TimerHandle | None = None  # closes it once unused for a while


class SharedFiles:
    """Descriptors by path, shared by the writers of each file (``pwrite`` at distinct offsets
    needs no coordination): a descriptor stays open while writers use it, and ``idle_seconds``
    after the last. Used on the event loop only."""

    def __init__(self, flags: int, idle_seconds: float) -> None:
        self._flags = flags
        self._idle_seconds = idle_seconds
        self._files: dict[Path, _SharedFile] = {}

    async def open(self, path: Path) -> Descriptor:
        """A descriptor of ``path`` (FileNotFoundError as :meth:`Descriptor.open`); its
        ``close()`` hands it back."""
        shared = self._files.get(path)
        if shared is None:
            fd = await _open(path, self._flags)
            shared = self._files.get(path)  # another writer may have opened it meanwhile
            if shared is None:
                shared = self._files[path] = _SharedFile(fd)
            else:
                os.close(fd)
        shared.users += 1
        if shared.idle is not None:
            shared.idle.cancel()
            shared.idle = None
        return Descriptor(shared.fd, lambda _: self._release(path, shared))

    def forget(self, path: Path) -> None:
        """Stops sharing ``path``'s descriptor: closed now, or when its last writer is done."""
        shared = self._files.pop(path, None)
        if shared is not None and shared.users == 0:
            self._close(shared)

    def close(self) -> None:
        for path in list(self._files):
            self.forget(path)

    def _release(self, path: Path, shared: _SharedFile) -> None:
        shared.users -= 1
        if shared.users:
            return
        if self._files.get(path) is not shared:
            self._close(shared)  # forgotten while in use
        else:
            loop = asyncio.get_running_loop()
            shared.idle = loop.call_later(self._idle_seconds, self._expire, path, shared)

    def _expire(self, path: Path, shared: _SharedFile) -> None:
        if shared.users == 0 and self._files.get(path) is shared:
            del self._files[path]
            self._close(shared)

    @staticmethod
    def _close(shared: _SharedFile) -> None:
        if shared.idle is not None:
            shared.idle.cancel()
        os.close(shared.fd)


async def _open(path: Path, flags: int) -> int:
    opening = _in_thread(_open_file, path, flags)
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _succeeded(done: asyncio.Future[Any]) -> bool:
    # Fetching the outcome also keeps asyncio from logging it as never retrieved.
    return not done.cancelled() and done.exception() is None


def _release_after(done: asyncio.Future[Any], fd: int, release: Callable[[int], None]) -> None:
    _succeeded(done)
    release(fd)


def _close_opened(done: asyncio.Future[int]) -> None:
    if _succeeded(done):
        os.close(done.result())  # an open that finished after its caller was cancelled


def _open_file(path: Path, flags: int) -> int:
    fd = os.open(path, flags, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(path)  # a directory is no object
    return fd
