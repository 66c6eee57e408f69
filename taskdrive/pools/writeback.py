"""Starting the kernel's writeback of a file range early: Linux's ``sync_file_range``.

A chunk is durable once ``fdatasync`` returns. Left to itself, the kernel keeps freshly written
pages dirty in memory for a while, so that ``fdatasync`` waits for every megabyte of the chunk
to reach the disk, after its last byte arrived, while the client waits for the answer. Asking
for writeback as each piece is written lets the disk work while the rest of the chunk arrives,
and the final ``fdatasync`` waits for little more than the last piece. Measured on this project's
machine, four writers of 8 MiB chunks in 1 MiB pieces and nothing else running: the final
``fdatasync`` took 0.7 to 0.9 ms instead of 7 to 8 ms.

``sync_file_range`` promises no durability (it neither flushes metadata nor the disk's cache),
so ``fdatasync`` still ends every durable write. Python's ``os`` has no binding for it, so it is
called through ``ctypes`` (which releases the GIL for the call). Where it does not exist (not
Linux) :func:`start_writeback` does nothing, and its errors are ignored: it is only a hint, and
the ``fdatasync`` that follows reports any failure that matters.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range's dirty pages, no wait

_SyncFileRange = Callable[[int, int, int, int], int]


def _load() -> _SyncFileRange | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    sync_file_range: _SyncFileRange = function
    return sync_file_range


_sync_file_range = _load()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Asks the kernel to start writing ``length`` bytes at ``offset`` of ``fd`` to disk, without
    waiting for them; call from a worker thread (it can block when the disk's queue is full)."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)
