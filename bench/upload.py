"""Upload benchmark: 1 GiB through the API on the local pool, beside a bare endpoint.

``python -m bench.upload [--size-mib N]`` starts its own system (Temporal dev server, Postgres,
worker and API as subprocesses, a temp data folder) and the bare ASGI endpoint of
``bench.baseline_app`` under the same uvicorn options, then sends the same bytes to both with
the same client code: 8 MiB chunks, 4 in flight, raw bodies. The API is timed from create to
Completed with the hash verified; the baseline (no create, no complete) from the first chunk to
the last answer. Also printed: the API's peak RSS per upload (it must not grow with the file),
both servers' minor page faults per upload (the baseline runs with the allocator settings of
``BASELINE_ALLOCATOR_ENV``, so it pays none the API does not) and the multipart/form-data
figure. The last line ends with ``ratio <api/baseline>``.

The full-size uploads run in rounds of two, the API's and the baseline's back to back, taking
turns to go first so that both uploads of a round follow the same kind of upload (see
``measure``); ``--repeat`` rounds for raw bodies and as many for multipart. For each, the round
with the median ratio is reported (``bench.rounds``).
Every timed upload starts after ``sync``, so no earlier upload's writeback lands in it, and
after a scratch file of its size was written and removed beside its target
(``bench.machine.prime_page_cache``), so that every upload meets the same kind of memory.
MB/s are 10^6 bytes per second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import statistics
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from bench.baseline_app import DIR_ENV
from bench.client import (
    REQUEST_TIMEOUT,
    BenchError,
    Payload,
    api_upload,
    baseline_upload,
)
from bench.machine import files_let_go, minor_faults, peak_rss, peak_rss_reset, prime_page_cache
from bench.rounds import Round, median_round, rounds_note
from taskdrive.auth import issue_token
from taskdrive.db.migrate import upgrade
from taskdrive.embedded import load_pgserver
from taskdrive.settings import LocalPoolConfig, Settings
from tests.fixtures.processes import ManagedProcess, ProcessFailed, child_env, free_port
from tests.fixtures.services import start_temporal_env

MiB = 1024 * 1024
MB = 1_000_000
# glibc's allocator settings for the bare endpoint. By default its small heap is trimmed back
# to the OS as the request bodies' pieces are freed and faulted in again for the next ones:
# about 80,000 minor page faults per GiB, and some tenth of its speed. Setting any of these
# turns off glibc's dynamic thresholds, so all three are set. The API runs as `taskdrive api`
# does, which keeps its own cycled memory the same way (``taskdrive.heap``). Each run prints
# both servers' page faults (see ``measure``).
BASELINE_ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(64 * MiB),
    "MALLOC_TRIM_THRESHOLD_": str(1024 * MiB),
    "MALLOC_TOP_PAD_": str(64 * MiB),
}
# The body of each round's API upload, cycled: with rounds starting by turns with the API's
# upload and the baseline's, each body is measured both after an upload of the API's and after
# one of the baseline's.
ROUND_BODIES = (False, True, True, False)  # True: multipart/form-data
READY_TIMEOUT = 120.0
STOP_GRACE = 15.0


class BaselineProcess(ManagedProcess):
    """``python -m bench.baseline_app <args>`` with ManagedProcess's group handling and log."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(args, env, log_path)
        self.args = [sys.executable, "-m", "bench.baseline_app", *args]


def _stop(process: ManagedProcess) -> None:
    """SIGTERM first (uvicorn and the worker shut down cleanly), SIGKILL what is left."""
    try:
        if process.poll() is None:
            process.terminate()
            process.wait(STOP_GRACE)
    except ProcessFailed:
        pass  # it hung and was killed; the run is over anyway
    finally:
        process.kill()


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Options:
    size: int
    rss_size: int
    chunk_size: int
    parallel: int
    repeat: int
    timeout: float


def note(text: str) -> None:
    """Progress on stderr; stdout carries the figures only."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class System:
    """The system under measurement, its servers running: see ``running_system``."""

    settings: Settings
    env: dict[str, str]  # the servers' environment
    folder: Path  # a temp folder for the run, removed afterwards
    worker: ManagedProcess
    api: ManagedProcess
    api_base: str


@contextlib.asynccontextmanager
async def running_system() -> AsyncIterator[System]:
    """Temporal dev server, Postgres, worker and API (subprocesses) over a temp data folder;
    all stopped and removed on exit. When the body fails, the end of the worker's and the
    API's logs is printed first."""
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="taskdrive-bench-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)

        temporal = await start_temporal_env()
        stack.push_async_callback(temporal.shutdown)
        postgres = await asyncio.to_thread(
            load_pgserver().get_server, tmp / "pgdata", cleanup_mode="delete"
        )
        stack.callback(postgres.cleanup)

        settings = Settings(
            data_dir=tmp / "data",
            database_url=SecretStr(str(postgres.get_uri())),
            temporal_address=temporal.client.service_client.config.target_host,
            task_queue_prefix=f"bench-{uuid.uuid4().hex[:8]}",
        )
        await asyncio.to_thread(upgrade, settings)
        _ = settings.signing_key  # created once here, before two processes race to create it
        env = child_env(settings)
        api_port = free_port(settings.api_host)
        logs = tmp / "logs"

        worker = ManagedProcess(["worker"], env, logs / "worker.log").start()
        stack.callback(_stop, worker)
        api = ManagedProcess(["api", "--port", str(api_port)], env, logs / "api.log").start()
        stack.callback(_stop, api)
        try:
            yield System(settings, env, tmp, worker, api, f"http://{settings.api_host}:{api_port}")
        except Exception:  # a failure, not an interruption: show what the servers said
            for name, process in (("worker", worker), ("api", api)):
                print(f"--- {name} log (end) ---\n{process.log_tail(30)}", file=sys.stderr)
            raise


