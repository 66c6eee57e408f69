"""The contract of a projection write, shared by workflows (which build it) and the writers."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskHeader:
    """What a task row needs to exist; carried by every write so any write can create the row."""

    task_id: str
    account_id: str
    type: str
    name: str
    category: str
    priority: int
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectionWrite:
    """One step of a task: applied only if ``seq`` is above the row's, with its event appended."""

    header: TaskHeader
    seq: int
    status: str
    event_type: str
    occurred_at: str
    """ISO-8601; the workflow's clock, so a replay writes the same value."""
    progress: float = 0.0
    status_message: str | None = None
    results: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    reason: str | None = None
    started: bool = False
    """Sets ``started_at`` when not yet set."""
    finished: bool = False
    """Sets ``completed_at``."""
    retry_count: int | None = None
    max_retries: int | None = None
    last_error: str | None = None
    """The latest failure a retry followed; kept until another replaces it."""
    actor: str | None = None
    """Who caused this transition (an account id, "temporal", "system"), for the audit."""
    data: dict[str, Any] = field(default_factory=dict)
    """Extra fields for the event's notification payload."""
