"""The ``taskdrive`` command: ``up`` (the whole embedded system), ``api``, ``worker``,
``migrate`` and ``token``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from pydantic import SecretStr, ValidationError

from taskdrive.settings import MiB, Settings, load_settings

log = logging.getLogger("taskdrive.up")

# `up` starts the Temporal dev server unless TASKDRIVE_TEMPORAL_ADDRESS names a cluster; this
# forces the choice either way (1: a dev server on TASKDRIVE_TEMPORAL_ADDRESS, 0: no dev server).
API_READY_SECONDS = 60.0


class UsageError(Exception):
    """A configuration problem the user fixes; printed without a traceback, exit status 2."""


# --- small commands --------------------------------------------------------------------------


def _account(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def cmd_token(args: argparse.Namespace) -> int:
    from taskdrive.auth import issue_token

    token = issue_token(load_settings(), args.account, admin=args.admin, ttl=args.ttl)
    print(token)  # the only output on stdout, so `TOKEN=$(taskdrive token ...)` works
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from taskdrive.db.migrate import upgrade

    upgrade(load_settings())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import worker  # the repository's worker.py; heavy imports, so only for this command

    worker.main()
    exit_skipping_finalization(0)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from taskdrive import heap

    settings = load_settings()
    # Chunk bodies in flight and those kept for the digests, with room for a burst.
    heap.keep_cycled_memory(2 * settings.upload_hash_buffer_bytes + 64 * MiB)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level=settings.log_level.lower(),
        # Ctrl-C should not wait long on open connections (WebSockets, slow uploads).
        timeout_graceful_shutdown=3,
    )
    exit_skipping_finalization(0)


def exit_skipping_finalization(code: int) -> NoReturn:
    """Exits once everything is shut down, skipping interpreter finalization.

    The Temporal SDK's core threads can outlive finalization and abort the process with
    "PyGILState_Release ... finalizing" (temporalio/sdk-python#300); by now workers, clients,
    pools and engines are closed, so there is nothing left for finalization to do.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- up --------------------------------------------------------------------------------------


class _Stop:
    """SIGINT/SIGTERM/SIGHUP only set a flag: `up` checks it between start steps and waits on
    it while running, so a signal never lands in the middle of starting or stopping a service
    (a second Ctrl-C cannot cut the cleanup short either)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise _Interrupted


class _Interrupted(Exception):
    """A signal arrived while starting."""


def _child_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskdrive", *args]


def _wait_api(
    url: str, children: Sequence[tuple[str, subprocess.Popen[bytes]]], stop: _Stop
) -> bool:
    """Until the API answers at all (a 503 from /health still means it is serving), so the
    banner comes last; False if a child died, a signal came, or the API is slow (it may still
    come up: the supervision that follows tells)."""
    import httpx

    deadline = time.monotonic() + API_READY_SECONDS
    while time.monotonic() < deadline and not stop.is_set():
        if any(process.poll() is not None for _, process in children):
            return False
        try:
            httpx.get(url, timeout=2.0)
            return True
        except httpx.TransportError:
            stop.event.wait(0.2)  # pacing between probes; wakes at once on a signal
    if not stop.is_set():
        log.warning("the API has not answered at %s yet", url)
    return False


def _api_base(settings: Settings) -> str:
    host = settings.api_host
    return (
        f"http://[{host}]:{settings.api_port}"
        if ":" in host
        else f"http://{host}:{settings.api_port}"
    )


def _banner(settings: Settings, plan: _Plan) -> str:
    api = _api_base(settings)
    lines = [
        "",
        "taskdrive is up",
        f"  API              {api}   (docs at {api}/docs)",
    ]
    if plan.temporal:
        host = settings.temporal_address.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", ""):  # bound to every interface
            host = "127.0.0.1"
        lines.append(f"  Temporal Web UI  http://{host}:{settings.temporal_ui_port}")
    else:
        lines.append(f"  Temporal         {settings.temporal_address} (external)")
    lines.append(f"  Postgres         {'embedded' if plan.postgres else 'external'}")
    lines += [
        f"  data folder      {settings.data_dir}",
        "  a token          .venv/bin/taskdrive token --account "
        "$(python3 -c 'import uuid; print(uuid.uuid4())')",
        "",
        "Ctrl-C stops everything; `make up` again resumes the tasks in flight.",
        "",
    ]
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace) -> int:
    stop = _Stop()
    stop.install()  # first: from here on a signal is an orderly stop
    from taskdrive import embedded

    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # Every readiness probe and Alembic's plugin setup would log a line at INFO.
    for noisy in ("httpx", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = _Plan(temporal=settings.starts_embedded_temporal, postgres=settings.database_url is None)
    data_dir = settings.data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_dir": data_dir})
    # The API and the worker would both create the development signing key on first use.
    _ = settings.signing_key

    cleanups: list[tuple[str, Callable[[], None]]] = []  # run in reverse order
    failed = False
    try:
        settings = _start_services(settings, plan, stop, cleanups)
        children = _start_children(settings, cleanups)
        if _wait_api(f"{_api_base(settings)}/health", children, stop):
            print(_banner(settings, plan), flush=True)
        failed = _supervise(children, stop)
    except (_Interrupted, embedded.StartCancelled):
        pass  # a signal while starting: the cleanup below is the answer
    except embedded.EmbeddedError as exc:
        log.error("%s", exc)
        failed = True
    except Exception:
        if stop.is_set():
            # Ctrl-C also reaches the helpers `up` runs in its own group (initdb, pg_ctl).
            log.info("interrupted while starting")
        else:
            log.exception("taskdrive up failed")
            failed = True
    finally:
        if stop.signal_name:
            log.info("%s received; stopping", stop.signal_name)
        failed = _run_cleanups(cleanups) or failed
    log.info("stopped")
    return 1 if failed else 0


@dataclass(frozen=True)
class _Plan:
    """Which services `up` embeds (the others are external)."""

    temporal: bool
    postgres: bool


def _start_services(
    settings: Settings, plan: _Plan, stop: _Stop, cleanups: list[tuple[str, Callable[[], None]]]
) -> Settings:
    """Postgres, Temporal, migrations; returns the settings the children get. Every started
    service registers its stop in ``cleanups`` (Postgres before it starts, so even a failed
    start is cleaned up)."""
    from taskdrive import embedded
    from taskdrive.db.migrate import upgrade

    if plan.postgres:
        pgdata = settings.data_dir / "postgres"
        log.info("starting Postgres in %s", pgdata)
        cleanups.append(("postgres", lambda: embedded.stop_postgres(pgdata)))
        url, _ = embedded.start_postgres(settings.data_dir)
        settings = settings.model_copy(update={"database_url": SecretStr(url)})
    stop.check()
    if plan.temporal:
        log.info("starting the Temporal dev server on %s", settings.temporal_address)
        temporal = embedded.start_temporal(settings, cancelled=stop.is_set)
        cleanups.append(("temporal", lambda: embedded.stop_process(temporal, "temporal")))
    stop.check()
    log.info("migrating the database")
    upgrade(settings)
    stop.check()
    return settings


def _start_children(
    settings: Settings, cleanups: list[tuple[str, Callable[[], None]]]
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    from taskdrive import embedded

    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    cleanups.append(("api and worker", lambda: embedded.stop_processes(children)))
    env = _child_env(settings)
    for name in ("worker", "api"):
        # Own process groups: the terminal's Ctrl-C reaches only `up`, which stops the
        # children in order (API and worker before Temporal and Postgres).
        process = subprocess.Popen(_child_command(name), env=env, process_group=0)
        children.append((name, process))
    return children


def _run_cleanups(cleanups: list[tuple[str, Callable[[], None]]]) -> bool:
    """Stop what was started, newest first; True if a stop failed."""
    failed = False
    for name, cleanup in reversed(cleanups):
        log.info("stopping %s", name)
        try:
            cleanup()
        except Exception:
            log.exception("stopping %s failed", name)
            failed = True
    return failed


def _supervise(children: Sequence[tuple[str, subprocess.Popen[bytes]]], stop: _Stop) -> bool:
    """Wait for a signal (False) or a child's death (True)."""
    while not stop.event.is_set():
        for name, process in children:
            code = process.poll()
            # A child the signal raced us to is not a failure: check the flag again.
            if code is not None and not stop.event.is_set():
                log.error("the %s exited unexpectedly (status %s); stopping everything", name, code)
                return True
        stop.event.wait(0.5)  # wakes at once on a signal; the timeout paces the child checks
    return False


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["TASKDRIVE_DATA_DIR"] = str(settings.data_dir)
    env["TASKDRIVE_TEMPORAL_ADDRESS"] = settings.temporal_address
    if settings.database_url is not None:
        env["TASKDRIVE_DATABASE_URL"] = settings.database_url.get_secret_value()
    return env


# --- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskdrive", description="Durable tasks for file work on Temporal."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="run the whole system: embedded Postgres and Temporal, worker and API"
    )
    up.set_defaults(handler=cmd_up)

    api = commands.add_parser("api", help="run the API (uvicorn)")
    api.add_argument("--host", help="bind address (default: TASKDRIVE_API_HOST)")
    api.add_argument("--port", type=_positive_int, help="port (default: TASKDRIVE_API_PORT)")
    api.set_defaults(handler=cmd_api)

    worker = commands.add_parser("worker", help="run the Temporal worker")
    worker.set_defaults(handler=cmd_worker)

    migrate = commands.add_parser("migrate", help="migrate the database and mirror the pools")
    migrate.set_defaults(handler=cmd_migrate)

    token = commands.add_parser("token", help="print a signed JWT for an account")
    token.add_argument("--account", required=True, type=_account, help="account UUID")
    token.add_argument("--admin", action="store_true", help="a token that sees every account")
    token.add_argument("--ttl", type=_positive_int, help="lifetime in seconds")
    token.set_defaults(handler=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = handler(args)
    except UsageError as exc:
        print(f"taskdrive: {exc}", file=sys.stderr)
        code = 2
    except ValidationError as exc:  # settings from the environment
        print(f"taskdrive: invalid configuration: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
