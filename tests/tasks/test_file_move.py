"""FileMove end to end: bytes to another pool and back, verified, the source object gone."""

from __future__ import annotations

import uuid

import httpx
from temporalio.client import Client

from activities.files import storage_key
from taskdrive.settings import Settings
from tests.fixtures.app import (
    S3_POOL_ID,
    Auth,
    api_client,
    local_pool_dir,
    workflows_only,
)
from tests.tasking import (
    cancel_unanswered,
    create_task,
    logs,
    pending_activity,
    upload_file,
    wait_task,
)
from tests.tasks.stored import S3, Account, Pools, assert_stored, info, note_relocation
from tests.tasks.test_task_lifecycle import VanishingFile
from tests.uploading import random_bytes

KiB = 1024
MiB = 1024 * KiB


async def _move(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    file_ids: list[str],
    target: str,
    bundle: str | None = None,
    **fields: object,
) -> str:
    """Creates a FileMove task; returns its id."""
    params = {"fileIds": file_ids, "targetPoolId": target}
    if bundle is not None:
        params["targetBundleId"] = bundle
    task = await create_task(api, headers, "FileMove", params, **fields)
    task_id: str = task["taskId"]
    return task_id


async def test_a_move_to_s3_and_back_keeps_the_bytes_and_leaves_no_source(
    api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    # 9 MiB: past one 8 MiB part, so the copy into S3 is a multipart upload.
    data = [random_bytes(9 * MiB), random_bytes(3 * KiB)]
    files = [await upload_file(api, headers, d, name=f"m{n}.bin") for n, d in enumerate(data)]
    ids = [f["id"] for f in files]
    bundle = str(uuid.uuid4())

    done = await wait_task(api, headers, await _move(api, headers, ids, S3, bundle), "Completed")
    assert done["results"]["files"] == [
        {"fileId": f["id"], "fromPoolId": pools.local_id, "toPoolId": S3, "size": len(d)}
        for f, d in zip(files, data, strict=True)
    ]
    for file_id, original in zip(ids, data, strict=True):
        moved = await assert_stored(api, headers, pools, file_id, S3, original)
        assert moved["bundleId"] == bundle

    back = await _move(api, headers, ids, pools.local_id)
    done = await wait_task(api, headers, back, "Completed")
    assert [(f["fromPoolId"], f["toPoolId"]) for f in done["results"]["files"]] == [
        (S3, pools.local_id)
    ] * 2
    for file_id, original in zip(ids, data, strict=True):
        moved = await assert_stored(api, headers, pools, file_id, pools.local_id, original)
        assert moved["bundleId"] == bundle  # kept: the move named none
    copied = [m.split(" (")[0] for m in await logs(api, headers, back)]
    assert copied == ["copying m0.bin", "copying m1.bin"]


async def test_a_move_whose_source_is_away_for_a_while_is_retried_then_done(
    api: httpx.AsyncClient,
    account: Account,
    pools: Pools,
    settings: Settings,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    _, headers = account
    data = random_bytes(3 * KiB)
    stored = await upload_file(api, headers, data, pool_id=S3_POOL_ID)
    away = VanishingFile(settings, s3_endpoint, s3_bucket, stored["id"])
    away.hide()  # the storage "goes away" ...
    task_id = await _move(api, headers, [stored["id"]], pools.local_id, maxRetries=6)
    await wait_task(api, headers, task_id, lambda t: t["retryCount"] >= 1)
    assert (await info(api, headers, stored["id"]))["poolId"] == S3  # nothing switched
    away.restore()  # ... and comes back

    done = await wait_task(api, headers, task_id, "Completed", deadline=120)
    assert done["results"]["files"][0]["toPoolId"] == pools.local_id
    await assert_stored(api, headers, pools, stored["id"], pools.local_id, data)


async def test_a_move_within_the_files_pool_only_rebundles(
    api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    data = random_bytes(2 * KiB)
    stored = await upload_file(api, headers, data)
    bundle = str(uuid.uuid4())
    task_id = await _move(api, headers, [stored["id"]], pools.local_id, bundle)
    await wait_task(api, headers, task_id, "Completed")
    assert await logs(api, headers, task_id) == []  # nothing copied
    moved = await assert_stored(api, headers, pools, stored["id"], pools.local_id, data)
    assert moved["bundleId"] == bundle


async def test_an_unknown_target_pool_fails_the_task_and_moves_nothing(
    api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    data = random_bytes(KiB)
    stored = await upload_file(api, headers, data)
    task_id = await _move(api, headers, [stored["id"]], str(uuid.uuid4()))
    failed = await wait_task(api, headers, task_id, "Failed")
    assert (failed["errorCode"], failed["retryCount"]) == ("POOL_NOT_FOUND", 0)
    await assert_stored(api, headers, pools, stored["id"], pools.local_id, data)


async def test_another_accounts_files_are_not_found(
    api: httpx.AsyncClient, account: Account, auth: Auth, pools: Pools
) -> None:
    _, headers = account
    stranger = auth(uuid.uuid4())
    theirs = await upload_file(api, stranger, random_bytes(KiB))
    mine = await upload_file(api, headers, random_bytes(KiB))
    for task_type, params in [
        ("FileMove", {"targetPoolId": S3}),
        ("StorageMigration", {"sourcePoolId": pools.local_id, "targetPoolId": S3}),
    ]:
        task = await create_task(
            api, headers, task_type, {"fileIds": [mine["id"], theirs["id"]], **params}
        )
        failed = await wait_task(api, headers, task["taskId"], "Failed")
        assert failed["errorCode"] == "FILE_NOT_FOUND"
        assert theirs["id"] in failed["errorMessage"]
    # All or nothing: the names are checked before any file moves.
    for file_id in (mine["id"], theirs["id"]):
        assert pools.holding(file_id) == {pools.local_id}
    assert (await info(api, stranger, theirs["id"]))["poolId"] == pools.local_id


async def test_bad_parameters_are_refused_at_create(
    api: httpx.AsyncClient, account: Account, pools: Pools
) -> None:
    _, headers = account
    some = [str(uuid.uuid4())]
    cases: list[tuple[str, dict[str, object], set[str]]] = [
        ("FileMove", {"fileIds": some}, {"parameters.targetPoolId"}),
        ("FileMove", {"fileIds": ["nope"], "targetPoolId": S3}, {"parameters.fileIds.0"}),
        ("FileMove", {"fileIds": [], "targetPoolId": S3}, {"parameters.fileIds"}),
        ("StorageMigration", {"sourcePoolId": S3, "targetPoolId": S3}, {"parameters"}),
        ("StorageMigration", {"sourcePoolId": S3}, {"parameters.targetPoolId"}),
        ("BulkOperation", {"operationType": "move", "targetIds": some}, {"parameters"}),
        (
            "BulkOperation",
            {"operationType": "move", "targetIds": some, "operationParameters": {}},
            {"parameters"},
        ),
        (
            "BulkOperation",
            {"operationType": "delete", "targetIds": some, "operationParameters": {"x": 1}},
            {"parameters.operationParameters.x"},
        ),
        (
            "BulkOperation",
            {
                "operationType": "delete",
                "targetIds": some,
                "operationParameters": {"targetPoolId": pools.local_id},
            },
            {"parameters"},
        ),
        (
            "BulkOperation",
            {"operationType": "rename", "targetIds": some},
            {"parameters.operationType"},
        ),
    ]
    for task_type, params, fields in cases:
        response = await api.post(
            "/api/tasks", json={"type": task_type, "parameters": params}, headers=headers
        )
        assert response.status_code == 400, (task_type, params, response.text)
        body = response.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert {e["field"] for e in body["details"]["errors"]} == fields, (params, body)


async def test_a_move_whose_worker_died_unanswered_leaves_no_stray_copy_when_cancelled(
    api: httpx.AsyncClient,
    settings: Settings,
    account: Account,
    pools: Pools,
    temporal_client: Client,
) -> None:
    """What a run that died mid-move leaves: the move noted, the copy in the target pool, the
    record not switched yet, and no word from the step. Staged for real: a worker that runs
    workflows and no step takes the task, so its step waits unanswered; the note and the copy
    are put where the dying run would have left them; the cancel is taken by that worker too,
    and a full worker joins for the cleanup."""
    _, headers = account
    data = random_bytes(3 * KiB)
    stored = await upload_file(api, headers, data, pool_id=S3_POOL_ID)
    idle = settings.model_copy(update={"task_queue_prefix": f"idle-{uuid.uuid4().hex[:8]}"})
    local = str(settings.default_pool_id)
    async with api_client(idle) as idle_api:
        async with workflows_only(idle, temporal_client):
            task_id = await _move(idle_api, headers, [stored["id"]], local)
            await pending_activity(temporal_client, task_id, "FileMove.move_files")
        key = storage_key(stored["id"])
        copy = local_pool_dir(settings) / key
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(data)
        note_relocation(settings, task_id, stored["id"], local, key)
        assert pools.holding(stored["id"]) == {S3, local}
        cleanup = "relocation.settle_moves"
        await cancel_unanswered(idle_api, headers, idle, temporal_client, task_id, cleanup)
    await assert_stored(api, headers, pools, stored["id"], S3, data)
