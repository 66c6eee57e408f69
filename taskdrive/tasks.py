"""The task lifecycle's contracts, shared by the API, the lifecycle workflow and the activities.

Every task type speaks these: the API starts a workflow with a ``TaskInput``, sends the
lifecycle signals and queries ``TaskView``; a type's activities take a ``StepRequest`` and
answer a ``StepResult``. (No ``from __future__ import annotations`` here: Temporal's converter
resolves these dataclasses' field types at runtime, inside the workflow sandbox.)
"""

from dataclasses import dataclass, field
from typing import Any

from taskdrive.projection import ProjectionWrite, TaskHeader

# Signal and query names: the API and every task workflow meet on these strings.
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"
SIGNAL_CANCEL = "cancel"
QUERY_PROGRESS = "progress"


@dataclass
class LifecycleSignal:
    """Pause, resume or cancel, with who asked and why (kept in the audit trail)."""

    reason: str | None = None
    by: str | None = None


@dataclass
class RetryRules:
    """How a task's failed steps are retried: ``max_retries`` more times, waiting
    ``initial_seconds * backoff ** n`` (at most ``max_interval_seconds``) before retry n+1."""

    max_retries: int = 3
    initial_seconds: float = 1.0
    backoff: float = 2.0
    max_interval_seconds: float = 300.0

    def delay(self, retry: int) -> float:
        return float(
            min(self.initial_seconds * self.backoff ** (retry - 1), self.max_interval_seconds)
        )


@dataclass
class TaskState:
    """What a task's workflow carries across continue-as-new and retries of the whole task."""

    status: str = "Pending"
    seq: int = 0
    retry_count: int = 0
    run: int = 0
    """How many times the task was started (a retry through the API starts it again)."""
    checkpoint: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    unanswered: list[str] = field(default_factory=list)
    """Steps whose last run ended without an answer (see ``TaskWorkflow.unanswered_steps``)."""


@dataclass
class TaskInput:
    header: TaskHeader
    params: dict[str, Any]
    """The type's parameters as JSON; secrets in them are sealed (``taskdrive.secrets``)."""
    retry: RetryRules
    heartbeat_timeout_seconds: float
    state: TaskState = field(default_factory=TaskState)
    version: int = 0
    """The version of the task workflows' code the task was started with (``workflows.
    versions``); 0 in histories from before versions."""


@dataclass
class TaskView:
    """The answer to the progress query."""

    task_id: str
    type: str
    status: str
    progress: float
    status_message: str | None
    retry_count: int
    checkpoint: dict[str, Any]


@dataclass
class TaskOutcome:
    status: str
    results: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class StepRequest:
    """One activity step of a task. ``checkpoint`` is where an interrupted earlier run of the
    same step stopped ({} the first time); the step continues from there."""

    task_id: str
    account_id: str
    params: dict[str, Any]
    checkpoint: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """Whatever the workflow passes on from earlier steps."""
    projection: list[ProjectionWrite] = field(default_factory=list)
    """The workflow's projection writes not yet applied: the step applies them once its work
    has run briefly or reports progress, or with its end (``activities.steps``)."""
    completion: ProjectionWrite | None = None
    """A final step's Completed write: applied, with the step's results, once its work is done."""


@dataclass
class StepResult:
    """``done`` False: the step stopped at ``checkpoint`` because the workflow asked it to
    (pause or cancel); running it again with that checkpoint continues the work."""

    done: bool
    checkpoint: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    progress: float | None = None
    completed: bool = False
    """The request's ``completion`` is in the projection."""
    projected: bool = True
    """The request's ``projection`` writes are in the projection (False: the workflow must
    send them itself)."""
