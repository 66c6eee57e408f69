"""The one registry of task types: name, category (a task queue) and default priority."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.common import Priority


@dataclass(frozen=True)
class TaskType:
    name: str
    """The task's ``type`` on the wire and its workflow type name in Temporal."""
    category: str
    """Tasks of a category run on the task queue ``<prefix>-<category>``."""
    default_priority: int = 50
    description: str = ""


TASK_TYPES: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    if task_type.name in TASK_TYPES:
        raise ValueError(f"task type {task_type.name} is registered twice")
    TASK_TYPES[task_type.name] = task_type
    return task_type


def categories() -> set[str]:
    return {t.category for t in TASK_TYPES.values()}


def temporal_priority(priority: int) -> Priority:
    """Maps the API's 0 (lowest) .. 100 (highest) onto Temporal's keys 5 (lowest) .. 1."""
    clamped = min(max(priority, 0), 100)
    return Priority(priority_key=5 - round(clamped / 25))
