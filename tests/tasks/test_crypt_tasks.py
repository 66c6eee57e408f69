"""FileEncrypt, FileDecrypt and encrypted uploads end to end, checked against rage (pyrage), an
independent age implementation, on both pool kinds.

scrypt at the codec's default work factor costs about half a second per encryption and rage
calibrates to about a second, so the encryptions here are few; inputs the tests only need to
exist (a wrong password, a truncated file) are made with a cheap work factor.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pyrage  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.worker import Replayer

from activities.crypt import rewritten_key
from taskdrive.fileops.age import CHUNK_SIZE, Encryptor
from taskdrive.settings import DEFAULT_LOCAL_POOL_ID, Settings
from tasktypes.file_upload import FileUploadWorkflow
from tests.fixtures.app import (
    S3_POOL_ID,
    api_client,
    database,
    local_pool_dir,
    worker_running,
    workflows_only,
)
from tests.fixtures.s3 import s3_client
from tests.tasking import (
    cancel_unanswered,
    closed_history,
    create_task,
    get_task,
    pending_activity,
    upload_file,
    wait_task,
)
from tests.tasks.stored import download, info, note_relocation
from tests.uploading import (
    complete,
    create,
    poll_until,
    random_bytes,
    send_chunks,
    sha256,
    task_view,
)

Account = tuple[uuid.UUID, dict[str, str]]
PASSWORD = "pass phrase for the crypt tests"
POOLS = {"local": DEFAULT_LOCAL_POOL_ID, "s3": S3_POOL_ID}
AGE_TYPE = "application/age-encrypted"


class Storage:
    """The objects a file has in its pool, read straight from the pool (not through the API)."""

    def __init__(self, settings: Settings, s3_endpoint: str, s3_bucket: str) -> None:
        self.root = local_pool_dir(settings)
        self.s3 = s3_client(s3_endpoint)
        self.bucket = s3_bucket

    def keys(self, pool: uuid.UUID, file_id: str) -> list[str]:
        prefix = f"files/{file_id}"
        if pool == S3_POOL_ID:
            listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
            return sorted(item["Key"] for item in listed.get("Contents", []))
        found = (self.root / "files").glob(f"{file_id}*")
        return sorted(path.relative_to(self.root).as_posix() for path in found)


@pytest.fixture
def storage(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Storage:
    return Storage(settings, s3_endpoint, s3_bucket)


def cheap_age(data: bytes) -> bytes:
    """An age file at scrypt work factor 10 (a millisecond; readers accept any up to 22)."""
    encryptor = Encryptor(PASSWORD, work_factor=10)
    return encryptor.header() + encryptor.update(data) + encryptor.finish()


async def run_task(
    api: httpx.AsyncClient, headers: dict[str, str], type: str, file_id: str, password: str
) -> dict[str, Any]:
    created = await create_task(api, headers, type, {"fileIds": [file_id], "password": password})
    return await wait_task(
        api, headers, created["taskId"], lambda t: t["status"] in ("Completed", "Failed")
    )


@pytest.mark.parametrize("pool", sorted(POOLS))
async def test_encrypt_then_decrypt_in_place(
    api: httpx.AsyncClient, account: Account, storage: Storage, pool: str
) -> None:
    _, headers = account
    pool_id = POOLS[pool]
    data = random_bytes(3 * CHUNK_SIZE + 1234)
    file_id = (await upload_file(api, headers, data, name="notes.txt", pool_id=pool_id))["id"]

    encrypted = await run_task(api, headers, "FileEncrypt", file_id, PASSWORD)
    assert encrypted["status"] == "Completed", encrypted
    assert encrypted["parameters"] == {"fileIds": [file_id], "password": "********"}
    ciphertext = await download(api, headers, file_id)
    assert pyrage.passphrase.decrypt(ciphertext, PASSWORD) == data
    record = await info(api, headers, file_id)
    assert (record["name"], record["contentType"]) == ("notes.txt.age", AGE_TYPE)
    assert (record["size"], record["hash"]) == (len(ciphertext), sha256(ciphertext))
    assert encrypted["results"] == {
        "files": {
            file_id: {"name": "notes.txt.age", "size": len(ciphertext), "hash": record["hash"]}
        }
    }
    assert len(storage.keys(pool_id, file_id)) == 1  # the plaintext object is gone

    decrypted = await run_task(api, headers, "FileDecrypt", file_id, PASSWORD)
    assert decrypted["status"] == "Completed", decrypted
    assert await download(api, headers, file_id) == data
    record = await info(api, headers, file_id)
    assert (record["name"], record["contentType"]) == ("notes.txt", "text/plain")
    assert (record["size"], record["hash"]) == (len(data), sha256(data))
    assert len(storage.keys(pool_id, file_id)) == 1


async def test_decrypts_a_file_rage_encrypted(api: httpx.AsyncClient, account: Account) -> None:
    _, headers = account
    data = random_bytes(CHUNK_SIZE + 7)
    ciphertext = pyrage.passphrase.encrypt(data, PASSWORD)
    file_id = (await upload_file(api, headers, ciphertext, name="photo.jpg.age"))["id"]

    task = await run_task(api, headers, "FileDecrypt", file_id, PASSWORD)
    assert task["status"] == "Completed", task
    assert await download(api, headers, file_id) == data
    record = await info(api, headers, file_id)
    assert (record["name"], record["contentType"], record["hash"]) == (
        "photo.jpg",
        "image/jpeg",
        sha256(data),
    )


def _truncated(ciphertext: bytes) -> bytes:
    """Cut after the second payload chunk: every chunk left authenticates, none as the last."""
    payload = ciphertext.index(b"\n", ciphertext.index(b"\n--- ") + 1) + 1 + 16
    return ciphertext[: payload + 2 * (CHUNK_SIZE + 16)]


# What is stored, the password the task is given, the error it fails with.
CORRUPT: dict[str, tuple[Callable[[bytes], bytes], str, str]] = {
    "wrong password": (cheap_age, "not the password", "WRONG_PASSWORD"),
    "not an age file": (bytes, PASSWORD, "DECRYPTION_FAILED"),
    "truncated": (lambda data: _truncated(cheap_age(data)), PASSWORD, "DECRYPTION_FAILED"),
}


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("case", sorted(CORRUPT))
async def test_a_failed_decryption_leaves_the_file_as_it_was(
    api: httpx.AsyncClient, account: Account, storage: Storage, pool: str, case: str
) -> None:
    _, headers = account
    make, password, code = CORRUPT[case]
    stored = make(random_bytes(3 * CHUNK_SIZE + 5))
    pool_id = POOLS[pool]
    file_id = (await upload_file(api, headers, stored, name="x.age", pool_id=pool_id))["id"]
    before, keys = await info(api, headers, file_id), storage.keys(pool_id, file_id)

    task = await run_task(api, headers, "FileDecrypt", file_id, password)
    assert (task["status"], task["errorCode"]) == ("Failed", code), task
    assert task["retryCount"] == 0  # retrying cannot help
    assert password not in task["errorMessage"]
    assert await info(api, headers, file_id) == before
    assert await download(api, headers, file_id) == stored
    assert storage.keys(pool_id, file_id) == keys  # and nothing half-written beside it


async def test_a_short_new_password_is_refused_at_create(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    response = await api.post(
        "/api/tasks",
        json={"type": "FileEncrypt", "parameters": {"fileIds": ["x"], "password": "hunter2"}},
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json()["details"]["errors"][0]["field"] == "parameters.password"
    assert "hunter2" not in response.text


@pytest.mark.parametrize("pool", sorted(POOLS))
async def test_an_upload_with_encrypt_password_is_stored_encrypted(
    api: httpx.AsyncClient,
    account: Account,
    storage: Storage,
    temporal_client: Client,
    pool: str,
) -> None:
    _, headers = account
    pool_id = POOLS[pool]
    data = random_bytes(300_000)
    # The account has these bytes in plain; an encrypted upload is not that file.
    plain = await upload_file(api, headers, data, name="plain.bin", pool_id=pool_id)
    chunk_size = 100_000 if pool == "local" else None
    upload = await create(
        api,
        headers,
        data,
        file_name="secret.bin",
        chunk_size=chunk_size,
        pool_id=pool_id,
        encryptPassword=PASSWORD,
    )
    await send_chunks(api, headers, upload, list(range(upload.chunks_count)))
    response = await complete(api, headers, upload)
    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["id"] != plain["id"]
    assert (stored["name"], stored["contentType"]) == ("secret.bin.age", AGE_TYPE)

    ciphertext = await download(api, headers, stored["id"])
    assert pyrage.passphrase.decrypt(ciphertext, PASSWORD) == data
    assert (stored["size"], stored["hash"]) == (len(ciphertext), sha256(ciphertext))
    assert storage.keys(pool_id, stored["id"]) == [
        f"files/{stored['id']}.{upload.task_id.replace('-', '')[:16]}"
    ]  # the assembled plaintext is gone
    task = await get_task(api, headers, upload.task_id)
    assert task["parameters"]["encryptPassword"] == "********"
    assert task["results"]["fileName"] == "secret.bin.age"

    history = await closed_history(temporal_client, upload.task_id)
    replayed = await Replayer(workflows=[FileUploadWorkflow]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert replayed.replay_failure is None, replayed.replay_failure


async def test_an_encrypted_upload_still_checks_the_plaintext_hash(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    data = random_bytes(1000)
    upload = await create(
        api, headers, data, declared_hash=sha256(b"other"), encryptPassword=PASSWORD
    )
    await send_chunks(api, headers, upload, list(range(upload.chunks_count)))
    response = await complete(api, headers, upload)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "HASH_MISMATCH"
    task = await get_task(api, headers, upload.task_id)
    assert (task["status"], task["errorCode"]) == ("Failed", "HASH_MISMATCH")


@pytest.fixture(scope="module")
async def slow_encrypting_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An API and worker on their own queues whose uploads are read at 256 KiB/s after
    assembly, so an encrypted upload of 2 MiB spends seconds encrypting."""
    slow = settings.model_copy(
        update={
            "task_queue_prefix": f"slowcrypt-{uuid.uuid4().hex[:8]}",
            "assembly_max_bytes_per_second": 256 * 1024,
        }
    )
    async with worker_running(slow), api_client(slow) as client:
        yield client


