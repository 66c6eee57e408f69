"""The generic task API end to end, through the worked example type FileChecksum."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

import httpx

from tests.tasking import audit_trail, create_task, get_task, logs, upload_file, wait_task
from tests.uploading import random_bytes

Account = tuple[uuid.UUID, dict[str, str]]


async def test_a_task_runs_to_completed_with_results_logs_and_an_audit_trail(
    api: httpx.AsyncClient, account: Account
) -> None:
    account_id, headers = account
    data = [random_bytes(1000 + n) for n in range(3)]
    files = [await upload_file(api, headers, d, name=f"f{n}.bin") for n, d in enumerate(data)]
    created = await create_task(
        api,
        headers,
        "FileChecksum",
        {"fileIds": [f["id"] for f in files], "algorithm": "md5"},
        name="checksums",
        priority=70,
    )
    assert created["status"] == "Pending"
    assert created["priority"] == 70
    assert created["category"] == "files"
    assert created["maxRetries"] == 3

    task = await wait_task(api, headers, created["taskId"], "Completed")
    assert task["progress"] == 100.0
    # The create's answer is the row as stored: what it fixed reads back the same.
    for fixed in ("name", "description", "type", "parameters", "priority", "category"):
        assert task[fixed] == created[fixed], fixed
    assert datetime.fromisoformat(task["createdAt"]) == datetime.fromisoformat(created["createdAt"])
    assert task["results"] == {
        "algorithm": "md5",
        "digests": {f["id"]: hashlib.md5(d).hexdigest() for f, d in zip(files, data, strict=True)},
    }
    assert task["startedAt"] is not None and task["completedAt"] is not None
    assert task["estimatedDurationSeconds"] is not None

    messages = await logs(api, headers, created["taskId"])
    assert [m.split(" (")[0] for m in messages] == [f"hashing f{n}.bin" for n in range(3)]

    events = await audit_trail(api, headers, created["taskId"])
    transitions = [
        (e["fromStatus"], e["toStatus"]) for e in events if e["eventType"] != "task.progress"
    ]
    assert transitions[0] == (None, "Pending")
    assert ("Pending", "InProgress") in transitions
    assert transitions[-1] == ("InProgress", "Completed")
    assert [e["eventType"] for e in events].count("task.completed") == 1
    assert events[0]["actor"] == str(account_id)


async def test_bad_creates_are_refused_with_clear_errors(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    unknown = await api.post("/api/tasks", json={"type": "Nope", "parameters": {}}, headers=headers)
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "UNKNOWN_TASK_TYPE"

    invalid = await api.post(
        "/api/tasks",
        json={"type": "FileChecksum", "parameters": {"fileIds": [], "algorithm": "crc"}},
        headers=headers,
    )
    assert invalid.status_code == 400
    body = invalid.json()
    assert body["code"] == "VALIDATION_ERROR"
    fields = {e["field"] for e in body["details"]["errors"]}
    assert fields == {"parameters.fileIds", "parameters.algorithm"}

    priority = await api.post(
        "/api/tasks",
        json={"type": "FileChecksum", "priority": 101, "parameters": {"fileIds": ["x"]}},
        headers=headers,
    )
    assert priority.status_code == 400


async def test_a_missing_file_fails_the_task_without_retries(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    created = await create_task(api, headers, "FileChecksum", {"fileIds": [str(uuid.uuid4())]})
    task = await wait_task(api, headers, created["taskId"], "Failed")
    assert task["errorCode"] == "FILE_NOT_FOUND"
    assert task["retryCount"] == 0


async def test_the_same_idempotency_key_gives_the_same_task(
    api: httpx.AsyncClient, account: Account
) -> None:
    _, headers = account
    cloud_file = await upload_file(api, headers, random_bytes(500))
    body = {"type": "FileChecksum", "parameters": {"fileIds": [cloud_file["id"]]}}
    keyed = {**headers, "Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await api.post("/api/tasks", json=body, headers=keyed)
    again = await api.post("/api/tasks", json=body, headers=keyed)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["taskId"] == first.json()["taskId"]
    assert datetime.fromisoformat(again.json()["createdAt"]) == datetime.fromisoformat(
        first.json()["createdAt"]
    )
    listed = await api.get("/api/tasks", params={"type": "FileChecksum"}, headers=headers)
    assert listed.headers["X-Total"] == "1"

    other = {**body, "name": "another request"}
    reused = await api.post("/api/tasks", json=other, headers=keyed)
    assert reused.status_code == 422
    assert reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_another_accounts_task_is_not_found(
    api: httpx.AsyncClient, account: Account, auth: object
) -> None:
    _, headers = account
    cloud_file = await upload_file(api, headers, random_bytes(100))
    created = await create_task(api, headers, "FileChecksum", {"fileIds": [cloud_file["id"]]})
    stranger = {"Authorization": f"Bearer {_token(auth, uuid.uuid4())}"}
    for method, path in [
        ("GET", ""),
        ("GET", "/logs"),
        ("POST", "/pause"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ]:
        response = await api.request(
            method, f"/api/tasks/{created['taskId']}{path}", headers=stranger
        )
        assert response.status_code == 404, (method, path, response.text)
    assert (await get_task(api, headers, created["taskId"]))["taskId"] == created["taskId"]


def _token(auth: object, account_id: uuid.UUID) -> str:
    assert callable(auth)
    header: dict[str, str] = auth(account_id)
    return header["Authorization"].removeprefix("Bearer ")
