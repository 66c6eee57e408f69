"""What the zip and tar readers share in the worker thread: the events they send to the loop,
the compressed input they read, and how an entry's data is passed on."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Final

from taskdrive.fileops.archive_read.limits import ArchiveRejected, _Meter
from taskdrive.fileops.pieces import regroup


@dataclass(frozen=True, slots=True)
class _Start:
    name: str
    size: int | None


class _EntryEnd:
    __slots__ = ()


_ENTRY_END: Final = _EntryEnd()

# Worker -> loop: an entry starts, a piece of its data, it ends.
_Event = _Start | bytes | _EntryEnd
_Emit = Callable[[_Event], None]


# --- worker side: shared ------------------------------------------------------------------------

# Compressed bytes per decompressor call: the granularity of "compressed bytes consumed".
_FEED_PIECE_BYTES: Final = 64 * 1024
# Entry data is handed to the loop in pieces of about this size.
_OUTPUT_PIECE_BYTES: Final = 1024 * 1024


class _Input:
    """The compressed archive as the worker reads it: a blocking file-like over the loop's batches.

    ``read`` returns at most what is left of the current chunk, which is what zstandard's and
    gzip's readers expect of a raw stream, and counts every byte it returns as consumed.
    """

    def __init__(self, batches: Iterator[list[bytes]], meter: _Meter) -> None:
        self._chunks = (chunk for batch in batches for chunk in batch)
        self._current = b""
        self._offset = 0
        self._meter = meter

    def read(self, size: int = -1, /) -> bytes:
        while self._offset >= len(self._current):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._current = chunk
            self._offset = 0
        end = len(self._current) if size < 0 else self._offset + size
        piece = self._current[self._offset : end]
        self._offset += len(piece)
        self._meter.consumed(len(piece))
        return piece

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, /) -> int:
        # Declared by gzip's reader protocol; reading forward never calls it.
        raise io.UnsupportedOperation("the archive is read as a stream")

    def pieces(self, size: int) -> Iterator[bytes]:
        return iter(partial(self.read, size), b"")


def _emit_entry(
    name: str,
    size: int | None,
    data: Iterator[bytes],
    meter: _Meter,
    emit: _Emit,
    *,
    data_is_decompressed: bool,
) -> None:
    if not name:
        raise ArchiveRejected("INVALID_NAME", "an entry has an empty name")
    meter.declared(name, size)
    emit(_Start(name, size))

    def metered() -> Iterator[bytes]:
        for chunk in data:
            if data_is_decompressed:
                meter.decompressed(len(chunk))
            meter.extracted_bytes(len(chunk))
            yield chunk

    for piece in regroup(metered(), _OUTPUT_PIECE_BYTES):
        emit(piece)
    emit(_ENTRY_END)
