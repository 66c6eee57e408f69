"""The file catalogue as task steps see it: files of the task's account, by id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select

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
