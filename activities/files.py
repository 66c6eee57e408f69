"""The file catalogue as task steps see it: the account's files by id, and new files."""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from activities.runtime import Runtime
from activities.steps import StepFailed
from taskdrive.db.models import File
from taskdrive.errors import ErrorCode


async def load_files(runtime: Runtime, account_id: str, file_ids: Sequence[str]) -> list[File]:
    """The account's live files, in the order asked; a missing one fails the step for good."""
    wanted = [uuid.UUID(str(file_id)) for file_id in file_ids]
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(File).where(
                File.id.in_(wanted),
                File.account_id == uuid.UUID(account_id),
                File.deleted_at.is_(None),
            )
        )
        found = {row.id: row for row in rows}
    missing = [str(file_id) for file_id in wanted if file_id not in found]
    if missing:
        raise StepFailed(
            ErrorCode.FILE_NOT_FOUND, f"file(s) not found: {', '.join(missing)}", permanent=True
        )
    return [found[file_id] for file_id in wanted]


def storage_key(file_id: uuid.UUID | str) -> str:
    """Where a file's bytes live in its pool (the upload uses the same layout)."""
    return f"files/{file_id}"


def content_type_of(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class NewFile:
    """A file a step wrote: its bytes are already at ``storage_key(id)`` in ``pool_id``.

    Steps derive ``id`` deterministically (``uuid5`` of the task and the output's name) so
    a step repeated after a crash writes the same object and record, never a second one."""

    id: uuid.UUID
    name: str
    size: int
    hash: str
    pool_id: uuid.UUID
    bundle_id: uuid.UUID | None = None
    content_type: str | None = None


async def add_files(runtime: Runtime, account_id: str, files: Sequence[NewFile]) -> None:
    """Records the files in the catalogue, all in one transaction; records that exist stay."""
    if not files:
        return
    rows = [
        {
            "id": new.id,
            "account_id": uuid.UUID(account_id),
            "name": new.name,
            "size": new.size,
            "content_type": new.content_type or content_type_of(new.name),
            "hash": new.hash,
            "pool_id": new.pool_id,
            "bundle_id": new.bundle_id,
            "storage_key": storage_key(new.id),
        }
        for new in files
    ]
    async with runtime.sessions.begin() as session:
        # A list of rows runs as executemany (batched by psycopg): any number of files, one
        # transaction, so they all appear at once.
        await session.execute(insert(File).on_conflict_do_nothing(index_elements=[File.id]), rows)


def output_id(task_id: str, name: str) -> uuid.UUID:
    """The stable id of a task's output called ``name`` (see NewFile)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"taskdrive:{task_id}:{name}")


async def switch_record(runtime: Runtime, file: File, **values: Any) -> bool:
    """Sets ``values`` on the file's record in one statement, only if the record is still
    live where ``file`` says its bytes are (pool and key); False when it is not (moved,
    rewritten or deleted meanwhile), so a step never points a record at bytes it did not
    check."""
    async with runtime.sessions.begin() as session:
        switched = await session.scalar(
            update(File)
            .where(
                File.id == file.id,
                File.pool_id == file.pool_id,
                File.storage_key == file.storage_key,
                File.deleted_at.is_(None),
            )
            .values(**values)
            .returning(File.id)
        )
    return switched is not None
