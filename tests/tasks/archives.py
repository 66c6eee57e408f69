"""Helpers of the archive task tests: what the system holds, seen from outside, and archives
opened with the standard readers (zipfile, tarfile, zstandard), not ours."""

from __future__ import annotations

import io
import tarfile
import uuid
import zipfile
from typing import Any

import httpx
import zstandard
from sqlalchemy import create_engine, text

from taskdrive.db.engine import database_url
from taskdrive.settings import Settings
from tests.fixtures.app import S3_POOL_ID, local_pool_dir
from tests.fixtures.s3 import s3_client
from tests.tasking import create_task, upload_file, wait_task
from tests.tasks.stored import download

Account = tuple[uuid.UUID, dict[str, str]]
KiB = 1024
MiB = 1024 * KiB
POOLS = {"local": None, "s3": S3_POOL_ID}  # None: the default pool, local


class Storage:
    """Counts the objects in both pools (staging files of unfinished writes included) and an
    account's file records."""

    def __init__(self, settings: Settings, s3_endpoint: str, s3_bucket: str) -> None:
        self._local = local_pool_dir(settings)
        self._s3 = s3_client(s3_endpoint)
        self._bucket = s3_bucket
        self._database = database_url(settings)

    def objects(self) -> int:
        local = sum(1 for path in self._local.rglob("*") if path.is_file())
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket)
        in_s3 = sum(int(page.get("KeyCount", 0)) for page in pages)
        uploads = self._s3.list_multipart_uploads(Bucket=self._bucket).get("Uploads", [])
        return local + in_s3 + len(uploads)

    def files(self, account_id: uuid.UUID) -> int:
        engine = create_engine(self._database)
        try:
            with engine.connect() as conn:
                query = text("SELECT count(*) FROM files WHERE account_id = :a")
                count = conn.execute(query, {"a": account_id}).scalar_one()
        finally:
            engine.dispose()
        assert isinstance(count, int)
        return count


def unpacked(fmt: str, data: bytes) -> dict[str, bytes]:
    """The regular files of an archive, by name."""
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    if fmt == "tar.zst":  # tarfile reads no zstd before Python 3.14
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if fmt == "tar.gz" else "r:") as tar:
        files: dict[str, bytes] = {}
        for member in tar.getmembers():
            content = tar.extractfile(member)
            assert content is not None, member.name
            files[member.name] = content.read()
        return files


async def upload_all(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    files: list[tuple[str, bytes]],
    pool_id: uuid.UUID | None = None,
) -> list[str]:
    """Uploads each (name, bytes); returns the files' ids."""
    return [
        (await upload_file(api, headers, data, name=name, pool_id=pool_id))["id"]
        for name, data in files
    ]


async def compressed(
    api: httpx.AsyncClient, headers: dict[str, str], file_ids: list[str], **params: Any
) -> tuple[dict[str, Any], bytes]:
    """Runs FileCompress to Completed: (its results, the archive's bytes)."""
    task = await create_task(api, headers, "FileCompress", {"fileIds": file_ids, **params})
    done = await wait_task(api, headers, task["taskId"], "Completed")
    results: dict[str, Any] = done["results"]
    return results, await download(api, headers, results["resultFileId"])


async def midway(
    api: httpx.AsyncClient, headers: dict[str, str], type: str, parameters: dict[str, Any]
) -> str:
    """Creates a task and returns its id once it has made some progress."""
    task = await create_task(api, headers, type, parameters)
    await wait_task(api, headers, task["taskId"], lambda t: t["progress"] > 0)
    return str(task["taskId"])


async def ask(
    api: httpx.AsyncClient, headers: dict[str, str], task_id: str, action: str, status: str
) -> dict[str, Any]:
    """Pause, resume or cancel the task; returns it once it shows ``status``."""
    response = await api.post(f"/api/tasks/{task_id}/{action}", headers=headers)
    assert response.status_code == 202, response.text
    return await wait_task(api, headers, task_id, status)
