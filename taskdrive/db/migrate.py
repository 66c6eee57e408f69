"""Schema migrations (Alembic) and the mirror of configured pools into the ``pools`` table."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, func
from sqlalchemy.dialects.postgresql import insert

from taskdrive.db.engine import database_url
from taskdrive.db.models import Pool
from taskdrive.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url(settings).replace("%", "%%"))
    return config


def upgrade(settings: Settings) -> None:
    """Bring the schema to the newest revision, then mirror the configured pools."""
    command.upgrade(alembic_config(settings), "head")
    sync_pools(settings)


def sync_pools(settings: Settings) -> None:
    engine = create_engine(database_url(settings))
    try:
        with engine.begin() as conn:
            for pool in settings.all_pools:
                public = pool.model_dump(
                    mode="json",
                    by_alias=True,
                    exclude={"id", "name", "kind", "access_key", "secret_key"},
                )
                stmt = insert(Pool).values(
                    id=pool.id, name=pool.name, kind=pool.kind, config=public
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[Pool.id],
                        set_={
                            "name": stmt.excluded.name,
                            "kind": stmt.excluded.kind,
                            "config": stmt.excluded.config,
                            "updated_at": func.now(),
                        },
                    )
                )
    finally:
        engine.dispose()