async def test_cancel_while_encrypting_leaves_no_file_and_no_object(
    slow_encrypting_api: httpx.AsyncClient, account: Account, storage: Storage, settings: Settings
) -> None:
    api, (_, headers) = slow_encrypting_api, account
    data = random_bytes(2 * 1024 * 1024)
    upload = await create(api, headers, data, chunk_size=1024 * 1024, encryptPassword=PASSWORD)
    await send_chunks(api, headers, upload, [0, 1])
    completing = asyncio.create_task(complete(api, headers, upload))
    await poll_until(
        lambda: task_view(api, headers, upload.task_id),
        lambda view: view["statusMessage"] == "Encrypting",
        deadline=60,
        what="the upload to start encrypting",
    )
    cancelled = await api.delete(f"/api/files/upload/task/{upload.task_id}", headers=headers)
    assert cancelled.json()["status"] == "Cancelled", cancelled.text
    assert (await completing).status_code == 410
    with database(settings) as conn:
        query = "SELECT file_id::text, (SELECT count(*) FROM files f WHERE f.id = u.file_id)"
        file_id, records = conn.execute(
            text(f"{query} FROM uploads u WHERE task_id = :t"), {"t": upload.task_id}
        ).one()
    assert records == 0
    assert storage.keys(DEFAULT_LOCAL_POOL_ID, file_id) == []  # neither plaintext nor encrypted


