"""BulkOperation end to end: delete, move and copy, each file an item with its own outcome."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.fixtures.app import Auth
from tests.tasking import create_task, upload_file, wait_task
from tests.tasks.stored import S3, Account, Pools, assert_stored, info
from tests.uploading import random_bytes

KiB = 1024


async def _bulk(
    api: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]
) -> dict[str, Any]:
    task = await create_task(api, headers, "BulkOperation", params)
    done = await wait_task(api, headers, task["taskId"], "Completed")
    assert done["progress"] == 100.0
    results: dict[str, Any] = done["results"]
    return results


def _failed(item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "status": "failed",
        "errorCode": "FILE_NOT_FOUND",
        "error": f"file {item_id} not found",
    }


async def test_delete_removes_records_and_bytes_and_reports_a_missing_file(
    api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    first, second = [await _upload(api, headers, n) for n in range(2)]
    missing = str(uuid.uuid4())
    results = await _bulk(
        api,
        headers,
        {"operationType": "delete", "targetIds": [first["id"], missing, second["id"]]},
    )
    assert results == {
        "operationType": "delete",
        "succeeded": 2,
        "failed": 1,
        "items": [
            {"id": first["id"], "status": "ok"},
            _failed(missing),
            {"id": second["id"], "status": "ok"},
        ],
    }
    for cloud_file in (first, second):
        gone = await api.get(f"/api/files/{cloud_file['id']}/info", headers=headers)
        assert gone.status_code == 404
        assert pools.holding(cloud_file["id"]) == set()


async def test_move_moves_and_rebundles_and_reports_a_missing_file(
    api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    data = [random_bytes(KiB + n) for n in range(2)]
    local = await upload_file(api, headers, data[0])
    already = await upload_file(api, headers, data[1], pool_id=uuid.UUID(S3))
    missing = str(uuid.uuid4())
    bundle = str(uuid.uuid4())
    results = await _bulk(
        api,
        headers,
        {
            "operationType": "move",
            "targetIds": [local["id"], missing, already["id"]],
            "operationParameters": {"targetPoolId": S3, "targetBundleId": bundle},
        },
    )
    assert (results["succeeded"], results["failed"]) == (2, 1)
    assert results["items"] == [
        {"id": local["id"], "status": "ok", "fromPoolId": pools.local_id, "toPoolId": S3},
        _failed(missing),
        {"id": already["id"], "status": "ok", "fromPoolId": S3, "toPoolId": S3},
    ]
    for cloud_file, original in zip((local, already), data, strict=True):
        moved = await assert_stored(api, headers, pools, cloud_file["id"], S3, original)
        assert moved["bundleId"] == bundle


async def test_copy_makes_new_files_and_leaves_another_accounts_file_alone(
    api: httpx.AsyncClient, account: Account, auth: Auth, pools: Pools
) -> None:
    _, headers = account
    data = random_bytes(3 * KiB)
    mine = await upload_file(api, headers, data, name="original.bin")
    stranger = auth(uuid.uuid4())
    theirs = await upload_file(api, stranger, random_bytes(KiB))
    results = await _bulk(
        api,
        headers,
        {
            "operationType": "copy",
            "targetIds": [mine["id"], theirs["id"]],
            "operationParameters": {"targetPoolId": S3},
        },
    )
    assert (results["succeeded"], results["failed"]) == (1, 1)
    copied, refused = results["items"]
    assert refused == _failed(theirs["id"])
    assert (copied["id"], copied["status"], copied["poolId"]) == (mine["id"], "ok", S3)

    assert copied["newFileId"] != mine["id"]
    copy = await assert_stored(api, headers, pools, copied["newFileId"], S3, data)
    assert (copy["name"], copy["hash"]) == ("original.bin", mine["hash"])
    # The original stays where it was, and so does the other account's file.
    await assert_stored(api, headers, pools, mine["id"], pools.local_id, data)
    assert (await info(api, stranger, theirs["id"]))["poolId"] == pools.local_id
    listed = await api.get(f"/api/files/{theirs['id']}/info", headers=headers)
    assert listed.status_code == 404


async def test_an_unknown_target_pool_fails_the_task_before_any_item(
    api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    stored = await _upload(api, headers, 0)
    task = await create_task(
        api,
        headers,
        "BulkOperation",
        {
            "operationType": "copy",
            "targetIds": [stored["id"]],
            "operationParameters": {"targetPoolId": str(uuid.uuid4())},
        },
    )
    failed = await wait_task(api, headers, task["taskId"], "Failed")
    assert failed["errorCode"] == "POOL_NOT_FOUND"
    assert pools.holding(stored["id"]) == {pools.local_id}


async def _upload(api: httpx.AsyncClient, headers: dict[str, str], n: int) -> dict[str, Any]:
    return await upload_file(api, headers, random_bytes(KiB + n), name=f"f{n}.bin")
