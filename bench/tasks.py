"""Task overhead benchmark: N NoOp tasks through the whole system, beside N bare workflows.

``python -m bench.tasks [--count N]`` starts the system as ``bench.upload`` does (Temporal dev
server, Postgres, worker and API as subprocesses over a temp data folder), then, in
``--repeat`` rounds taking turns to go first:

* tasks: N NoOp tasks (default 200) created through ``POST /api/tasks``, ``--parallel``
  requests in flight, timed from the first create until Postgres shows all of them Completed
  (the projection is what clients see): until the last of its ``task.completed``
  notifications (LISTEN), then counted in the table;
* raw: N workflows of ``bench.raw_noop`` (one no-op activity), the same number of starts in
  flight, on their own task queue of the same dev server, served by a worker in this process
  with the activity concurrency the system's worker has for NoOp's category and the SDK's
  default workflow runner (the sandbox); timed from the first start until every result is in.
* raw, unsandboxed: the same on a worker without the sandbox, as the system's worker runs
  (``worker.workflow_runner``). Reported beside the rest, so the share of the ratio that comes
  from leaving the sandbox out is in plain view; the ratio itself is against raw Temporal as
  the SDK runs it by default.

The round with the median ratio counts (``bench.rounds``); the three sides take turns to go
first. Printed: its tasks/s and workflows/s, the unsandboxed comparison, and a last line
ending with ``ratio <tasks/raw>``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import psycopg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from bench.client import REQUEST_TIMEOUT, BenchError
from bench.raw_noop import RawNoOp, nothing
from bench.rounds import Round, median_round, rounds_note
from bench.upload import READY_TIMEOUT, System, note, print_figures, running_system
from taskdrive.auth import issue_token
from taskdrive.db.engine import make_engine, psycopg_dsn
from taskdrive.db.models import Task
from taskdrive.db.projection import NOTIFY_CHANNEL
from taskdrive.statuses import TaskStatus
from tasktypes.noop import NO_OP

ROUND_TIMEOUT = 600.0  # bounds a hang, asserts nothing
WARM_UP = 20  # tasks and workflows of each kind before the timed rounds

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    count: int
    parallel: int
    repeat: int


async def in_flight(count: int, parallel: int, call: Callable[[], Awaitable[T]]) -> list[T]:
    """``call()`` ``count`` times, at most ``parallel`` at once."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> T:
        async with gate:
            return await call()

    return await asyncio.gather(*(one() for _ in range(count)))


class Side(Protocol):
    async def run(self, count: int, parallel: int) -> float:
        """Runs ``count`` of its kind, ``parallel`` starts in flight; returns how many a second."""


class Completions:
    """Counts each account's tasks ended, from the projection's notifications: a round ends
    as its last task's Completed write commits, not at the next poll of the table."""

    def __init__(self) -> None:
        self._ended: dict[tuple[str, str], int] = collections.Counter()
        self._changed = asyncio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def listening(cls, dsn: str) -> AsyncIterator[Completions]:
        completions = cls()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            reader = asyncio.create_task(completions._read(conn))
            try:
                yield completions
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for notification in conn.notifies():
            event = json.loads(notification.payload)
            if event["type"] in _ENDINGS:
                self._ended[event["accountId"], event["type"]] += 1
                self._changed.set()

    async def wait(self, account: uuid.UUID, count: int) -> None:
        """Returns once ``count`` of the account's tasks are Completed."""
        while self._ended[str(account), _COMPLETED] < count:
            if failed := sum(self._ended[str(account), ending] for ending in _FAILURES):
                raise BenchError(f"{failed} NoOp task(s) ended other than Completed")
            await self._changed.wait()
            self._changed.clear()


_COMPLETED = "task.completed"
_FAILURES = ("task.failed", "task.cancelled", "task.expired")
_ENDINGS = (_COMPLETED, *_FAILURES)


@dataclass(frozen=True)
class TaskSide:
    client: httpx.AsyncClient
    system: System
    engine: AsyncEngine
    completions: Completions

    async def run(self, count: int, parallel: int) -> float:
        """NoOp tasks a second, create to Completed in the projection."""
        account = uuid.uuid4()
        headers = {"Authorization": f"Bearer {issue_token(self.system.settings, account)}"}
        url = f"{self.system.api_base}/api/tasks"

        async def create() -> None:
            response = await self.client.post(
                url, json={"type": NO_OP.name, "parameters": {}}, headers=headers
            )
            if response.status_code != 201:
                raise BenchError(f"create answered {response.status_code}: {response.text}")

        began = time.monotonic()
        await in_flight(count, parallel, create)
        await self.completions.wait(account, count)
        rate = count / (time.monotonic() - began)
        if (completed := await self._completed(account)) != count:
            raise BenchError(f"{completed} of {count} NoOp tasks are Completed in the table")
        return rate

    async def _completed(self, account: uuid.UUID) -> int:
        """The account's Completed tasks in the table (a failed one ended ``wait`` already)."""
        done = select(func.count()).where(
            Task.account_id == account, Task.status == TaskStatus.COMPLETED
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(done)).scalar_one())


