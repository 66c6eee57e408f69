"""Starting task workflows: a new task (create, idempotent under a key) or a task again (retry).

The projection row is written first, the workflow started next and the transaction committed
last: the workflow's first projection write waits on the row, and a failed start leaves
nothing behind. Secret parameters are sealed for Temporal and redacted for Postgres here, the
one place parameters enter the system.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import value_to_type
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Services
from api.schemas.tasks import CreateTaskRequest
from api.temporal_calls import wait_closed
from taskdrive import registry
from taskdrive.auth import Principal
from taskdrive.db.models import Task
from taskdrive.db.projection import apply_projection
from taskdrive.errors import ErrorCode, TaskdriveError
from taskdrive.params import redacted, sealed_wire
from taskdrive.projection import ProjectionWrite, TaskHeader
from taskdrive.secrets import seal
from taskdrive.statuses import TaskStatus
from taskdrive.tasks import TaskInput, TaskState
from taskdrive.temporal import SA_ACCOUNT_ID, SA_STATUS, SA_TASK_TYPE
from workflows import versions

# Task ids derived from an Idempotency-Key live in their own UUID namespace.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("0b5d7c1e-4f0a-5b6e-8c2d-9a1e3f7b6d40")


def task_type_of(name: str) -> registry.TaskType:
    task_type = registry.get(name)
    if task_type is None:
        known = sorted(t.name for t in registry.TASK_TYPES.values() if t.creatable)
        raise TaskdriveError(
            ErrorCode.UNKNOWN_TASK_TYPE, f"unknown task type {name!r}", field="type", known=known
        )
    if not task_type.creatable:
        raise TaskdriveError(
            ErrorCode.UNKNOWN_TASK_TYPE,
            f"{name} tasks are not created here; see the README for their endpoint",
            field="type",
        )
    return task_type


def validate_params(task_type: registry.TaskType, params: dict[str, Any]) -> BaseModel:
    assert task_type.params is not None
    try:
        return task_type.params.model_validate(params)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in ("parameters", *e["loc"])), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise TaskdriveError(
            ErrorCode.VALIDATION_ERROR, "invalid parameters", errors=errors
        ) from None


def _digest(body: CreateTaskRequest, public_params: dict[str, Any]) -> str:
    """What makes two creates under one key the same request (secrets left out)."""
    canonical = body.model_dump(mode="json", by_alias=True) | {"parameters": public_params}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


async def create_task(
    services: Services,
    session: AsyncSession,
    principal: Principal,
    body: CreateTaskRequest,
    idempotency_key: str | None,
) -> tuple[Task, bool]:
    """Returns the task and whether this call created it (False: the key's earlier task)."""
    task_type = task_type_of(body.type)
    model = validate_params(task_type, body.parameters)
    category = body.category or task_type.category
    if category not in registry.categories():
        raise TaskdriveError(
            ErrorCode.VALIDATION_ERROR,
            f"unknown category {category!r}",
            field="category",
            known=sorted(registry.categories()),
        )
    if idempotency_key is not None:
        name = f"{principal.account_id}:{idempotency_key}"
        task_id = str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, name))
    else:
        task_id = str(uuid.uuid4())
    wire = sealed_wire(model, lambda secret: seal(services.settings, task_id, secret))
    public = redacted(type(model), wire)
    digest = _digest(body, public)
    priority = body.priority if body.priority is not None else task_type.default_priority
    header = TaskHeader(
        task_id=task_id,
        account_id=str(principal.account_id),
        type=task_type.name,
        name=body.name or task_type.name,
        category=category,
        priority=priority,
        description=body.description,
        parameters=public,
    )
    max_retries = body.max_retries if body.max_retries is not None else task_type.retry.max_retries
    inp = TaskInput(
        header=header,
        params=wire,
        retry=replace(task_type.retry, max_retries=max_retries),
        heartbeat_timeout_seconds=services.settings.activity_heartbeat_timeout_seconds,
    )
    task = await record_created(
        session, header, max_retries, principal, request_digest=digest, run_input=inp
    )
    if task is None:  # the key's task exists (perhaps committed a moment ago by a twin request)
        existing = await session.get(Task, task_id, populate_existing=True)
        assert existing is not None
        if existing.request_digest != digest:
            raise TaskdriveError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used for a different request",
                taskId=task_id,
            )
        return existing, False
    if task_type.validate_create is not None:
        # Here, not before the row is written: a replay under its key answers with its task
        # whatever the account's data has become since. Raising rolls the row back.
        await task_type.validate_create(session, principal.account_id, model)
    await start(services, await services.temporal(), inp, conflict_ok=idempotency_key is not None)
    await session.commit()
    return task, True


