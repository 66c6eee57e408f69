"""Which changes to what the task workflows command a task's history was recorded with.

A task in flight when the worker is upgraded continues on the new code from its history, so a
change to what a workflow commands must leave the histories recorded before it replaying the
old way. Temporal's ``workflow.patched`` tells them apart by a marker that every new history
records, and records the patch in the ``TemporalChangeVersion`` search attribute as well: two
more events per task, one of them a visibility write for the server. Here the API starts every
task with the version of the code it ships (``TaskInput.version``, ``CURRENT``), so the input
says which changes a history has, and new histories carry no marker. Only tasks started before
that (version 0) are told by their markers, as they were recorded.

A new change: add a ``Change`` with the next version and no patch, raise ``CURRENT`` to it,
guard the new commands with ``TaskWorkflow.has(change)``, and record a history of the old
behaviour for ``tests/workflows/histories`` first. Upgrade the workers before the API: a task
must never start with a version its worker does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow


@dataclass(frozen=True)
class Change:
    version: int
    """The first version with this change."""
    patch: str | None = None
    """The ``workflow.patched`` id that marks it in version 0 histories (the changes made
    before versions); None for later changes."""


LOCAL_PROJECTION = Change(1, "projection-local-activity")
"""Projection writes are local activities (they were activities)."""
CARRIED_PROJECTION = Change(1, "projection-carried-by-steps")
"""Projection writes ride with the next step (each was a local activity of its own)."""
MOVE_CLEANUP_SETTLES = Change(1, "move-cleanup-settles")
"""The moving types' cleanup settles a cut-short move (``tasktypes._relocating``)."""
REWRITE_CLEANUP_SETTLES = Change(1, "rewrite-cleanup-settles")
"""FileEncrypt's and FileDecrypt's cleanup settles a cut-short rewrite."""

STATUS_ON_CHANGE = Change(2)
"""The Web UI's TaskdriveStatus attribute is upserted only when its value changes, and the
API starts tasks with it InProgress (it started Pending, and every write but progress upserted
it: the first step's InProgress, and each retry's, were one visibility write apiece)."""

CURRENT = 2
"""The version the API starts tasks with: every change above is in it."""


def has(version: int, change: Change) -> bool:
    """Whether a workflow started with ``version`` makes ``change``; from workflow code."""
    if version >= change.version:
        return True
    if version == 0 and change.patch is not None:
        return workflow.patched(change.patch)
    return False
