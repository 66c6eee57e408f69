"""What activities share in a worker process: settings, database sessions and storage pools.

The worker installs its ``Runtime`` in a context variable before it starts polling, so every
activity task it spawns inherits it; a task type's activities reach it through ``current()``
and can be plain functions registered by the type's module. (A context variable rather than a
global: the tests run several workers with different settings in one process.)
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from taskdrive.pools import PoolRegistry
from taskdrive.settings import Settings

if TYPE_CHECKING:
    from activities.task_logs import TaskLogSink


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pools: PoolRegistry
    task_logs: TaskLogSink | None = None


_current: ContextVar[Runtime | None] = ContextVar("taskdrive_runtime", default=None)


def install(runtime: Runtime | None) -> None:
    _current.set(runtime)


def installed() -> Runtime | None:
    return _current.get()


def current() -> Runtime:
    runtime = _current.get()
    if runtime is None:
        raise RuntimeError("no worker runtime installed (activities run inside worker.run)")
    return runtime
