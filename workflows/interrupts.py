"""Pause, resume and cancel as they arrive, for every task workflow.

The signal handlers only record who asked and why; the lifecycle (``workflows.lifecycle``)
acts on that at its safe points, so the order of events is the order in history and a replay
takes the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from taskdrive.statuses import TaskStatus
    from taskdrive.tasks import SIGNAL_CANCEL, SIGNAL_PAUSE, SIGNAL_RESUME, LifecycleSignal


class Cancelled(Exception):
    """Ends the task Cancelled, at the safe point where the cancel was noticed."""


class TaskExpired(Exception):
    """Raised by a type to end its task Expired (an upload left idle too long); cleanup runs
    first, as after a cancel. A pause outlasting ``pause_timeout`` raises it too."""


class Interrupts:
    """The lifecycle's base: the pending pause or cancel, and waits that they break."""

    def __init__(self) -> None:
        self._status = TaskStatus.PENDING
        self._paused: LifecycleSignal | None = None
        self._resumed: LifecycleSignal | None = None
        self._cancel: LifecycleSignal | None = None

    @property
    def interrupted(self) -> bool:
        """A pause or a cancel is waiting to be acted on."""
        return self._paused is not None or self._cancel is not None

    async def wait_until(
        self, condition: Callable[[], bool], at_most: timedelta | None = None
    ) -> bool:
        """Waits for ``condition`` (a signal's effect), a pause or a cancel; False if
        ``at_most`` passed first. Call ``checkpoint()`` next: it acts on the pause or cancel."""
        if at_most is not None and at_most <= timedelta(0):
            return condition()
        try:
            await workflow.wait_condition(lambda: condition() or self.interrupted, timeout=at_most)
        except TimeoutError:
            return False
        return True

    @workflow.signal(name=SIGNAL_PAUSE)
    def pause(self, asked: LifecycleSignal) -> None:
        if not self._status.is_terminal:
            self._paused = asked

    @workflow.signal(name=SIGNAL_RESUME)
    def resume(self, asked: LifecycleSignal) -> None:
        if self._paused is not None or self._status == TaskStatus.PAUSED:
            self._paused = None
            self._resumed = asked

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, asked: LifecycleSignal) -> None:
        if not self._status.is_terminal and self._cancel is None:
            self._cancel = asked
