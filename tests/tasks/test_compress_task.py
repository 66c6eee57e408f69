"""FileCompress through the REST API: every format on both pools, checked with the standard
readers; naming, target pool and bundle; bad parameters; pause and cancel midway."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from taskdrive.settings import Settings
from tests.fixtures.app import S3_POOL_ID
from tests.tasking import closed_cancelled, wait_task
from tests.tasks.archives import (
    POOLS,
    Account,
    KiB,
    Storage,
    ask,
    compressed,
    midway,
    unpacked,
    upload_all,
)
from tests.tasks.stored import download, info
from tests.uploading import random_bytes, sha256

SUFFIXES = {"zip": ".zip", "tar.gz": ".tar.gz", "tar.zst": ".tar.zst"}
CONTENT_TYPES = {
    "zip": "application/zip",
    "tar.gz": "application/gzip",
    "tar.zst": "application/zstd",
}


@pytest.fixture
def storage(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Storage:
    return Storage(settings, s3_endpoint, s3_bucket)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("fmt", SUFFIXES)
async def test_compress(api: httpx.AsyncClient, account: Account, fmt: str, pool: str) -> None:
    _, headers = account
    text = b"the quick brown fox jumps over the lazy dog\n" * 2000
    noise = random_bytes(300 * KiB)
    other = b"another readme\n" * 100
    # A name used twice, and one that Windows tools would read as a drive.
    files = [("readme.txt", text), ("C:noise.bin", noise), ("readme.txt", other)]
    file_ids = await upload_all(api, headers, files, POOLS[pool])

    results, archive = await compressed(api, headers, file_ids, compressionFormat=fmt)

    assert unpacked(fmt, archive) == {
        "readme.txt": text,
        "C_noise.bin": noise,
        "readme (2).txt": other,
    }
    assert results["format"] == fmt
    assert results["entries"] == 3
    assert results["compressedSize"] == len(archive)
    assert results["originalSize"] == len(text) + len(noise) + len(other)
    assert results["compressionRatio"] == round(results["originalSize"] / len(archive), 3)
    stored = await info(api, headers, results["resultFileId"])
    source = await info(api, headers, file_ids[0])
    assert stored["name"] == f"archive{SUFFIXES[fmt]}"
    assert stored["poolId"] == source["poolId"]  # the first file's pool by default
    assert (stored["size"], stored["hash"]) == (len(archive), sha256(archive))
    assert stored["contentType"] == CONTENT_TYPES[fmt]


async def test_compress_names_the_archive_and_puts_it_where_asked(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    data = random_bytes(100 * KiB)
    (file_id,) = await upload_all(api, headers, [("report.pdf", data)])
    bundle = str(uuid.uuid4())

    results, archive = await compressed(
        api,
        headers,
        [file_id],
        compressionFormat="tar.zst",
        compressionLevel=19,
        outputFileName="backup",
        targetPoolId=str(S3_POOL_ID),
        bundleId=bundle,
    )
    assert unpacked("tar.zst", archive) == {"report.pdf": data}
    stored = await info(api, headers, results["resultFileId"])
    assert (stored["name"], stored["poolId"], stored["bundleId"]) == (
        "backup.tar.zst",
        str(S3_POOL_ID),
        bundle,
    )

    # One file and no name: the archive is named after the file.
    results, _ = await compressed(api, headers, [file_id])
    assert (await info(api, headers, results["resultFileId"]))["name"] == "report.pdf.zip"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"compressionLevel": 10}, "parameters.compressionLevel"),  # zip by default: 0-9
        ({"compressionFormat": "tar.gz", "compressionLevel": 0}, "parameters.compressionLevel"),
        ({"compressionFormat": "tar.zst", "compressionLevel": 23}, "parameters.compressionLevel"),
        ({"compressionFormat": "rar"}, "parameters.compressionFormat"),
        ({"outputFileName": "  "}, "parameters.outputFileName"),
        ({"poolId": str(uuid.uuid4()), "targetPoolId": str(uuid.uuid4())}, "parameters"),
    ],
)
async def test_bad_parameters_are_refused_at_create(
    api: httpx.AsyncClient, account: Account, params: dict[str, Any], field: str
) -> None:
    _, headers = account
    response = await api.post(
        "/api/tasks",
        json={"type": "FileCompress", "parameters": {"fileIds": [str(uuid.uuid4())], **params}},
        headers=headers,
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in body["details"]["errors"]] == [field]
    if field == "parameters.compressionLevel":
        assert "out of range" in body["details"]["errors"][0]["message"]


async def test_pause_leaves_no_partial_archive_and_resume_starts_it_again(
    slow_api: httpx.AsyncClient, account: Account, storage: Storage
) -> None:
    _, headers = account
    # At 256 KiB/s a file takes a second: the pause lands seconds before the end.
    files = [(f"part{n}.bin", random_bytes(256 * KiB)) for n in range(5)]
    file_ids = await upload_all(slow_api, headers, files)
    objects = storage.objects()
    task_id = await midway(slow_api, headers, "FileCompress", {"fileIds": file_ids})

    await ask(slow_api, headers, task_id, "pause", "Paused")
    assert storage.objects() == objects  # no half-written archive, not even a staging file

    done = await ask(slow_api, headers, task_id, "resume", "Completed")
    archive = await download(slow_api, headers, done["results"]["resultFileId"])
    assert unpacked("zip", archive) == dict(files)
    assert storage.objects() == objects + 1


@pytest.mark.parametrize("through", ["api", "temporal"])
async def test_cancel_midway_leaves_no_archive(
    slow_api: httpx.AsyncClient,
    account: Account,
    storage: Storage,
    temporal_client: Client,
    through: str,
) -> None:
    """Cancelled through the REST API, or by an operator in the Web UI (a Temporal
    cancellation, which reaches the workflow in the middle of a step): the same cleanup."""
    account_id, headers = account
    files = [(f"part{n}.bin", random_bytes(256 * KiB)) for n in range(6)]
    file_ids = await upload_all(slow_api, headers, files, S3_POOL_ID)
    before = (storage.objects(), storage.files(account_id))
    parameters = {"fileIds": file_ids, "compressionFormat": "tar.gz"}
    task_id = await midway(slow_api, headers, "FileCompress", parameters)

    if through == "api":
        view = await ask(slow_api, headers, task_id, "cancel", "Cancelled")
    else:
        handle = temporal_client.get_workflow_handle(task_id)
        await handle.cancel()
        view = await wait_task(slow_api, headers, task_id, "Cancelled")
        await closed_cancelled(temporal_client, task_id)
    assert view["progress"] < 100
    assert view["results"] == {}
    assert (storage.objects(), storage.files(account_id)) == before
