"""``read_archive``: the loop side of extraction, handing entries to the caller as the worker
thread finds them."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Final, Self

from taskdrive.fileops.archive_read.limits import DEFAULT_LIMITS, Limits
from taskdrive.fileops.archive_read.tar_reader import _read_tar
from taskdrive.fileops.archive_read.worker import _Emit, _EntryEnd, _Event, _Start
from taskdrive.fileops.archive_read.zip_reader import _read_zip
from taskdrive.fileops.archive_write import ARCHIVE_FORMATS, ArchiveFormat
from taskdrive.fileops.thread_pipe import ThreadPipe


@dataclass
class Entry:
    """One file of the archive.

    ``chunks`` must be consumed, or abandoned, before asking ``read_archive`` for the next entry;
    whatever is left is then read and discarded (still under the limits). ``size`` is the
    declared size, when the archive declares one up front; the bytes actually yielded are what
    counts.
    """

    name: str
    size: int | None
    chunks: AsyncIterator[bytes]


def read_archive(
    source: AsyncIterable[bytes], fmt: ArchiveFormat, limits: Limits = DEFAULT_LIMITS
) -> AsyncGenerator[Entry, None]:
    """Stream the regular-file entries of the archive in ``source``, enforcing ``limits``.

    Raises ``ArchiveRejected`` from the iteration (from ``read_archive`` itself, or from an
    entry's ``chunks``) as soon as something is wrong; an exception from ``source`` is re-raised
    as it is. ``source`` is closed (``aclose``, if it has one) when extraction ends. Close the
    generator (``aclosing``) when abandoning it early, to stop the worker thread at once.
    """
    if fmt not in ARCHIVE_FORMATS:
        raise ValueError(f"unknown archive format {fmt!r}; expected one of {ARCHIVE_FORMATS}")
    work = partial(_read_zip, limits) if fmt == "zip" else partial(_read_tar, fmt, limits)
    return _entries(source, work)


# --- loop side ----------------------------------------------------------------------------------

# Loop -> worker: source chunks, grouped into batches of about this many bytes (one hop each).
_SOURCE_BATCH_BYTES: Final = 1024 * 1024
_INPUT_DEPTH: Final = 2
_OUTPUT_DEPTH: Final = 4


async def _entries(
    source: AsyncIterable[bytes], work: Callable[[Iterator[list[bytes]], _Emit], None]
) -> AsyncGenerator[Entry, None]:
    pipe = ThreadPipe(
        _batched(source),
        work,
        input_depth=_INPUT_DEPTH,
        output_depth=_OUTPUT_DEPTH,
        name="archive-read",
    )
    async with pipe:
        while (event := await anext(pipe, None)) is not None:
            if not isinstance(event, _Start):
                raise RuntimeError(f"archive reader out of step: {type(event).__name__}")
            chunks = _EntryChunks(pipe)
            yield Entry(event.name, event.size, chunks)
            await chunks.drain()


async def _batched(source: AsyncIterable[bytes]) -> AsyncGenerator[list[bytes], None]:
    iterator = aiter(source)
    batch: list[bytes] = []
    batch_bytes = 0
    try:
        async for chunk in iterator:
            if not chunk:
                continue
            batch.append(chunk)
            batch_bytes += len(chunk)
            if batch_bytes >= _SOURCE_BATCH_BYTES:
                yield batch
                batch = []
                batch_bytes = 0
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    if batch:
        yield batch


class _EntryChunks:
    """An entry's data, read off the pipe until the worker marks the entry's end."""

    def __init__(self, pipe: ThreadPipe[list[bytes], _Event]) -> None:
        self._pipe = pipe
        self._done = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            event = await anext(self._pipe, None)
        except BaseException:
            self._done = True
            raise
        if isinstance(event, bytes):
            return event
        self._done = True
        if isinstance(event, _EntryEnd):
            raise StopAsyncIteration
        if event is None:
            raise RuntimeError("the archive was closed before this entry was read")
        raise RuntimeError(f"archive reader out of step: {type(event).__name__}")

    async def drain(self) -> None:
        async for _ in self:
            pass