async def record_created(
    session: AsyncSession,
    header: TaskHeader,
    max_retries: int,
    principal: Principal,
    *,
    request_digest: str | None = None,
    run_input: TaskInput | None = None,
) -> Task | None:
    """The new task's row, Pending, with its ``task.created`` event (the workflow's writes come
    after it). Returns the row as written, so the create can answer without reading it back,
    or None when a row with that id exists already. ``run_input``: what the caller starts the
    task's workflow with, for a retry to start it again."""
    write = ProjectionWrite(
        header=header,
        seq=0,
        status=TaskStatus.PENDING,
        event_type="task.created",
        occurred_at=datetime.now(UTC).isoformat(),
        max_retries=max_retries,
        actor=str(principal.account_id),
    )
    stored_input = _stored(run_input) if run_input is not None else None
    if not await apply_projection(
        session, write, request_digest=request_digest, run_input=stored_input
    ):
        return None
    at = datetime.fromisoformat(write.occurred_at)
    return Task(  # what the upsert's INSERT branch stores for this write
        task_id=header.task_id,
        account_id=uuid.UUID(header.account_id),
        type=header.type,
        name=header.name,
        description=header.description,
        category=header.category,
        priority=header.priority,
        parameters=header.parameters,
        status=write.status,
        progress=write.progress,
        status_message=None,
        results={},
        error_code=None,
        error_message=None,
        last_error=None,
        retry_count=0,
        max_retries=max_retries,
        seq=write.seq,
        request_digest=request_digest,
        run_input=stored_input,
        created_at=at,
        updated_at=at,
        last_activity=at,
        started_at=None,
        completed_at=None,
    )


async def start(
    services: Services, client: Client, inp: TaskInput, *, conflict_ok: bool = False
) -> None:
    """Starts the task's workflow: a new run of it, with the version of the workflows' code
    (``workflows.versions``: whatever ``inp`` was recorded with before, as on a retry)."""
    header = inp.header
    await client.start_workflow(
        header.type,
        replace(inp, version=versions.CURRENT),
        id=header.task_id,
        task_queue=services.settings.task_queue(header.category),
        priority=registry.temporal_priority(header.priority),
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SA_TASK_TYPE, header.type),
                SearchAttributePair(SA_ACCOUNT_ID, header.account_id),
                # Not Pending: the workflow's first act is to start the task, and an upsert
                # to InProgress then would cost it a visibility write (STATUS_ON_CHANGE).
                SearchAttributePair(SA_STATUS, str(TaskStatus.IN_PROGRESS)),
            ]
        ),
        memo={"name": header.name},
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=(
            WorkflowIDConflictPolicy.USE_EXISTING if conflict_ok else WorkflowIDConflictPolicy.FAIL
        ),
    )


async def retry_task(services: Services, session: AsyncSession, task: Task, by: str) -> None:
    """Runs a Failed or Cancelled task again as the same task, from its last run's input."""
    client = await services.temporal()
    # Its last run projected the outcome in its last step and closes a moment later;
    # Temporal starts no new run of the task while that one is open.
    if not await wait_closed(client, task.task_id, services.settings.task_retry_wait_seconds):
        raise TaskdriveError(
            ErrorCode.INVALID_TASK_STATE,
            f"task {task.task_id} is {task.status}, but its last run has not closed in "
            "Temporal yet; try again",
            taskId=task.task_id,
            status=task.status,
        )
    if task.run_input is not None:
        previous = value_to_type(TaskInput, task.run_input)
    else:  # created before tasks kept their input
        previous = await _first_input(client, task.task_id)
    seq = task.seq + 1
    state = TaskState(
        status=TaskStatus.PENDING,
        seq=seq,
        retry_count=task.retry_count,
        run=previous.state.run + 1,
    )
    inp = replace(previous, state=state)
    await apply_projection(
        session,
        ProjectionWrite(
            header=previous.header,
            seq=seq,
            status=TaskStatus.PENDING,
            event_type="task.retried",
            occurred_at=datetime.now(UTC).isoformat(),
            reason="retried",
            actor=by,
        ),
        run_input=_stored(inp),
    )
    await start(services, client, inp)
    await session.commit()


def _stored(inp: TaskInput) -> dict[str, Any]:
    """``inp`` as JSON, as the workflow gets it (Temporal's converter turns the dataclasses
    into JSON objects the same way; ``value_to_type`` reads them back)."""
    return asdict(inp)


async def _first_input(client: Client, task_id: str) -> TaskInput:
    handle = client.get_workflow_handle(task_id)
    try:
        async for event in handle.fetch_history_events():
            attributes = event.workflow_execution_started_event_attributes
            payloads = list(attributes.input.payloads)
            (inp,) = await client.data_converter.decode(payloads, [TaskInput])
            assert isinstance(inp, TaskInput)
            return inp
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    # The input lives in the history only, and Temporal drops a closed workflow's history
    # once the namespace's retention has passed.
    raise TaskdriveError(
        ErrorCode.TASK_GONE,
        f"task {task_id} cannot run again: Temporal no longer holds its history",
        taskId=task_id,
    )
