"""ThreadPipe: a blocking worker in a thread, connected to the event loop by bounded channels.

The archive writer and reader run their (de)compression here: the loop feeds inputs in large
batches, the worker emits outputs, and both sides block (or await) when the other falls behind,
so memory stays bounded and there is one thread hop per batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import (
    AsyncGenerator,
    Callable,
    Iterator,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Generic, TypeVar, cast

_In = TypeVar("_In")
_Out = TypeVar("_Out")

# The worker: pulls inputs from a blocking iterator, pushes outputs through ``emit`` (which blocks
# while the consumer is behind). Its exceptions reach whoever iterates the ThreadPipe.
Work = Callable[[Iterator[_In], Callable[[_Out], None]], None]


class _PipeClosed(BaseException):
    """Unwinds the worker when the loop side has gone away.

    A BaseException, like CancelledError, so that library code between us and the worker (tarfile,
    stream-unzip) cannot mistake it for a data error and swallow or translate it.
    """


class _InputFailed(BaseException):
    """Unwinds the worker when the input iterator raised; carries that exception to the consumer."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True, slots=True)
class _InputError:
    error: BaseException


@dataclass(frozen=True, slots=True)
class _Finished:
    error: BaseException | None


class _Marker:
    __slots__ = ()


_END_OF_INPUT: Final = _Marker()
_CLOSE: Final = _Marker()


class ThreadPipe(Generic[_In, _Out]):
    """Run ``work`` in a dedicated thread, feeding it ``source`` and iterating what it emits.

    The loop side pulls ``source`` in a task and queues at most ``input_depth`` items for the
    worker; the worker blocks in ``emit`` while ``output_depth`` items wait for the consumer. So
    memory is bounded by the item sizes the two sides choose, and each item costs one thread hop.
    A dedicated thread rather than the default executor: the worker lives as long as the whole
    stream and must not starve short ``to_thread`` calls elsewhere.

    Use as ``async with pipe: async for item in pipe: ...``. Leaving the block early (break,
    exception, cancellation) stops the source task and the worker; the worker's exception, or
    the source's, is raised from the iteration.
    """

    def __init__(
        self,
        source: AsyncGenerator[_In, None],
        work: Work[_In, _Out],
        *,
        input_depth: int,
        output_depth: int,
        name: str,
    ) -> None:
        self._source = source
        self._work = work
        self._name = name
        self._inputs: queue.SimpleQueue[_In | _Marker | _InputError] = queue.SimpleQueue()
        self._input_credits = asyncio.Semaphore(input_depth)
        self._outputs: asyncio.Queue[_Out | _Finished] = asyncio.Queue()
        self._output_credits = threading.Semaphore(output_depth)
        self._output_depth = output_depth
        self._closing = threading.Event()
        self._finished = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ThreadPipe[_In, _Out]:
        self._loop = asyncio.get_running_loop()
        self._pump = self._loop.create_task(self._run_pump(), name=f"{self._name}-input")
        threading.Thread(target=self._run_worker, name=self._name, daemon=True).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> ThreadPipe[_In, _Out]:
        return self

    async def __anext__(self) -> _Out:
        if self._finished:
            raise StopAsyncIteration
        item = await self._outputs.get()
        if isinstance(item, _Finished):
            self._finished = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        self._output_credits.release()
        return item

    async def aclose(self) -> None:
        """Stop the source task and the worker, and wait until the worker has let go."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        if self._pump is not None:
            self._pump.cancel()
            # wait() rather than await: the pump's CancelledError is expected, ours must not be
            # swallowed if we are cancelled meanwhile.
            await asyncio.wait([self._pump])
        # Wake the worker wherever it blocks: waiting for input, or for output credit.
        self._inputs.put(_CLOSE)
        self._output_credits.release(self._output_depth + 1)
        while not self._finished and self._loop is not None:
            item = await self._outputs.get()
            if isinstance(item, _Finished):
                self._finished = True

    # -- loop side

    async def _run_pump(self) -> None:
        try:
            async for item in self._source:
                await self._input_credits.acquire()
                self._inputs.put(item)
        except Exception as error:
            self._inputs.put(_InputError(error))
        else:
            self._inputs.put(_END_OF_INPUT)
        finally:
            await self._source.aclose()

    # -- worker side

    def _call_soon(self, callback: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            raise _PipeClosed from None

    def _pull(self) -> Iterator[_In]:
        while True:
            item = self._inputs.get()
            if item is _END_OF_INPUT:
                return
            if item is _CLOSE:
                raise _PipeClosed
            if isinstance(item, _InputError):
                raise _InputFailed(item.error)
            self._call_soon(self._input_credits.release)
            yield cast(_In, item)

    def _emit(self, item: _Out) -> None:
        self._output_credits.acquire()
        if self._closing.is_set():
            raise _PipeClosed
        self._call_soon(self._outputs.put_nowait, item)

    def _run_worker(self) -> None:
        error: BaseException | None = None
        try:
            self._work(self._pull(), self._emit)
        except _PipeClosed:
            pass
        except _InputFailed as failed:
            error = failed.error
        except BaseException as raised:
            error = raised
        try:
            self._call_soon(self._outputs.put_nowait, _Finished(error))
        except _PipeClosed:
            pass
