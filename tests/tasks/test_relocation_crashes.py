"""Crashes in the middle of a move, at each point one can happen, each followed by what
Temporal does next: the step runs again from the last heartbeat that reached it.

The step runs in the SDK's activity test environment over the real database and pools; a
"crash" ends the attempt at a heartbeat (that heartbeat never reaching Temporal), so nothing
after that point runs. Whatever the point, the file ends moved once, its bytes whole, in one
pool, and no file moved before the crash is copied again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities import runtime
from taskdrive.db.engine import make_engine, make_sessionmaker
from taskdrive.pools import PoolRegistry
from taskdrive.settings import Settings
from taskdrive.tasks import StepRequest, StepResult
from tasktypes.file_move import move_step
from tests.fixtures.app import local_pool_dir
from tests.tasking import upload_file
from tests.tasks.stored import S3, Account, Pools, assert_stored
from tests.uploading import random_bytes

KiB = 1024


class Crash(BaseException):
    """The worker dies: not an Exception, so no handler in the step turns it into an error."""


class Attempts:
    """Runs FileMove's step attempt after attempt, each from the last heartbeat before."""

    def __init__(self, request: StepRequest) -> None:
        self.request = request
        self.last: dict[str, Any] | None = None

    async def run(self, crash_at: int | None = None) -> StepResult:
        env = ActivityEnvironment()
        if self.last is not None:
            env.info = dataclasses.replace(env.info, heartbeat_details=[self.last])
        beats = 0

        def on_heartbeat(*details: Any) -> None:
            nonlocal beats
            beats += 1
            if beats == crash_at:
                raise Crash
            self.last = json.loads(json.dumps(details[0]))  # as Temporal keeps it

        env.on_heartbeat = on_heartbeat
        result: StepResult = await env.run(move_step, self.request)
        return result


@asynccontextmanager
async def worker_runtime(settings: Settings) -> AsyncIterator[None]:
    """What a worker process installs for its activities."""
    engine = make_engine(settings)
    pools = PoolRegistry.from_settings(settings)
    runtime.install(runtime.Runtime(settings, engine, make_sessionmaker(engine), pools))
    try:
        yield
    finally:
        runtime.install(None)
        await pools.close()
        await engine.dispose()


def _request(account_id: uuid.UUID, file_ids: list[str]) -> StepRequest:
    return StepRequest(
        task_id=f"crash-{uuid.uuid4()}",
        account_id=str(account_id),
        params={"fileIds": file_ids, "targetPoolId": S3},
    )


# The heartbeats of one file's move: 1 once the move is noted, 2 as its bytes are read, 3 at
# the checkpoint after it (the record switched, the source removed). Between the switch and
# the removal there is none: that crash is the third with the source object put back.
@pytest.mark.parametrize(
    ("crash_at", "source_back"),
    [
        pytest.param(1, False, id="noted"),
        pytest.param(2, False, id="copying"),
        pytest.param(3, True, id="switched"),
        pytest.param(3, False, id="source-removed"),
    ],
)
async def test_a_move_crashed_anywhere_ends_moved_once_on_the_next_attempt(
    api: httpx.AsyncClient,
    account: Account,
    pools: Pools,
    settings: Settings,
    crash_at: int,
    source_back: bool,
) -> None:
    account_id, headers = account
    data = random_bytes(3 * KiB)
    stored = await upload_file(api, headers, data)
    attempts = Attempts(_request(account_id, [stored["id"]]))
    async with worker_runtime(settings):
        with pytest.raises(Crash):
            await attempts.run(crash_at=crash_at)
        if source_back:
            (local_pool_dir(settings) / "files" / stored["id"]).write_bytes(data)
            assert pools.holding(stored["id"]) == {pools.local_id, S3}
        done = await attempts.run()
    assert done.done
    assert done.results["files"] == [
        {"fileId": stored["id"], "fromPoolId": pools.local_id, "toPoolId": S3, "size": len(data)}
    ]
    await assert_stored(api, headers, pools, stored["id"], S3, data)


async def test_files_moved_before_a_crash_are_not_copied_again(
    api: httpx.AsyncClient,
    account: Account,
    pools: Pools,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account_id, headers = account
    data = [random_bytes(KiB + n) for n in range(3)]
    files = [await upload_file(api, headers, d, name=f"c{n}.bin") for n, d in enumerate(data)]
    attempts = Attempts(_request(account_id, [f["id"] for f in files]))
    caplog.set_level(logging.INFO, logger="temporalio.activity")
    async with worker_runtime(settings):
        with pytest.raises(Crash):
            await attempts.run(crash_at=5)  # the second file's bytes are being read (1-3: c0)
        done = await attempts.run()
    copied = [r.getMessage().split(" (")[0] for r in caplog.records if "copying" in r.message]
    assert copied == ["copying c0.bin", "copying c1.bin", "copying c1.bin", "copying c2.bin"]
    assert [f["fileId"] for f in done.results["files"]] == [f["id"] for f in files]
    for cloud_file, original in zip(files, data, strict=True):
        await assert_stored(api, headers, pools, cloud_file["id"], S3, original)