async def run(options: Options) -> list[str]:
    lines: list[str] = []
    async with running_system() as system:
        settings, env, api, api_base = system.settings, system.env, system.api, system.api_base
        baseline_port = free_port(settings.api_host)
        baseline_dir = system.folder / "baseline"
        # Same host and log level as the API (`taskdrive api` reads both from the settings).
        server_args = ["--host", settings.api_host, "--log-level", settings.log_level.lower()]
        baseline = BaselineProcess(
            [*server_args, "--port", str(baseline_port)],
            {**env, DIR_ENV: str(baseline_dir), **BASELINE_ALLOCATOR_ENV},
            system.folder / "logs" / "baseline.log",
        ).start()
        try:
            baseline_base = f"http://{settings.api_host}:{baseline_port}"
            await asyncio.to_thread(api.wait_http_ok, f"{api_base}/health", READY_TIMEOUT)
            await asyncio.to_thread(baseline.wait_http_ok, f"{baseline_base}/health", READY_TIMEOUT)
            async with asyncio.timeout(options.timeout):
                target = Baseline(baseline_base, baseline_dir, baseline.pid)
                lines = await measure(options, settings, api, api_base, target)
        except Exception:  # running_system shows the worker's and the API's logs
            print(f"--- baseline log (end) ---\n{baseline.log_tail(30)}", file=sys.stderr)
            raise
        finally:
            _stop(baseline)
    return lines


@dataclass(frozen=True)
class ApiRun:
    rate: float  # MB/s
    peak_rss: int  # bytes
    faults: int  # minor page faults during the upload


@dataclass(frozen=True)
class BaselineRun:
    rate: float  # MB/s
    faults: int


@dataclass(frozen=True)
class Baseline:
    base: str  # where it listens
    folder: Path  # where it writes
    pid: int


