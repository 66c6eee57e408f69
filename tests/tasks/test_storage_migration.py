"""StorageMigration end to end: paused midway and resumed without copying a file again, and
the whole source pool of an account when no files are named."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx

from tests.fixtures.app import S3_POOL_ID, Auth
from tests.tasking import create_task, logs, pause_midway, upload_file, wait_task
from tests.tasks.stored import S3, Account, Pools, assert_stored, info
from tests.uploading import random_bytes

KiB = 1024


async def _copied(api: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> Counter[str]:
    """How many times the task's log says it copied each file, by name."""
    messages = await logs(api, headers, task_id)
    return Counter(m.split(" (")[0].removeprefix("copying ") for m in messages)


async def test_a_paused_migration_resumes_without_copying_a_migrated_file_again(
    slow_api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    data = {f"part{n}.bin": random_bytes(256 * KiB) for n in range(6)}  # a second each
    files = {name: await upload_file(slow_api, headers, d, name=name) for name, d in data.items()}
    ids = [f["id"] for f in files.values()]
    task = await create_task(
        slow_api,
        headers,
        "StorageMigration",
        {"sourcePoolId": pools.local_id, "targetPoolId": S3, "fileIds": ids},
    )
    task_id = task["taskId"]
    await pause_midway(slow_api, headers, task_id)

    # Midway: the files copied so far are in S3 (and only there), the rest still local.
    before = await _copied(slow_api, headers, task_id)
    assert 0 < len(before) < 6
    for name, cloud_file in files.items():
        where = {S3} if name in before else {pools.local_id}
        assert (await info(slow_api, headers, cloud_file["id"]))["poolId"] in where
        assert pools.holding(cloud_file["id"]) == where

    resumed = await slow_api.post(f"/api/tasks/{task_id}/resume", headers=headers)
    assert resumed.status_code == 202, resumed.text
    done = await wait_task(slow_api, headers, task_id, "Completed")
    assert done["results"]["migrated"] == 6
    assert done["results"]["bytes"] == 6 * 256 * KiB
    assert [f["fileId"] for f in done["results"]["files"]] == ids

    # Each file copied exactly once: none migrated before the pause was copied again.
    assert await _copied(slow_api, headers, task_id) == Counter(dict.fromkeys(data, 1))
    for name, cloud_file in files.items():
        await assert_stored(slow_api, headers, pools, cloud_file["id"], S3, data[name])


async def test_without_file_ids_every_live_file_of_the_account_in_the_source_migrates(
    api: httpx.AsyncClient, account: Account, auth: Auth, pools: Pools
) -> None:
    _, headers = account
    local = [await upload_file(api, headers, random_bytes(KiB), name=f"l{n}") for n in range(2)]
    in_s3 = await upload_file(api, headers, random_bytes(KiB), name="s3", pool_id=S3_POOL_ID)
    stranger = auth(uuid.uuid4())
    theirs = await upload_file(api, stranger, random_bytes(KiB), name="theirs")

    task = await create_task(
        api, headers, "StorageMigration", {"sourcePoolId": pools.local_id, "targetPoolId": S3}
    )
    done = await wait_task(api, headers, task["taskId"], "Completed")
    results = done["results"]
    assert (results["sourcePoolId"], results["targetPoolId"]) == (pools.local_id, S3)
    assert results["migrated"] == 2
    assert [f["fileId"] for f in results["files"]] == [f["id"] for f in local]
    assert await _copied(api, headers, task["taskId"]) == Counter({"l0": 1, "l1": 1})
    for cloud_file in [*local, in_s3]:
        assert (await info(api, headers, cloud_file["id"]))["poolId"] == S3
        assert pools.holding(cloud_file["id"]) == {S3}
    # Another account's files stay where they are.
    assert (await info(api, stranger, theirs["id"]))["poolId"] == pools.local_id
    assert pools.holding(theirs["id"]) == {pools.local_id}

    # Nothing left in the source: a second migration has nothing to do.
    again = await create_task(
        api, headers, "StorageMigration", {"sourcePoolId": pools.local_id, "targetPoolId": S3}
    )
    nothing = await wait_task(api, headers, again["taskId"], "Completed")
    assert (nothing["results"]["migrated"], nothing["results"]["files"]) == (0, [])
