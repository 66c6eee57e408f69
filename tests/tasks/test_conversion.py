"""FileConversion through the REST API: both pools, refused creates and a corrupt image."""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image

from activities.files import output_id
from taskdrive.settings import Settings
from tests.fixtures.app import S3_POOL_ID, Auth, api_client, worker_running
from tests.tasking import create_task, upload_file, wait_task
from tests.uploading import random_bytes

Account = tuple[uuid.UUID, dict[str, str]]


def png(width: int, height: int, *, noise: bool = False) -> bytes:
    """A PNG; ``noise`` makes it incompressible (about 3 bytes a pixel), so it reads slowly."""
    if noise:
        picture = Image.frombytes("RGB", (width, height), random_bytes(width * height * 3))
    else:
        picture = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


async def converted(
    api: httpx.AsyncClient, headers: dict[str, str], task: dict[str, Any]
) -> tuple[dict[str, Any], Image.Image]:
    """The result file's record and its bytes opened with Pillow."""
    file_id = task["results"]["resultFileId"]
    info = await api.get(f"/api/files/{file_id}/info", headers=headers)
    assert info.status_code == 200, info.text
    body = await api.get(f"/api/files/{file_id}", headers=headers)
    assert body.status_code == 200, body.text
    record: dict[str, Any] = info.json()
    assert record["hash"] == hashlib.sha256(body.content).hexdigest()
    return record, Image.open(io.BytesIO(body.content))


async def test_png_to_jpeg_resized_on_the_local_pool(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    source = await upload_file(api, headers, png(120, 80), name="holiday.png")
    created = await create_task(
        api,
        headers,
        "FileConversion",
        {"fileId": source["id"], "targetFormat": "jpeg", "options": {"width": 60, "quality": 80}},
    )
    assert created["category"] == "media"
    task = await wait_task(api, headers, created["taskId"], "Completed")
    results = task["results"]
    assert (results["format"], results["width"], results["height"]) == ("jpeg", 60, 40)

    record, image = await converted(api, headers, task)
    assert (image.format, image.size) == ("JPEG", (60, 40))
    assert (record["name"], record["contentType"]) == ("holiday.jpg", "image/jpeg")
    assert record["size"] == results["size"]
    assert record["poolId"] == source["poolId"]


async def test_webp_thumbnail_on_s3_joins_the_target_bundle(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    source = await upload_file(api, headers, png(200, 100), name="scan.png", pool_id=S3_POOL_ID)
    bundle = str(uuid.uuid4())
    created = await create_task(
        api,
        headers,
        "FileConversion",
        {
            "fileId": source["id"],
            "targetFormat": "webp",
            "options": {"thumbnail": 50},
            "targetBundleId": bundle,
        },
    )
    task = await wait_task(api, headers, created["taskId"], "Completed")
    assert (task["results"]["width"], task["results"]["height"]) == (50, 25)

    record, image = await converted(api, headers, task)
    assert (image.format, image.size) == ("WEBP", (50, 25))
    assert (record["name"], record["poolId"], record["bundleId"]) == (
        "scan.webp",
        str(S3_POOL_ID),
        bundle,
    )


async def test_what_cannot_convert_is_refused_at_create_and_makes_no_task(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    text = await upload_file(api, headers, b"not a picture\n", name="notes.txt")
    image = await upload_file(api, headers, png(8, 8), name="dot.png")

    async def refused(parameters: dict[str, Any]) -> dict[str, Any]:
        response = await api.post(
            "/api/tasks",
            json={"type": "FileConversion", "parameters": parameters},
            headers=headers,
        )
        assert response.status_code == 400, response.text
        body: dict[str, Any] = response.json()
        return body

    unsupported = await refused({"fileId": text["id"], "targetFormat": "png"})
    assert unsupported["code"] == "UNSUPPORTED_CONVERSION"
    assert "notes.txt" in unsupported["message"]

    # The target format and the options are the model's to check, each error naming its field.
    invalid = await refused(
        {"fileId": image["id"], "targetFormat": "bmp", "options": {"quality": 0, "mode": "fit"}}
    )
    assert invalid["code"] == "VALIDATION_ERROR"
    assert {e["field"] for e in invalid["details"]["errors"]} == {
        "parameters.targetFormat",
        "parameters.options.quality",
        "parameters.options.mode",
    }

    listed = await api.get("/api/tasks", params={"type": "FileConversion"}, headers=headers)
    assert listed.headers["X-Total"] == "0"


async def test_a_file_of_another_account_or_none_is_not_found(
    api: httpx.AsyncClient, account: Account, auth: Auth
) -> None:
    _, headers = account
    theirs = await upload_file(api, auth(uuid.uuid4()), png(8, 8), name="theirs.png")
    for file_id in (theirs["id"], str(uuid.uuid4())):
        response = await api.post(
            "/api/tasks",
            json={
                "type": "FileConversion",
                "parameters": {"fileId": file_id, "targetFormat": "gif"},
            },
            headers=headers,
        )
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "FILE_NOT_FOUND"


async def test_a_corrupt_image_fails_the_task_image_rejected(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    broken = await upload_file(api, headers, random_bytes(4096), name="broken.png")
    created = await create_task(
        api, headers, "FileConversion", {"fileId": broken["id"], "targetFormat": "jpeg"}
    )
    task = await wait_task(api, headers, created["taskId"], "Failed")
    assert task["errorCode"] == "IMAGE_REJECTED"
    assert task["retryCount"] == 0
    assert "broken.png" in task["errorMessage"]


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ({"conversion_max_source_bytes": 1000}, "images up to 1000 are converted"),
        ({"conversion_max_pixels": 100 * 100}, "pixels"),
    ],
)
async def test_the_image_limits_are_settings(
    settings: Settings, account: Account, limit: dict[str, int], reason: str
) -> None:
    """A 200x200 PNG, well inside the defaults, refused by a worker with tighter limits."""
    _, headers = account
    tight = settings.model_copy(
        update={"task_queue_prefix": f"tight-{uuid.uuid4().hex[:8]}", **limit}
    )
    async with worker_running(tight), api_client(tight) as api:
        source = await upload_file(api, headers, png(200, 200, noise=True), name="big.png")
        created = await create_task(
            api, headers, "FileConversion", {"fileId": source["id"], "targetFormat": "jpeg"}
        )
        task = await wait_task(api, headers, created["taskId"], "Failed")
    assert task["errorCode"] == "IMAGE_REJECTED"
    assert reason in task["errorMessage"], task["errorMessage"]


async def test_a_conversion_cancelled_midway_leaves_no_file(
    slow_api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    # About 1.9 MB at the slow worker's 256 KiB/s: the step reads for some seconds.
    source = await upload_file(slow_api, headers, png(800, 800, noise=True), name="noise.png")
    created = await create_task(
        slow_api, headers, "FileConversion", {"fileId": source["id"], "targetFormat": "webp"}
    )
    task_id = created["taskId"]
    await wait_task(slow_api, headers, task_id, "InProgress")
    cancelled = await slow_api.post(f"/api/tasks/{task_id}/cancel", headers=headers)
    assert cancelled.status_code == 202, cancelled.text
    await wait_task(slow_api, headers, task_id, "Cancelled")
    # The step stopped at its checkpoint before writing: no file under the task's output id.
    info = await slow_api.get(f"/api/files/{output_id(task_id, 'converted')}/info", headers=headers)
    assert info.status_code == 404, info.text
