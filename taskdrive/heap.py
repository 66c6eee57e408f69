"""The long-running processes' heap: what startup leaves alive stays out of the cyclic GC."""

from __future__ import annotations

import gc

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
