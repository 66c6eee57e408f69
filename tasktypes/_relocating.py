"""The cleanup of the types that replace files' bytes (FileMove, StorageMigration,
BulkOperation's move, FileEncrypt and FileDecrypt): settle what a cut-short replacement left,
so only the object a record points at remains (``activities.relocation``).

Each type added this cleanup after it had run without one, so it is behind a change of the
type's (``workflows.versions``): a history recorded before replays without the step. (The
moving types first shipped it unguarded; their histories from that short stretch, of tasks
that failed or were cancelled, no longer replay, while the older ones do again.)

(Not a task type: ``tasktypes`` skips modules whose name starts with ``_``.)
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.lifecycle import TaskWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.relocation import settle_moves_step

from workflows.versions import Change


async def settle_replacements(flow: TaskWorkflow[Any], change: Change) -> None:
    """From ``cleanup``: runs ``relocation.settle_moves`` unless replaying a history from
    before ``change``."""
    if flow.has(change):
        await flow.cleanup_step(settle_moves_step)
