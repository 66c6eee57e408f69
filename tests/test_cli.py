"""The ``taskdrive`` command, run as a real process: ``token`` and the whole system, ``up``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from taskdrive.auth import verify_token
from taskdrive.settings import S3PoolConfig, Settings
from tests.fixtures.processes import (
    REPO,
    ManagedProcess,
    child_env,
    free_port,
    settings_env,
    taskdrive_process,
    wait_gone,
)


def run_taskdrive(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskdrive", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- token -----------------------------------------------------------------------------------


@pytest.mark.parametrize("admin", [False, True])
def test_token_prints_one_verifiable_line(tmp_path: Path, admin: bool) -> None:
    account = uuid.uuid4()
    flags = ["--admin"] if admin else []
    result = run_taskdrive(
        "token", "--account", str(account), *flags, env=child_env(DATA_DIR=str(tmp_path))
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    # The development key the command generated into the data folder is the one the API uses.
    principal = verify_token(Settings(data_dir=tmp_path), lines[0])
    assert principal.account_id == account
    assert principal.is_admin is admin


def test_token_rejects_a_bad_account(tmp_path: Path) -> None:
    result = run_taskdrive(
        "token", "--account", "not-a-uuid", env=child_env(DATA_DIR=str(tmp_path))
    )

    assert result.returncode != 0
    assert result.stdout == ""
    assert "not-a-uuid" in result.stderr


# --- settings as environment -----------------------------------------------------------------


def test_settings_env_recreates_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Settings(
        data_dir=tmp_path,
        database_url=SecretStr("postgresql://u:p%40ss@db.example/taskdrive"),
        temporal_address="127.0.0.1:17233",
        task_queue_prefix="test-x",
        jwt_secret=SecretStr("s3cret"),
        pools=[
            S3PoolConfig(
                id=uuid.uuid4(),
                name="s3",
                endpoint="http://127.0.0.1:9000",
                bucket="bucket",
                access_key=SecretStr("ak"),
                secret_key=SecretStr("sk"),
            )
        ],
        upload_min_chunk_size=1,
        activity_heartbeat_timeout_seconds=2.5,
    )
    for key in list(os.environ):
        if key.startswith("TASKDRIVE_"):
            monkeypatch.delenv(key)
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)

    # SecretStr compares its secret, so equal dumps mean the secrets came through revealed.
    assert Settings().model_dump() == original.model_dump()


# --- up --------------------------------------------------------------------------------------


def up_env(data_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    env = child_env(
        DATA_DIR=str(data_dir),
        API_HOST="127.0.0.1",
        API_PORT=str(ports["api"]),
        # An address alone would mean "an external cluster"; EMBEDDED=1 puts the dev server on it.
        TEMPORAL_ADDRESS=f"127.0.0.1:{ports['temporal']}",
        TEMPORAL_EMBEDDED="1",
        TEMPORAL_UI_PORT=str(ports["ui"]),
    )
    return env, ports


def cmdlines(processes: list[Any]) -> list[str]:
    lines = []
    for process in processes:
        try:
            lines.append(" ".join(process.cmdline()))
        except Exception:
            lines.append(f"pid {process.pid} (gone)")
    return lines


def start_up(data_dir: Path, log_path: Path) -> tuple[ManagedProcess, dict[str, int]]:
    env, ports = up_env(data_dir)
    up = taskdrive_process("up", env=env, log_path=log_path, sweep=str(data_dir))
    return up, ports


def assert_nothing_left(up: ManagedProcess) -> None:
    seen = up.descendants()
    left = wait_gone(seen)
    assert left == [], f"left running: {cmdlines(left)}\n{up.log_tail()}"
    assert up.leftovers() == [], f"left running: {cmdlines(up.leftovers())}\n{up.log_tail()}"


def test_up_runs_the_system_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data_dir = (tmp_path / "data").resolve()
    up, ports = start_up(data_dir, tmp_path / "up-1.log")
    with up:
        up.wait_http_ok(f"http://127.0.0.1:{ports['api']}/health")
        up.wait_log("taskdrive is up")  # the banner, printed once the API answers
        ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=30)
        assert ui.status_code == 200
        up.remember_descendants()
        running = cmdlines(up.descendants())
        assert any("server start-dev" in line for line in running), running
        assert any("postgres" in line and str(data_dir) in line for line in running), running
        assert any(line.endswith("taskdrive worker") for line in running), running
        assert any(line.endswith("taskdrive api") for line in running), running

        up.send_group(signal.SIGINT)  # what Ctrl-C in the terminal does

        assert up.wait() == 0, up.log_tail()
        assert_nothing_left(up)

    # A second run picks up the data folder: same signing key, same database and Temporal state.
    secret = (data_dir / "jwt-secret").read_text()
    assert (data_dir / "temporal" / "temporal.db").is_file()
    up, ports = start_up(data_dir, tmp_path / "up-2.log")
    with up:
        up.wait_http_ok(f"http://127.0.0.1:{ports['api']}/health")
        assert (data_dir / "jwt-secret").read_text() == secret
        up.remember_descendants()

        up.send_group(signal.SIGTERM)

        assert up.wait() == 0, up.log_tail()
        assert_nothing_left(up)


def test_up_stops_everything_when_a_child_dies(tmp_path: Path) -> None:
    data_dir = (tmp_path / "data").resolve()
    up, ports = start_up(data_dir, tmp_path / "up.log")
    with up:
        up.wait_http_ok(f"http://127.0.0.1:{ports['api']}/health")
        up.remember_descendants()
        [worker] = [
            p
            for p, line in zip(up.descendants(), cmdlines(up.descendants()), strict=True)
            if line.endswith("taskdrive worker")
        ]

        worker.kill()

        assert up.wait() != 0, up.log_tail()
        assert "worker exited unexpectedly" in up.log()
        assert_nothing_left(up)