@dataclass(frozen=True)
class RawSide:
    client: Client
    task_queue: str

    async def run(self, count: int, parallel: int) -> float:
        """Bare workflows a second, start to result."""

        async def start() -> WorkflowHandle[RawNoOp, None]:
            return await self.client.start_workflow(
                RawNoOp.run, id=f"raw-{uuid.uuid4()}", task_queue=self.task_queue
            )

        began = time.monotonic()
        handles = await in_flight(count, parallel, start)
        await asyncio.gather(*(handle.result() for handle in handles))
        return count / (time.monotonic() - began)


async def run(options: Options) -> list[str]:
    async with contextlib.AsyncExitStack() as stack:
        system = await stack.enter_async_context(running_system())
        settings = system.settings
        await asyncio.to_thread(system.api.wait_http_ok, f"{system.api_base}/health", READY_TIMEOUT)
        engine = make_engine(settings)
        stack.push_async_callback(engine.dispose)
        client = await stack.enter_async_context(
            httpx.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False)
        )
        temporal = await Client.connect(
            settings.temporal_address, namespace=settings.temporal_namespace
        )
        concurrency = settings.concurrency(NO_OP.category)
        raw_queue, bare_queue = (f"{settings.task_queue_prefix}-{q}" for q in ("raw", "bare"))
        runners: list[tuple[str, WorkflowRunner]] = [
            (raw_queue, SandboxedWorkflowRunner()),  # the SDK's default
            (bare_queue, UnsandboxedWorkflowRunner()),
        ]
        for queue, runner in runners:
            raw_worker = Worker(
                temporal,
                task_queue=queue,
                workflows=[RawNoOp],
                activities=[nothing],
                max_concurrent_activities=concurrency,
                workflow_runner=runner,
            )
            await stack.enter_async_context(raw_worker)
        completions = await stack.enter_async_context(Completions.listening(psycopg_dsn(settings)))
        tasks = TaskSide(client, system, engine, completions)
        raw, bare = RawSide(temporal, raw_queue), RawSide(temporal, bare_queue)
        note("warming up")  # connections, imports, the first workflows and activities
        for warm in (tasks, raw, bare):
            await warm.run(WARM_UP, options.parallel)
        task_rates: list[float] = []
        raw_rates: list[float] = []
        bare_rates: list[float] = []
        sides: list[tuple[Side, list[float]]] = [
            (tasks, task_rates),
            (raw, raw_rates),
            (bare, bare_rates),
        ]
        for round_ in range(1, options.repeat + 1):
            first = round_ % len(sides)
            for side, rates in sides[first:] + sides[:first]:
                async with asyncio.timeout(ROUND_TIMEOUT):
                    rates.append(await side.run(options.count, options.parallel))
            note(
                f"round {round_}/{options.repeat}: tasks {task_rates[-1]:.1f}/s, "
                f"raw {raw_rates[-1]:.1f}/s, raw unsandboxed {bare_rates[-1]:.1f}/s"
            )
    rounds = [Round(t, r) for t, r in zip(task_rates, raw_rates, strict=True)]
    unsandboxed = [Round(t, b) for t, b in zip(task_rates, bare_rates, strict=True)]
    median, median_bare = median_round(rounds), median_round(unsandboxed)
    return [
        f"tasks: {options.count} NoOp tasks, {options.parallel} creates in flight, create to "
        f"Completed in the projection: {median.measured:.1f} tasks/s ({rounds_note(rounds)})",
        f"raw: {options.count} workflows of one no-op activity, {options.parallel} starts in "
        f"flight, start to result, the SDK's default runner (the sandbox): "
        f"{median.baseline:.1f} workflows/s (the same round)",
        f"against raw workflows without the sandbox, as the system's worker runs them: "
        f"{median_bare.measured:.1f} tasks/s, {median_bare.baseline:.1f} workflows/s, "
        f"ratio {median_bare.ratio:.2f} ({rounds_note(unsandboxed)})",
        f"tasks: {median.measured:.1f}/s, raw Temporal: {median.baseline:.1f}/s, "
        f"ratio {median.ratio:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Task overhead: NoOp tasks vs bare workflows.")
    parser.add_argument("--count", type=int, default=200, help="tasks per round (default 200)")
    parser.add_argument("--parallel", type=int, default=10, help="creates/starts in flight")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the median counts")
    args = parser.parse_args()
    options = Options(
        count=max(1, args.count), parallel=max(1, args.parallel), repeat=max(1, args.repeat)
    )
    print_figures(lambda: run(options))


if __name__ == "__main__":
    main()
