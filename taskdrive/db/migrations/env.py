"""Alembic environment: runs synchronously on psycopg 3 against the configured database."""

from alembic import context
from sqlalchemy import create_engine, pool

from taskdrive.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "taskdrive.db.migrate sets sqlalchemy.url"

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        # Several processes may migrate at once (`taskdrive up` and a worker): serialize them.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7263548901)")
        context.run_migrations()
