"""The local pool keeps a staging file open between the chunk writes of an upload; these tests
observe, through this process's open descriptors, that it never keeps one it should not: a
removed staging file's disk space must come back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from taskdrive.pools import LocalPool, UploadNotFound, UploadTarget
from taskdrive.settings import LocalPoolConfig
from tests.pools.test_pools import chunk, pieces, read_all
from tests.uploading import poll_until

CHUNK = 64 * 1024
DATA = os.urandom(3 * CHUNK + 17)


def descriptors_of(path: Path) -> int:
    """How many of this process's descriptors point at ``path`` (removed or not)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        count += target.removesuffix(" (deleted)") == str(path)
    return count


pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


async def begin(pool: LocalPool, key: str) -> tuple[UploadTarget, Path]:
    target = await pool.begin_upload(key, len(DATA), CHUNK)
    return target, pool.staging_path(key)


async def test_chunk_writes_of_an_upload_share_one_descriptor_until_it_finishes(
    local_pool_config: LocalPoolConfig,
) -> None:
    pool = LocalPool(local_pool_config)
    try:
        target, staging = await begin(pool, "files/shared")
        for index in range(4):  # three full chunks and a short last one
            await pool.write_chunk(target, index, pieces(chunk(DATA, target, index)))
            assert descriptors_of(staging) == 1

        await pool.finish_upload(target)

        assert descriptors_of(staging) == descriptors_of(pool.object_path(target.key)) == 0
        assert await read_all(pool, target.key) == DATA
    finally:
        await pool.close()


async def test_an_upload_removed_by_another_process_is_refused_and_its_file_let_go(
    local_pool_config: LocalPoolConfig,
) -> None:
    api, worker = LocalPool(local_pool_config), LocalPool(local_pool_config)
    try:
        target, staging = await begin(api, "files/cancelled")
        await api.write_chunk(target, 0, pieces(chunk(DATA, target, 0)))

        await worker.abort_upload(target)  # the upload was cancelled elsewhere

        with pytest.raises(UploadNotFound):
            await api.write_chunk(target, 1, pieces(chunk(DATA, target, 1)))
        assert descriptors_of(staging) == 0
    finally:
        await api.close()
        await worker.close()


async def test_an_idle_staging_file_is_closed(local_pool_config: LocalPoolConfig) -> None:
    pool = LocalPool(local_pool_config, idle_close_seconds=0.05)
    try:
        target, staging = await begin(pool, "files/idle")
        await pool.write_chunk(target, 0, pieces(chunk(DATA, target, 0)))

        async def view() -> dict[str, Any]:
            return {"open": descriptors_of(staging)}

        await poll_until(view, lambda seen: seen["open"] == 0, deadline=10, what="idle close")
        # Reopened for the next chunk: the upload goes on.
        await pool.write_chunk(target, 1, pieces(chunk(DATA, target, 1)))
        assert descriptors_of(staging) == 1
    finally:
        await pool.close()
    assert descriptors_of(staging) == 0


async def test_aborting_here_closes_the_file_at_once(local_pool_config: LocalPoolConfig) -> None:
    pool = LocalPool(local_pool_config)
    try:
        target, staging = await begin(pool, "files/aborted-here")
        await pool.write_chunk(target, 0, pieces(chunk(DATA, target, 0)))

        await pool.abort_upload(target)

        assert descriptors_of(staging) == 0
        assert not staging.exists()
    finally:
        await pool.close()
