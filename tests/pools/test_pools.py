"""The pool contract, observed through both implementations: a local directory, and S3 (a moto
server over real HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from taskdrive.pools import (
    LocalPool,
    ObjectNotFound,
    Pool,
    PoolError,
    PoolRegistry,
    S3Pool,
    UploadNotFound,
    UploadTarget,
)
from taskdrive.settings import DEFAULT_LOCAL_POOL_ID, LocalPoolConfig, S3PoolConfig, Settings
from tests.fixtures.s3 import s3_client

MiB = 1024 * 1024
CHUNK = 5 * MiB  # S3's smallest part
DATA = os.urandom(2 * CHUNK + 123)  # two full chunks and a short last one


@pytest.fixture(params=["local", "s3"])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[Pool]:
    created: Pool
    if request.param == "local":
        created = LocalPool(request.getfixturevalue("local_pool_config"))
    else:
        created = S3Pool(request.getfixturevalue("s3_pool_config"))
    yield created
    await created.close()


async def pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def chunk(data: bytes, target: UploadTarget, index: int) -> bytes:
    start = target.chunk_offset(index)
    return data[start : start + target.chunk_length(index)]


async def read_all(pool: Pool, key: str, start: int = 0, end: int | None = None) -> bytes:
    out = []
    async for piece in pool.read(key, start, end):
        assert 0 < len(piece) <= MiB
        out.append(piece)
    return b"".join(out)


async def upload(pool: Pool, data: bytes = DATA, order: list[int] | None = None) -> UploadTarget:
    """Stores ``data`` as a new object, its chunks written concurrently in ``order``."""
    target = await pool.begin_upload(f"files/{uuid.uuid4()}", len(data), CHUNK)
    order = order if order is not None else [2, 0, 1]
    written = await asyncio.gather(
        *(pool.write_chunk(target, i, pieces(chunk(data, target, i))) for i in order)
    )
    assert written == [target.chunk_length(i) for i in order]
    await pool.finish_upload(target)
    return target


def inspector(pool: S3Pool) -> Any:
    """A boto3 client to look at the pool's bucket behind its back."""
    assert pool.endpoint is not None
    return s3_client(pool.endpoint)


def pending_targets(pool: Pool) -> int:
    """Upload targets in the pool: S3 multipart uploads, or local staging files."""
    if isinstance(pool, S3Pool):
        return len(inspector(pool).list_multipart_uploads(Bucket=pool.bucket).get("Uploads", []))
    assert isinstance(pool, LocalPool)
    return sum(1 for path in (pool.root / ".uploads").iterdir() if path.is_file())


async def test_chunks_written_out_of_order_and_concurrently_assemble_exactly(pool: Pool) -> None:
    target = await upload(pool, order=[2, 1, 0])

    got = await read_all(pool, target.key)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert await pool.size(target.key) == len(DATA)


async def test_finishing_again_is_harmless(pool: Pool) -> None:
    target = await upload(pool)

    await pool.finish_upload(target)  # a retry after a crash
    await pool.finish_upload(target)
    assert await read_all(pool, target.key) == DATA


async def test_rewriting_a_chunk_replaces_it(pool: Pool) -> None:
    target = await pool.begin_upload("files/rewritten", len(DATA), CHUNK)
    await pool.write_chunk(target, 1, pieces(os.urandom(CHUNK)))
    await pool.write_chunk(target, 2, pieces(b"x" * 123))
    await asyncio.gather(
        *(pool.write_chunk(target, i, pieces(chunk(DATA, target, i))) for i in range(3))
    )
    await pool.finish_upload(target)
    assert await read_all(pool, target.key) == DATA


async def test_a_body_of_the_wrong_length_is_refused_and_not_stored(pool: Pool) -> None:
    target = await pool.begin_upload("files/strict", len(DATA), CHUNK)
    exact = chunk(DATA, target, 0)
    drained = False

    async def too_long() -> AsyncIterator[bytes]:
        nonlocal drained
        yield exact
        yield b"!"
        drained = True  # asked for more after the body was already too long
        yield b"more"

    with pytest.raises(ValueError):
        await pool.write_chunk(target, 0, too_long())
    assert not drained, "the pool kept reading a body already too long"
    with pytest.raises(ValueError):
        await pool.write_chunk(target, 0, pieces(exact[:-1]))
    with pytest.raises(ValueError):
        await pool.write_chunk(target, 2, pieces(b""))
    if isinstance(pool, S3Pool):
        parts = inspector(pool).list_parts(
            Bucket=pool.bucket, Key=target.key, UploadId=target.upload_id
        )
        assert parts.get("Parts", []) == []

    for i in range(3):
        await pool.write_chunk(target, i, pieces(chunk(DATA, target, i)))
    await pool.finish_upload(target)
    assert await read_all(pool, target.key) == DATA


async def test_a_chunk_index_past_the_end_is_refused(pool: Pool) -> None:
    target = await pool.begin_upload("files/indexes", len(DATA), CHUNK)
    with pytest.raises(ValueError):
        await pool.write_chunk(target, 3, pieces(b"x"))
    with pytest.raises(ValueError):
        await pool.write_chunk(target, -1, pieces(b"x"))
    await pool.abort_upload(target)


