"""What a client and an operator see of a file: its bytes and record through the API, and
whether a pool still holds its object (the local pool's folder, the S3 bucket)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from taskdrive.settings import Settings
from tests.fixtures.app import S3_POOL_ID, database, local_pool_dir
from tests.fixtures.s3 import s3_client

Account = tuple[uuid.UUID, dict[str, str]]
S3 = str(S3_POOL_ID)


class Pools:
    """Looks into the two pools of the suite from outside the system."""

    def __init__(self, settings: Settings, s3_endpoint: str, s3_bucket: str) -> None:
        self.local_id = str(settings.default_pool_id)
        self._local_dir = local_pool_dir(settings)
        self._s3 = s3_client(s3_endpoint)
        self._bucket = s3_bucket

    def holding(self, file_id: str) -> set[str]:
        """The ids of the pools holding an object for the file (uploads and moves keep a
        file's bytes at ``files/<id>`` in every pool)."""
        key = f"files/{file_id}"
        listed = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=key).get("Contents", [])
        in_s3 = any(entry.get("Key") == key for entry in listed)
        in_local = (self._local_dir / key).is_file()
        return {pool for pool, held in ((S3, in_s3), (self.local_id, in_local)) if held}


async def info(api: httpx.AsyncClient, headers: dict[str, str], file_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/files/{file_id}/info", headers=headers)
    assert response.status_code == 200, response.text
    cloud_file: dict[str, Any] = response.json()
    return cloud_file


async def download(api: httpx.AsyncClient, headers: dict[str, str], file_id: str) -> bytes:
    response = await api.get(f"/api/files/{file_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


async def assert_stored(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    pools: Pools,
    file_id: str,
    pool_id: str,
    data: bytes,
) -> dict[str, Any]:
    """The file is in ``pool_id`` for a client (its record, its bytes) and for an operator
    (that pool, and no other, holds its object); returns its record."""
    cloud_file = await info(api, headers, file_id)
    assert cloud_file["poolId"] == pool_id
    assert await download(api, headers, file_id) == data
    assert pools.holding(file_id) == {pool_id}
    return cloud_file


def note_relocation(
    settings: Settings, task_id: str, file_id: str, to_pool: str, to_key: str
) -> None:
    """The note a move or a rewrite writes before its new object (``activities.relocation``):
    from where the file's record points now, to ``to_key`` in ``to_pool``."""
    with database(settings) as conn:
        conn.execute(
            text(
                "INSERT INTO file_relocations"
                " (task_id, file_id, from_pool_id, from_key, to_pool_id, to_key, move)"
                " SELECT :task_id, id, pool_id, storage_key, :to_pool, :to_key,"
                " CAST(:move AS jsonb) FROM files WHERE id = :file_id"
            ),
            {
                "task_id": task_id,
                "file_id": file_id,
                "to_pool": to_pool,
                "to_key": to_key,
                "move": json.dumps({"fileId": file_id, "toPoolId": to_pool}),
            },
        )
