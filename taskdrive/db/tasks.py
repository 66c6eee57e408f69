"""Queries over the task projection for the generic task API. They never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskdrive.auth import Principal
from taskdrive.db.models import Task
from taskdrive.errors import ErrorCode, TaskdriveError


def owned_by(principal: Principal) -> ColumnElement[bool]:
    """Admins see every account; another account's tasks look like they do not exist."""
    if principal.is_admin:
        return and_(True)
    return Task.account_id == principal.account_id


async def get_task(
    session: AsyncSession, task_id: str, principal: Principal, *, for_update: bool = False
) -> Task:
    query = select(Task).where(
        Task.task_id == task_id, Task.deleted_at.is_(None), owned_by(principal)
    )
    task = await session.scalar(query.with_for_update() if for_update else query)
    if task is None:
        raise TaskdriveError(ErrorCode.TASK_NOT_FOUND, f"task {task_id} not found", taskId=task_id)
    return task


@dataclass
class TaskFilter:
    types: Sequence[str] = ()
    statuses: Sequence[str] = ()
    categories: Sequence[str] = ()
    search: str | None = None


def filtered(principal: Principal, where: TaskFilter) -> Select[Task]:
    query = select(Task).where(owned_by(principal), Task.deleted_at.is_(None))
    if where.types:
        query = query.where(Task.type.in_(where.types))
    if where.statuses:
        query = query.where(Task.status.in_(where.statuses))
    if where.categories:
        query = query.where(Task.category.in_(where.categories))
    if where.search:
        pattern = "%" + where.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern += "%"
        query = query.where(
            or_(
                Task.name.ilike(pattern),
                Task.description.ilike(pattern),
                Task.task_id == where.search,
            )
        )
    return query


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    where: TaskFilter,
    *,
    order_by: Sequence[ColumnElement[Any]],
    offset: int,
    limit: int,
) -> tuple[list[Task], int]:
    base = filtered(principal, where)
    total = await session.scalar(select(func.count()).select_from(base.subquery()))
    rows = await session.scalars(base.order_by(*order_by).offset(offset).limit(limit))
    return list(rows), int(total or 0)