async def test_abort_discards_the_target(pool: Pool) -> None:
    target = await pool.begin_upload("files/aborted", len(DATA), CHUNK)
    await pool.write_chunk(target, 0, pieces(chunk(DATA, target, 0)))
    assert pending_targets(pool) == 1

    await pool.abort_upload(target)
    await pool.abort_upload(target)  # idempotent

    assert pending_targets(pool) == 0
    with pytest.raises(UploadNotFound):
        await pool.write_chunk(target, 1, pieces(chunk(DATA, target, 1)))
    with pytest.raises(UploadNotFound):
        await pool.finish_upload(target)
    with pytest.raises(ObjectNotFound):
        await pool.size(target.key)


async def test_finishing_an_unknown_target_raises_upload_not_found(pool: Pool) -> None:
    upload_id = None if isinstance(pool, LocalPool) else "no-such-upload"
    with pytest.raises(UploadNotFound):
        await pool.finish_upload(UploadTarget("files/never", upload_id, 10, CHUNK))


async def test_ranges_read_the_exact_slice(pool: Pool) -> None:
    target = await upload(pool)
    size = len(DATA)
    spans = [
        (0, None),
        (0, 1),
        (7, 8),
        (CHUNK - 3, CHUNK + 3),  # across a chunk boundary
        (100, 3 * MiB + 7),  # several pieces
        (size - 10, None),
        (size - 10, size),
        (42, 42),  # empty
        (size, None),  # at the end: nothing
    ]
    for start, end in spans:
        assert await read_all(pool, target.key, start, end) == DATA[start:end], (start, end)


async def test_delete_removes_the_object(pool: Pool) -> None:
    target = await upload(pool)

    await pool.delete(target.key)
    await pool.delete(target.key)  # idempotent

    reading = pool.read(target.key)
    with pytest.raises(ObjectNotFound):
        await anext(reading)
    with pytest.raises(ObjectNotFound):
        await anext(pool.read(target.key, 0, 0))
    with pytest.raises(ObjectNotFound):
        await pool.size(target.key)


@pytest.mark.parametrize("size", [0, 1000, 8 * MiB, 8 * MiB + 1, 17 * MiB + 5])
async def test_write_stream_stores_bodies_of_unknown_length(pool: Pool, size: int) -> None:
    data = os.urandom(size)
    key = f"streams/{uuid.uuid4()}"

    assert await pool.write_stream(key, pieces(data, 300_000)) == size

    assert await pool.size(key) == size
    assert await read_all(pool, key) == data
    assert pending_targets(pool) == 0


async def test_a_failing_stream_leaves_the_old_object_and_no_partial_bytes(pool: Pool) -> None:
    key = f"streams/{uuid.uuid4()}"
    await pool.write_stream(key, pieces(b"old bytes"))

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(9 * MiB)  # past one part: a multipart upload is under way on S3
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        await pool.write_stream(key, broken())

    assert await read_all(pool, key) == b"old bytes"
    assert pending_targets(pool) == 0


async def test_check_passes_on_a_usable_pool(pool: Pool) -> None:
    await pool.check()


async def test_check_fails_without_the_bucket(s3_pool_config: S3PoolConfig) -> None:
    pool = S3Pool(s3_pool_config.model_copy(update={"bucket": f"missing-{uuid.uuid4().hex}"}))
    try:
        with pytest.raises(PoolError, match="missing-"):
            await pool.check()
    finally:
        await pool.close()


async def test_check_fails_when_the_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"")
    pool = LocalPool(LocalPoolConfig(id=uuid.uuid4(), name="bad", path=root))
    with pytest.raises(PoolError):
        await pool.check()


@pytest.mark.parametrize(
    "key", ["../escape", "files/../../escape", "/etc/passwd", "", "files/", "a//b", ".uploads/x"]
)
async def test_local_pool_refuses_keys_outside_its_objects(
    local_pool_config: LocalPoolConfig, key: str
) -> None:
    pool = LocalPool(local_pool_config)
    with pytest.raises(ValueError):
        await pool.begin_upload(key, 10, 5)
    with pytest.raises(ValueError):
        await anext(pool.read(key))
    with pytest.raises(ValueError):
        await pool.delete(key)


def test_s3_pool_never_shows_its_credentials(s3_pool_config: S3PoolConfig) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    pool = S3Pool(s3_pool_config.model_copy(update={"secret_key": SecretStr(secret)}))
    assert secret not in repr(pool)
    assert secret not in repr(vars(pool))


async def test_registry_holds_the_configured_pools(
    tmp_path: Path, s3_pool_config: S3PoolConfig
) -> None:
    # An endpoint nobody listens on: building the registry must not connect.
    offline = s3_pool_config.model_copy(update={"endpoint": "http://127.0.0.1:9"})
    settings = Settings(data_dir=tmp_path, pools=[offline], default_pool_id=offline.id)
    registry = PoolRegistry.from_settings(settings)

    assert isinstance(registry.get(DEFAULT_LOCAL_POOL_ID), LocalPool)
    assert isinstance(registry.get(offline.id), S3Pool)
    assert registry.default is registry.get(offline.id)
    assert {pool.id for pool in registry} == {DEFAULT_LOCAL_POOL_ID, offline.id}
    assert list(registry.values()) == list(registry)
    with pytest.raises(KeyError):
        registry.get(uuid.uuid4())
    await registry.close()


async def test_begin_refuses_uploads_the_pool_cannot_hold(pool: Pool) -> None:
    with pytest.raises(ValueError):
        await pool.begin_upload("files/empty", 0, CHUNK)
    with pytest.raises(ValueError):
        await pool.begin_upload("files/many", pool.max_chunks + 1, 1)
    if pool.min_chunk_size > 1:
        with pytest.raises(ValueError):
            await pool.begin_upload("files/small-chunks", len(DATA), pool.min_chunk_size - 1)