async def test_a_rewrite_whose_worker_died_unanswered_leaves_no_stray_object_when_cancelled(
    api: httpx.AsyncClient,
    settings: Settings,
    account: Account,
    storage: Storage,
    temporal_client: Client,
) -> None:
    """What a run that died mid-rewrite leaves: the rewrite noted, the new object whole, the
    record not switched yet, and no word from the step. Staged as for a move
    (test_file_move.py): a worker without steps leaves the step unanswered, the note and the
    new object are put where the dying run would have left them, and the cancel's cleanup
    removes the new object; the file stays as it was."""
    _, headers = account
    data = random_bytes(3 * 1024)
    stored = await upload_file(api, headers, data, pool_id=S3_POOL_ID)
    file_id = stored["id"]
    idle = settings.model_copy(update={"task_queue_prefix": f"idle-{uuid.uuid4().hex[:8]}"})
    async with api_client(idle) as idle_api:
        async with workflows_only(idle, temporal_client):
            params = {"fileIds": [file_id], "password": PASSWORD}
            task_id = (await create_task(idle_api, headers, "FileEncrypt", params))["taskId"]
            await pending_activity(temporal_client, task_id, "FileEncrypt.encrypt_files")
        key = rewritten_key(file_id, task_id)
        storage.s3.put_object(Bucket=storage.bucket, Key=key, Body=cheap_age(data))
        note_relocation(settings, task_id, file_id, str(S3_POOL_ID), key)
        assert storage.keys(S3_POOL_ID, file_id) == sorted([f"files/{file_id}", key])
        cleanup = "relocation.settle_moves"
        await cancel_unanswered(idle_api, headers, idle, temporal_client, task_id, cleanup)
    assert storage.keys(S3_POOL_ID, file_id) == [f"files/{file_id}"]
    assert await download(api, headers, file_id) == data
    assert (await info(api, headers, file_id))["hash"] == sha256(data)
