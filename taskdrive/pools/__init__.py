"""Storage pools: the contract, its implementations and the registry of configured pools."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, ValuesView

from taskdrive.pools.base import ObjectNotFound, Pool, PoolError, UploadNotFound, UploadTarget
from taskdrive.pools.local import LocalPool
from taskdrive.pools.s3 import S3Pool
from taskdrive.settings import LocalPoolConfig, S3PoolConfig, Settings

__all__ = [
    "LocalPool",
    "ObjectNotFound",
    "Pool",
    "PoolError",
    "PoolRegistry",
    "S3Pool",
    "UploadNotFound",
    "UploadTarget",
    "create_pool",
]


def create_pool(config: LocalPoolConfig | S3PoolConfig) -> Pool:
    """The pool a configuration describes. Does no I/O: S3 clients connect on first use."""
    if isinstance(config, LocalPoolConfig):
        return LocalPool(config)
    return S3Pool(config)


class PoolRegistry:
    """The configured pools by id, and the default one."""

    def __init__(self, pools: Iterable[Pool], default_id: uuid.UUID) -> None:
        self._pools: dict[uuid.UUID, Pool] = {}
        for pool in pools:
            if pool.id in self._pools:
                raise ValueError(f"two pools have the id {pool.id}")
            self._pools[pool.id] = pool
        if default_id not in self._pools:
            raise ValueError(f"the default pool {default_id} is not configured")
        self._default_id = default_id

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolRegistry:
        return cls(map(create_pool, settings.all_pools), settings.default_pool_id)

    def get(self, pool_id: uuid.UUID) -> Pool:
        """The pool with this id; KeyError when none is configured."""
        try:
            return self._pools[pool_id]
        except KeyError:
            raise KeyError(f"no pool {pool_id}") from None

    @property
    def default(self) -> Pool:
        """The pool used when a request names none (``settings.default_pool_id``)."""
        return self._pools[self._default_id]

    def values(self) -> ValuesView[Pool]:
        return self._pools.values()

    def __iter__(self) -> Iterator[Pool]:
        return iter(self._pools.values())

    def __len__(self) -> int:
        return len(self._pools)

    def __contains__(self, pool_id: object) -> bool:
        return pool_id in self._pools

    async def close(self) -> None:
        """Closes every pool, even when closing one fails; then raises the first failure."""
        failures: list[Exception] = []
        for pool in self._pools.values():
            try:
                await pool.close()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
