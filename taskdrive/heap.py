"""The long-running processes' heap: what startup leaves alive stays out of the cyclic GC,
and the API's allocator keeps the memory its chunk bodies cycle through."""

from __future__ import annotations

import ctypes
import gc
import logging

from taskdrive.settings import MiB

log = logging.getLogger("taskdrive.heap")

# mallopt() parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# glibc's own ceiling for the threshold it adjusts by itself (64-bit): every chunk body (16 MiB
# at most) and every read-back block (8 MiB) stays under it, so on the heap.
_MMAP_THRESHOLD = 32 * MiB

_frozen = False


def freeze_startup() -> None:
    """Called once a process (API, worker) has started: everything alive then (modules, the
    workflow and route definitions, pools, engines) lives as long as the process.

    The collector's full passes walk every tracked object; frozen ones are skipped. Without
    this, each full pass walked some two hundred thousand startup objects and stalled the
    worker's event loop for over a tenth of a second, every thousand small tasks or so. The
    collection first leaves startup's garbage out of what is frozen.

    Once per process: the startup objects are the same on a later call (a test process starts
    many apps and workers), and each call would pay a full collection and pin whatever that
    run's objects are to the end of the process."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()


def keep_cycled_memory(size: int) -> bool:
    """Has glibc's allocator keep up to ``size`` freed bytes rather than return them to the
    OS; False where the C library has no ``mallopt`` (then nothing changes).

    The API's memory rises and falls by the chunk bodies in flight and those kept for the
    digests (``upload_hash_buffer_bytes``). By default glibc returns a freed heap top to the
    OS, and the next bodies fault the same pages in again: measured, 10,000 minor page faults
    per GiB uploaded, against 400 with the memory kept. Setting any of these parameters turns
    off glibc's own adjustment of the others, so all three are set: large blocks stay on the
    heap (below the mmap threshold), and up to ``size`` of free heap top is kept."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, size),
        (_M_TOP_PAD, min(size, 64 * MiB)),
    )
    accepted = all(mallopt(parameter, value) == 1 for parameter, value in settings)
    if not accepted:
        log.warning("the allocator refused to keep %d bytes of cycled memory", size)
    return accepted
