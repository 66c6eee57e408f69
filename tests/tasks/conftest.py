"""Fixtures the task tests share."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from taskdrive.settings import Settings
from tests.fixtures.app import api_client, worker_running
from tests.tasks.stored import Pools

KiB = 1024


@pytest.fixture(scope="module")
async def slow_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An API and a worker on their own task queues whose steps read 256 KiB/s (a file here
    takes a second), so a test can act while a task is midway."""
    slow = settings.model_copy(
        update={
            "task_queue_prefix": f"slow-{uuid.uuid4().hex[:8]}",
            "task_max_bytes_per_second": 256 * KiB,
        }
    )
    async with worker_running(slow), api_client(slow) as client:
        yield client


@pytest.fixture(scope="session")
def pools(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Pools:
    return Pools(settings, s3_endpoint, s3_bucket)
