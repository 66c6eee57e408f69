"""Ownership, admin, listing filters, sorting, paging, stats and cleanup."""

from __future__ import annotations

import uuid

import httpx

from tests.api.test_upload_rules import assert_error
from tests.fixtures.app import Auth
from tests.uploading import complete, create, random_bytes, send_chunks, sha256, wait_for_status


async def test_another_account_sees_nothing_and_an_admin_sees_all(
    api: httpx.AsyncClient, auth: Auth
) -> None:
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    data = random_bytes(500)
    upload = await create(api, auth(owner), data)
    await send_chunks(api, auth(owner), upload, [0])
    file_id = (await complete(api, auth(owner), upload)).json()["id"]

    for url in (
        f"/api/files/upload/progress/{upload.task_id}",
        f"/api/files/upload/resume/{upload.task_id}",
        f"/api/files/upload/tasks/{upload.task_id}/details",
        f"/api/files/{file_id}",
        f"/api/files/{file_id}/info",
    ):
        assert (await api.get(url, headers=auth(stranger))).status_code == 404, url
        assert (await api.get(url, headers=auth(uuid.uuid4(), admin=True))).status_code == 200, url
    assert_error(
        await api.delete(f"/api/files/upload/task/{upload.task_id}", headers=auth(stranger)),
        404,
        "TASK_NOT_FOUND",
    )
    listing = await api.get("/api/files/upload/tasks", headers=auth(stranger))
    assert listing.json() == []
    assert listing.headers["X-Total"] == "0"
    # A stranger uploading the same bytes does not get the owner's file.
    other = await api.post(
        "/api/files/upload/create",
        json={"fileName": "x", "fileSize": 500, "contentType": "x/y", "hash": sha256(data)},
        headers=auth(stranger),
    )
    assert other.json()["fileExists"] is False


async def test_listing_filters_sorts_and_pages(api: httpx.AsyncClient, auth: Auth) -> None:
    account = uuid.uuid4()
    headers = auth(account)
    sizes = {"b.bin": 300, "a.bin": 100, "c.bin": 200}
    uploads = {
        name: await create(api, headers, random_bytes(size), file_name=name)
        for name, size in sizes.items()
    }
    done = uploads["c.bin"]
    await send_chunks(api, headers, done, [0])
    assert (await complete(api, headers, done)).status_code == 200
    for name in ("a.bin", "b.bin"):
        await wait_for_status(api, headers, uploads[name].task_id, "InProgress")

    by_name = await api.get(
        "/api/files/upload/tasks?sortBy=filename&sortDescending=false", headers=headers
    )
    assert [t["fileName"] for t in by_name.json()] == ["a.bin", "b.bin", "c.bin"]
    assert by_name.headers["X-Total"] == "3"
    by_size = await api.get("/api/files/upload/tasks?sortBy=filesize", headers=headers)
    assert [t["fileSize"] for t in by_size.json()] == [300, 200, 100]
    page = await api.get(
        "/api/files/upload/tasks?sortBy=filename&sortDescending=false&offset=1&limit=1",
        headers=headers,
    )
    assert [t["fileName"] for t in page.json()] == ["b.bin"]
    assert page.headers["X-Total"] == "3"
    completed = await api.get("/api/files/upload/tasks?status=Completed", headers=headers)
    assert [t["fileName"] for t in completed.json()] == ["c.bin"]
    assert completed.headers["X-Total"] == "1"
    open_ = await api.get(
        "/api/files/upload/tasks?status=InProgress&status=Paused", headers=headers
    )
    assert sorted(t["fileName"] for t in open_.json()) == ["a.bin", "b.bin"]
    bad = await api.get("/api/files/upload/tasks?status=Sleeping", headers=headers)
    assert_error(bad, 400, "VALIDATION_ERROR")

    recent = await api.get("/api/files/upload/tasks/recent?limit=2", headers=headers)
    assert len(recent.json()) == 2
    stats = (await api.get("/api/files/upload/stats", headers=headers)).json()
    assert stats["totalTasks"] == 3
    assert stats["completedTasks"] == 1
    assert stats["inProgressTasks"] == 2
    assert stats["totalUploadedBytes"] == 200
    assert round(stats["averageProgress"], 2) == round(100 / 3, 2)

    details = (
        await api.get(
            f"/api/files/upload/tasks/{uploads['a.bin'].task_id}/details", headers=headers
        )
    ).json()
    assert details["pool"]["kind"] == "local"
    assert details["currentSpeedBytesPerSecond"] == 0
    assert details["estimatedTimeRemainingSeconds"] is None

    cancelled = await api.delete(
        f"/api/files/upload/task/{uploads['a.bin'].task_id}", headers=headers
    )
    assert cancelled.json()["status"] == "Cancelled"
    cleanup = await api.delete("/api/files/upload/tasks/cleanup", headers=headers)
    assert cleanup.json() == {"removedTasks": 1}
    remaining = await api.get("/api/files/upload/tasks", headers=headers)
    assert sorted(t["fileName"] for t in remaining.json()) == ["b.bin", "c.bin"]