async def measure(
    options: Options, settings: Settings, api: ManagedProcess, api_base: str, baseline: Baseline
) -> list[str]:
    size, chunk, parallel = options.size, options.chunk_size, options.parallel
    # Every upload has fresh random bytes, so one account never meets its own file again.
    headers = {"Authorization": f"Bearer {issue_token(settings, uuid.uuid4())}"}
    limits = httpx.Limits(max_connections=parallel, max_keepalive_connections=parallel)
    # Both targets' files go once measured: on a VM, writing into page cache that still holds
    # earlier files can cost several times the kernel time of writing into recycled pages
    # (measured here: 0.3 to 2.8 s of system time for the same 1 GiB of pwrite + fdatasync),
    # so keeping files would make each round's cost depend on what the previous ones left.
    (pool,) = [p for p in settings.all_pools if p.id == settings.default_pool_id]
    assert isinstance(pool, LocalPoolConfig), "the benchmark measures the local pool"
    pool_root = pool.path
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits, trust_env=False) as client:

        async def on_api(payload_size: int, *, multipart: bool) -> ApiRun:
            payload = Payload.random(payload_size, chunk)
            await asyncio.to_thread(prime_page_cache, pool_root, payload_size)
            # The previous upload's dirty pages are written back now, not during this one.
            await asyncio.to_thread(os.sync)
            peak_rss_reset(api.pid)
            faults = minor_faults(api.pid)
            seconds, file_id = await api_upload(
                client, api_base, headers, payload, parallel=parallel, multipart=multipart
            )
            if api.poll() is not None:
                raise BenchError(f"the API exited with {api.poll()}")
            faults = minor_faults(api.pid) - faults
            for stored in pool_root.rglob(file_id):
                stored.unlink()
            await files_let_go(api.pid, pool_root)
            return ApiRun(payload_size / seconds / MB, peak_rss(api.pid), faults)

        async def on_baseline(payload_size: int) -> BaselineRun:
            payload = Payload.random(payload_size, chunk)
            await asyncio.to_thread(prime_page_cache, baseline.folder, payload_size)
            await asyncio.to_thread(os.sync)
            faults = minor_faults(baseline.pid)
            seconds = await baseline_upload(
                client, baseline.base, headers, payload, parallel=parallel
            )
            faults = minor_faults(baseline.pid) - faults
            for written in baseline.folder.iterdir():
                written.unlink()
            await files_let_go(baseline.pid, baseline.folder)
            return BaselineRun(payload_size / seconds / MB, faults)

        # Warm-up: connections, imports and code paths (multipart too), the first workflow.
        note("warming up")
        warm = min(size, 4 * chunk)
        await on_baseline(warm)
        await on_api(warm, multipart=False)
        await on_api(warm, multipart=True)
        small = await on_api(options.rss_size, multipart=False)
        note(f"{options.rss_size // MiB} MiB: api {small.rate:.1f} MB/s")

        # Rounds of two uploads back to back, the API's and the baseline's: each its own
        # comparison, since the machine may be shared. Both uploads of a round follow the same
        # kind, so that whatever an upload leaves behind weighs on both alike: each round starts
        # with the kind the one before ended with (the warm-up ends with the API's). In a trial
        # run, before ``files_let_go``, uploads right after one of the API's ran a tenth slower
        # (the API's 700 to 760 against 810 to 820 MB/s, the baseline's 910 to 980 against 1050
        # to 1070).
        bases: dict[bool, list[BaselineRun]] = {False: [], True: []}  # by the round's body
        apis: dict[bool, list[ApiRun]] = {False: [], True: []}  # True: multipart/form-data
        api_last = True
        bodies = itertools.islice(itertools.cycle(ROUND_BODIES), 2 * options.repeat)
        for round_, as_form in enumerate(bodies, start=1):
            if api_last:
                api_run, base_run = await on_api(size, multipart=as_form), await on_baseline(size)
            else:
                base_run, api_run = await on_baseline(size), await on_api(size, multipart=as_form)
            api_last = not api_last
            apis[as_form].append(api_run)
            bases[as_form].append(base_run)
            note(
                f"round {round_}/{2 * options.repeat}: "
                f"{'multipart' if as_form else 'api'} {api_run.rate:.1f}, "
                f"baseline {base_run.rate:.1f} MB/s"
            )

    raws, multiparts = apis[False], apis[True]
    raw_rounds = [Round(r.rate, b.rate) for r, b in zip(raws, bases[False], strict=True)]
    multipart_rounds = [Round(m.rate, b.rate) for m, b in zip(multiparts, bases[True], strict=True)]
    raw, multipart = median_round(raw_rounds), median_round(multipart_rounds)
    mib = size // MiB
    return [
        f"upload: {mib} MiB in {chunk // MiB} MiB chunks, {parallel} in flight, local pool, "
        f"create to Completed with the hash verified ({rounds_note(raw_rounds)})",
        f"api peak RSS (VmHWM): {small.peak_rss / MiB:.1f} MiB for {options.rss_size // MiB} MiB, "
        f"{max(run.peak_rss for run in raws) / MiB:.1f} MiB for {mib} MiB, "
        f"{max(run.peak_rss for run in multiparts) / MiB:.1f} MiB for {mib} MiB multipart",
        # A yardstick that pays costs the API does not would flatter the ratio.
        f"minor page faults per {mib} MiB upload (median): "
        f"api {statistics.median(run.faults for run in raws):.0f}, "
        f"baseline {statistics.median(run.faults for run in bases[False]):.0f}",
        f"upload (multipart/form-data): api {multipart.measured:.1f} MB/s, "
        f"baseline {multipart.baseline:.1f} MB/s, ratio {multipart.ratio:.2f} "
        f"({rounds_note(multipart_rounds)})",
        f"upload: api {raw.measured:.1f} MB/s, baseline {raw.baseline:.1f} MB/s, "
        f"ratio {raw.ratio:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Upload throughput: the API vs a bare endpoint.")
    parser.add_argument("--size-mib", type=int, default=1024, help="upload size (default 1024)")
    parser.add_argument(
        "--rss-mib", type=int, default=256, help="the smaller upload whose peak RSS is compared"
    )
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the median round counts")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="bound on the measurements, seconds"
    )
    args = parser.parse_args()
    options = Options(
        size=args.size_mib * MiB,
        rss_size=min(args.rss_mib, args.size_mib) * MiB,
        chunk_size=args.chunk_mib * MiB,
        parallel=args.parallel,
        repeat=max(1, args.repeat),
        timeout=args.timeout,
    )

    print_figures(lambda: run(options))


def print_figures(bench: Callable[[], Awaitable[list[str]]]) -> None:
    """Runs ``bench`` to its end and prints the lines it returns; Ctrl-C and SIGTERM stop it,
    and what it started, cleanly (exit status 130)."""

    async def main_task() -> list[str]:
        # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers are stopped too.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await bench()

    try:
        lines = asyncio.run(main_task())
    except (asyncio.CancelledError, KeyboardInterrupt):
        note("interrupted; everything it started is stopped")
        sys.exit(130)
    for line in lines:
        print(line, flush=True)


if __name__ == "__main__":
    main()
