"""FileDecompress through the REST API: round trips through FileCompress, entry paths as
names, and hostile archives, which must fail the task and leave no file and no object."""

from __future__ import annotations

import io
import stat
import tarfile
import uuid
import zipfile
from collections.abc import Callable

import httpx
import pytest
from temporalio.client import Client

from activities.files import output_id, storage_key
from taskdrive.settings import Settings
from tasktypes.file_decompress import EXTRACT
from tests.fileops.archive_helpers import tar_info, tar_of, zip_of
from tests.fixtures.app import (
    S3_POOL_ID,
    api_client,
    local_pool_dir,
    worker_running,
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
from tests.tasks.archives import (
    POOLS,
    Account,
    KiB,
    MiB,
    Storage,
    ask,
    compressed,
    midway,
    upload_all,
)
from tests.tasks.stored import download, info
from tests.uploading import random_bytes


@pytest.fixture
def storage(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Storage:
    return Storage(settings, s3_endpoint, s3_bucket)


async def extracted(
    api: httpx.AsyncClient, headers: dict[str, str], archive_id: str, **params: str
) -> dict[str, dict[str, object]]:
    """Runs FileDecompress to Completed: each new file's record, by name, with its bytes."""
    task = await create_task(api, headers, "FileDecompress", {"fileId": archive_id, **params})
    done = await wait_task(api, headers, task["taskId"], "Completed")
    files: dict[str, dict[str, object]] = {}
    for file_id in done["results"]["fileIds"]:
        record = await info(api, headers, file_id)
        files[record["name"]] = {**record, "data": await download(api, headers, file_id)}
    assert done["results"]["entries"] == len(files)
    return files


@pytest.mark.parametrize(("fmt", "pool"), [("zip", "local"), ("tar.gz", "s3"), ("tar.zst", "s3")])
async def test_round_trip(
    api: httpx.AsyncClient, account: Account, storage: Storage, fmt: str, pool: str
) -> None:
    account_id, headers = account
    originals = {
        "notes.txt": b"to be unpacked\n" * 3000,
        "photo.jpg": random_bytes(200 * KiB),
        "empty-ish.bin": b"x",
    }
    file_ids = await upload_all(api, headers, list(originals.items()), POOLS[pool])
    source_pool = (await info(api, headers, file_ids[0]))["poolId"]
    results, _ = await compressed(api, headers, file_ids, compressionFormat=fmt)
    objects, records = storage.objects(), storage.files(account_id)
    bundle = str(uuid.uuid4())

    files = await extracted(api, headers, results["resultFileId"], targetBundleId=bundle)

    assert {name: file["data"] for name, file in files.items()} == originals
    assert {file["bundleId"] for file in files.values()} == {bundle}
    assert {file["poolId"] for file in files.values()} == {source_pool}  # the archive's pool
    assert files["notes.txt"]["contentType"] == "text/plain"
    assert storage.objects() == objects + 3
    assert storage.files(account_id) == records + 3


async def test_entries_are_named_by_their_path_and_the_last_of_a_path_wins(
    api: httpx.AsyncClient, account: Account, storage: Storage
) -> None:
    account_id, headers = account
    data = zip_of(
        {
            "docs/a.txt": b"a",
            "docs/": b"",  # a directory: no file
            "docs/sub/../b.txt": b"b",
            "./c.txt": b"first c",
            "c.txt": b"second c",
        }
    )
    archive = await upload_file(api, headers, data, name="paths.zip", pool_id=S3_POOL_ID)
    objects, records = storage.objects(), storage.files(account_id)

    files = await extracted(api, headers, archive["id"], poolId=archive["poolId"])

    assert {name: file["data"] for name, file in files.items()} == {
        "docs/a.txt": b"a",
        "docs/b.txt": b"b",
        "c.txt": b"second c",
    }
    assert (storage.objects(), storage.files(account_id)) == (objects + 3, records + 3)


# --- hostile archives --------------------------------------------------------------------------


def zip_symlink() -> bytes:
    link = zipfile.ZipInfo("link")
    link.create_system = 3  # Unix: the mode in the external attributes counts
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    # The link streams like a small file; only the central directory, at the end, tells.
    return zip_of({"fine.txt": b"ok", link: b"/etc/passwd"})


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("fine.txt", b"ok")
        with archive.open("zeros.bin", "w") as file:
            for _ in range(16):  # 64 MiB of zeros in about 64 KiB
                file.write(bytes(4 * MiB))
    return buffer.getvalue()


def too_many_entries() -> bytes:
    # Directories count as entries but are not extracted: cheap past the 10,000 limit, with
    # two real files written (and to be removed) before the limit is reached.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", b"a" * 1000)
        archive.writestr("b.txt", b"b" * 1000)
        for n in range(10_000):
            archive.writestr(f"dir{n}/", b"")
    return buffer.getvalue()


# attack: (archive name, its bytes, what the error message says, files written before the
# rejection, which the step must remove)
ATTACKS: dict[str, tuple[str, Callable[[], bytes], str, int]] = {
    "traversal": (
        "evil.zip",
        lambda: zip_of({"fine.txt": b"ok", "../../etc/passwd": b"root::0:0"}),
        "'../../etc/passwd' leads outside the archive (path traversal)",
        1,
    ),
    "absolute path": (
        "evil.tar.gz",
        lambda: tar_of([(tar_info("fine.txt"), b"ok"), (tar_info("/etc/passwd"), b"root")]),
        "'/etc/passwd' is an absolute path (absolute path)",
        1,
    ),
    "zip symlink": ("link.zip", zip_symlink, "(link entry)", 2),
    "tar symlink": (
        "link.tar.zst",
        lambda: tar_of(
            [
                (tar_info("fine.txt"), b"ok"),
                (tar_info("link", tarfile.SYMTYPE, "/etc/passwd"), b""),
            ],
            "tar.zst",
        ),
        "'link' is a symbolic link to '/etc/passwd' (link entry)",
        1,
    ),
    # zeros.bin was partly written when the ratio gave it away
    "bomb": ("bomb.zip", zip_bomb, "exceeds the limit of 100:1 (ratio exceeded)", 2),
    "too many entries": ("many.zip", too_many_entries, "more than 10000 entries", 2),
    "not an archive": ("notes.zip", lambda: b"no archive", "(unsupported archive)", 0),
}


@pytest.mark.parametrize(
    ("attack", "pool"),
    [
        *((attack, "local") for attack in ATTACKS),
        ("traversal", "s3"),
        ("zip symlink", "s3"),
        ("bomb", "s3"),
    ],
)
async def test_a_hostile_archive_fails_and_leaves_nothing(
    api: httpx.AsyncClient, account: Account, storage: Storage, attack: str, pool: str
) -> None:
    account_id, headers = account
    name, build, reason, written = ATTACKS[attack]
    archive = await upload_file(api, headers, build(), name=name, pool_id=POOLS[pool])
    objects, records = storage.objects(), storage.files(account_id)

    task = await create_task(api, headers, "FileDecompress", {"fileId": archive["id"]})
    failed = await wait_task(api, headers, task["taskId"], "Failed")

    assert failed["errorCode"] == "ARCHIVE_REJECTED"
    message = failed["errorMessage"]
    assert message.startswith(f"{name} was rejected: "), message
    assert reason in message and message.endswith("; nothing was extracted"), message
    assert failed["retryCount"] == 0  # retrying cannot make an archive safe
    assert (storage.objects(), storage.files(account_id)) == (objects, records)
    removed = [line for line in await logs(api, headers, task["taskId"]) if "removed" in line]
    assert removed == (
        [f"removed everything extracted so far: {written} file(s)"] if written else []
    )


async def test_cancel_midway_leaves_nothing(
    slow_api: httpx.AsyncClient, account: Account, storage: Storage
) -> None:
    account_id, headers = account
    # Read at 256 KiB/s in 1 MiB pieces: the cancel lands seconds before the end.
    data = zip_of({f"part{n}.bin": random_bytes(256 * KiB) for n in range(10)})
    archive = await upload_file(slow_api, headers, data, name="parts.zip")
    objects, records = storage.objects(), storage.files(account_id)
    task_id = await midway(slow_api, headers, "FileDecompress", {"fileId": archive["id"]})

    await ask(slow_api, headers, task_id, "cancel", "Cancelled")
    assert (storage.objects(), storage.files(account_id)) == (objects, records)


async def test_cleanup_reads_the_archive_again_when_the_step_could_not_clean_up(
    api: httpx.AsyncClient, settings: Settings, account: Account, storage: Storage
) -> None:
    """What a worker that died mid-extraction leaves: entries' objects, and no word from the
    step. Staged for real: the task's queues have no worker until its cancel is in, so the
    workflow is cancelled before its step ever answers, while the objects are already there."""
    _, headers = account
    data = zip_of({"a.txt": b"a", "docs/b.txt": b"b", "docs/c.txt": b"c"})
    archive = await upload_file(api, headers, data, name="parts.zip")
    objects = storage.objects()
    idle = settings.model_copy(update={"task_queue_prefix": f"idle-{uuid.uuid4().hex[:8]}"})
    async with api_client(idle) as idle_api:
        task = await create_task(idle_api, headers, "FileDecompress", {"fileId": archive["id"]})
        task_id = task["taskId"]
        for entry in ("a.txt", "docs/b.txt"):
            left = local_pool_dir(settings) / storage_key(output_id(task_id, entry))
            left.write_bytes(b"left behind")
        assert storage.objects() == objects + 2
        cancelled = await idle_api.post(f"/api/tasks/{task_id}/cancel", headers=headers)
        assert cancelled.status_code == 202, cancelled.text
        async with worker_running(idle):
            await wait_task(idle_api, headers, task_id, "Cancelled")
        removed = [line for line in await logs(idle_api, headers, task_id) if "removed" in line]
    assert removed == ["removed whatever was extracted of the archive's 3 entries"]
    assert storage.objects() == objects


async def test_cleanup_distrusts_a_clean_checkpoint_when_the_resumed_step_never_answered(
    api: httpx.AsyncClient,
    settings: Settings,
    account: Account,
    storage: Storage,
    temporal_client: Client,
) -> None:
    """A pause leaves the step's checkpoint "clean"; after the resume, its run may write
    entries and die without a word, and a cancel may come before Temporal retries it. Staged
    for real: the resume and the cancel are taken by a worker that runs workflows and no
    activity, so the resumed step waits unanswered until the cancel ends it; the entries a
    dying run would leave are planted meanwhile; then a full worker joins for the cleanup."""
    _, headers = account
    data = zip_of({f"part{n}.bin": random_bytes(256 * KiB) for n in range(10)})
    archive = await upload_file(api, headers, data, name="parts.zip")
    objects = storage.objects()
    slow = settings.model_copy(
        update={
            "task_queue_prefix": f"dying-{uuid.uuid4().hex[:8]}",
            "task_max_bytes_per_second": 256 * KiB,
        }
    )
    async with api_client(slow) as slow_api:
        async with worker_running(slow):
            task_id = await midway(slow_api, headers, "FileDecompress", {"fileId": archive["id"]})
            await ask(slow_api, headers, task_id, "pause", "Paused")
        assert storage.objects() == objects  # the paused step removed what it had written

        async with workflows_only(slow, temporal_client):
            resumed = await slow_api.post(f"/api/tasks/{task_id}/resume", headers=headers)
            assert resumed.status_code == 202, resumed.text
            await pending_activity(temporal_client, task_id, EXTRACT)
        for entry in ("part0.bin", "part1.bin"):
            left = local_pool_dir(settings) / storage_key(output_id(task_id, entry))
            left.write_bytes(b"left behind by a run that died")
        cleanup = "FileDecompress.remove_entries"
        await cancel_unanswered(slow_api, headers, slow, temporal_client, task_id, cleanup)
    assert storage.objects() == objects


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ({"archive_max_entries": 2}, "more than 2 entries"),
        ({"archive_max_total_bytes": 2500}, "over the limit of 2500 bytes in total"),
    ],
)
async def test_the_limits_are_settings(
    settings: Settings, account: Account, storage: Storage, limit: dict[str, int], reason: str
) -> None:
    """An archive well inside the defaults, rejected by a worker with tighter limits."""
    account_id, headers = account
    tight = settings.model_copy(
        update={"task_queue_prefix": f"tight-{uuid.uuid4().hex[:8]}", **limit}
    )
    data = zip_of({name: random_bytes(1000) for name in ("a.bin", "b.bin", "c.bin")})
    async with worker_running(tight), api_client(tight) as api:
        archive = await upload_file(api, headers, data, name="three.zip")
        objects, records = storage.objects(), storage.files(account_id)
        task = await create_task(api, headers, "FileDecompress", {"fileId": archive["id"]})
        failed = await wait_task(api, headers, task["taskId"], "Failed")
    assert failed["errorCode"] == "ARCHIVE_REJECTED"
    assert reason in failed["errorMessage"], failed["errorMessage"]
    assert (storage.objects(), storage.files(account_id)) == (objects, records)
