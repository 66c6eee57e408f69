"""Signals and waits on task workflows, with Temporal's failures mapped to domain errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from taskdrive.errors import ErrorCode, TaskdriveError

log = logging.getLogger("taskdrive.api")
T = TypeVar("T")


async def signal(client: Client, task_id: str, name: str, arg: Any, *, required: bool) -> bool:
    """Signals the task's workflow. Returns False when it has already ended; raises when
    ``required`` (the caller cannot proceed without the signal) or Temporal is unreachable."""
    try:
        await client.get_workflow_handle(task_id).signal(name, arg)
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            if required:
                raise TaskdriveError(
                    ErrorCode.TASK_GONE, f"task {task_id} has already ended", taskId=task_id
                ) from exc
            return False
        if required:
            raise TaskdriveError(
                ErrorCode.SERVICE_UNAVAILABLE, f"Temporal did not take the signal: {exc}"
            ) from exc
        log.warning("signal %s to %s failed: %s", name, task_id, exc)
        return False


async def wait_closed(client: Client, task_id: str, wait_seconds: float) -> bool:
    """Whether the workflow's latest run has closed, however it ended, waiting up to
    ``wait_seconds`` for it. A workflow Temporal no longer holds (past the namespace's
    retention) has closed."""
    try:
        await asyncio.wait_for(client.get_workflow_handle(task_id).result(), wait_seconds)
    except TimeoutError:
        return False
    except WorkflowFailureError:
        pass  # failed, cancelled, terminated or timed out: closed all the same
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    return True


async def wait_result(
    client: Client, task_id: str, result_type: type[T], wait_seconds: float
) -> T | None:
    """The workflow's result, or None when it has not finished within ``wait_seconds``.

    A workflow that failed with a domain error raises it as a TaskdriveError.
    """
    handle = client.get_workflow_handle(task_id, result_type=result_type)
    try:
        return await asyncio.wait_for(handle.result(), wait_seconds)
    except TimeoutError:
        return None
    except WorkflowFailureError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError):
            code = ErrorCode.from_code(cause.type) or ErrorCode.UPLOAD_FAILED
            details = (
                cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            )
            raise TaskdriveError(code, cause.message, taskId=task_id, **details) from exc
        raise TaskdriveError(ErrorCode.UPLOAD_FAILED, str(cause or exc), taskId=task_id) from exc
