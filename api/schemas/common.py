"""Shared wire models: camelCase JSON, as in the seeds."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from taskdrive.db.models import File


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CloudFile(CamelModel):
    id: uuid.UUID
    name: str
    size: int
    content_type: str
    hash: str
    pool_id: uuid.UUID
    bundle_id: uuid.UUID | None
    expired_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: File) -> CloudFile:
        return cls(
            id=row.id,
            name=row.name,
            size=row.size,
            content_type=row.content_type,
            hash=row.hash,
            pool_id=row.pool_id,
            bundle_id=row.bundle_id,
            expired_at=row.expired_at,
            created_at=row.created_at,
        )
