"""The one registry of task types: what each is called, where it runs, how it is built.

A task type's module (``tasktypes/``) registers exactly one ``TaskType``. The worker runs the
registered workflows and activities, one task queue per category; the API validates create
requests with the type's parameters model and lists the types with its JSON schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio.common import Priority

from taskdrive.tasks import RetryRules

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# Checks a create's parameters against the account's data, which the parameters model cannot
# see (the file a conversion reads, say): ``(session, account_id, params)``, ``params`` being
# the parsed model. It raises ``TaskdriveError`` (a 4xx) to refuse the create.
CreateCheck = Callable[["AsyncSession", uuid.UUID, Any], Awaitable[None]]


@dataclass(frozen=True)
class TaskType:
    name: str
    """The task's ``type`` on the wire and its workflow type name in Temporal."""
    category: str
    """Tasks of a category run on the task queue ``<prefix>-<category>``."""
    default_priority: int = 50
    description: str = ""
    params: type[BaseModel] | None = None
    """Validates ``parameters`` on create, and in the workflow."""
    workflow: type | None = None
    activities: Sequence[Callable[..., Any]] = field(default_factory=tuple)
    retry: RetryRules = field(default_factory=RetryRules)
    validate_create: CreateCheck | None = None
    """Run by ``POST /api/tasks`` on a new task (not on an idempotent replay), before the task
    is committed or started, so a refused create leaves nothing behind. None: the model's
    validation is all."""
    creatable: bool = True
    """False: created through an endpoint of its own (the upload), so neither ``POST
    /api/tasks`` nor ``/retry`` starts it."""


TASK_TYPES: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    existing = TASK_TYPES.get(task_type.name)
    if existing is not None:
        # The workflow sandbox imports a type's module afresh for each workflow run; the first
        # registration (from the real import) stands.
        if _origin(existing) == _origin(task_type):
            return existing
        raise ValueError(f"task type {task_type.name} is registered twice")
    TASK_TYPES[task_type.name] = task_type
    return task_type


def _origin(task_type: TaskType) -> str:
    workflow = task_type.workflow
    return f"{workflow.__module__}.{workflow.__qualname__}" if workflow else task_type.name


def get(name: str) -> TaskType | None:
    return TASK_TYPES.get(name)


def categories() -> set[str]:
    return {t.category for t in TASK_TYPES.values()}


def temporal_priority(priority: int) -> Priority:
    """Maps the API's 0 (lowest) .. 100 (highest) onto Temporal's keys 5 (lowest) .. 1."""
    clamped = min(max(priority, 0), 100)
    return Priority(priority_key=5 - round(clamped / 25))
