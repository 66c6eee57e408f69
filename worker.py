"""The Temporal worker: every workflow and activity, one task queue per category."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import uvloop
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import tasktypes  # noqa: F401  # importing it registers every task type
from activities import runtime
from activities.projection import ProjectionActivities
from activities.task_logs import TaskLogSink
from taskdrive import heap, registry
from taskdrive.db.engine import make_engine, make_sessionmaker
from taskdrive.pools import PoolRegistry
from taskdrive.settings import Settings, load_settings
from taskdrive.temporal import connect

log = logging.getLogger("taskdrive.worker")


def all_workflows() -> list[type]:
    return [t.workflow for t in registry.TASK_TYPES.values() if t.workflow is not None]


def type_activities() -> list[Callable[..., Any]]:
    # Deduplicated: types may share an activity (the moving types' cleanup).
    every = (fn for task_type in registry.TASK_TYPES.values() for fn in task_type.activities)
    return list(dict.fromkeys(every))


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """Temporal's sandbox for the test suite, none in production (``workflow_sandbox``).

    The sandbox does two things: it imports a workflow's module afresh for every run, so runs
    share no module state, and it fails a non-deterministic call (a clock, randomness, I/O)
    made by code it imported. Neither works on a module passed through, and every workflow
    here would have to be passed through to be affordable: re-importing a type's module for
    each run (its classes, its parameters model, Temporal's checks of its workflow definition)
    was about half of the worker's CPU for a small task (bench/tasks.py), and the sandbox's
    calls into each run (one per payload for its serialization context) most of the rest of
    its cost. Our workflow code keeps no module state. So the suite runs every workflow
    sandboxed, where a forbidden call fails the test, and a production worker runs the code
    the suite checked without the sandbox's cost.
    """
    if not settings.workflow_sandbox:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner()


def build_workers(
    settings: Settings, client: Client, activities: Sequence[Callable[..., Any]]
) -> list[Worker]:
    # Every category's queue runs every workflow and activity: a task created with another
    # category than its type's runs there, and its steps inherit the queue (and its limits).
    workflows = all_workflows()
    runner = workflow_runner(settings)
    return [
        Worker(
            client,
            task_queue=settings.task_queue(category),
            workflows=workflows,
            workflow_runner=runner,
            activities=activities,
            max_concurrent_activities=settings.concurrency(category),
            # Heartbeats carry pause and cancel to a running step: send them at least every
            # second, so a pause takes effect in about a second, not 80% of the timeout.
            max_heartbeat_throttle_interval=timedelta(seconds=1),
        )
        for category in sorted(registry.categories())
    ]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Runs until ``stop`` is set, then shuts the workers down before returning."""
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    pools = PoolRegistry.from_settings(settings)
    projection = ProjectionActivities(engine)
    activities: list[Callable[..., Any]] = [*projection.all(), *type_activities()]
    task_logs = TaskLogSink(sessions)
    task_logs.start()
    activity_logger = logging.getLogger("temporalio.activity")
    activity_logger.addHandler(task_logs)
    if activity_logger.getEffectiveLevel() > logging.INFO:
        activity_logger.setLevel(logging.INFO)  # task logs keep INFO whatever the console shows
    runtime.install(runtime.Runtime(settings, engine, sessions, pools, task_logs))
    client = await connect(settings)
    workers = build_workers(settings, client, activities)
    heap.freeze_startup()
    log.info("worker polling %s", ", ".join(w.task_queue for w in workers))
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())
            await stop.wait()
            # Shut down explicitly: a worker still running when the loop closes can crash the
            # interpreter at exit.
            await asyncio.gather(*(worker.shutdown() for worker in workers))
    finally:
        activity_logger.removeHandler(task_logs)
        await task_logs.stop()
        runtime.install(None)
        await pools.close()
        await engine.dispose()


def main() -> None:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    # uvloop: on asyncio's own loop, about a tenth of the worker's CPU per small task was the
    # loop itself (bench/tasks.py); each database round trip registers and drops a reader.
    uvloop.run(_main())


if __name__ == "__main__":
    main()
