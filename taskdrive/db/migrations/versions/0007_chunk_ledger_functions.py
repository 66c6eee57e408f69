"""claim_chunk_of_upload() and record_upload_chunk(): a chunk request's two statements

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The chunk path sends its statements as simple queries (taskdrive.db.chunk_ledger), which
    # Postgres would parse and plan afresh for every chunk. Inside PL/pgSQL functions the plans
    # are kept per connection: each call plans only the call.
    op.execute(
        """
        CREATE FUNCTION claim_chunk_of_upload(
            p_task_id varchar, p_index integer, p_lock_key bigint, p_admin boolean,
            p_account_id uuid
        )
        RETURNS TABLE (
            status varchar, storage_key varchar, multipart_upload_id varchar, file_size bigint,
            chunk_size bigint, chunks_count integer, pool_id uuid, claim text
        )
        LANGUAGE plpgsql VOLATILE AS $$
        #variable_conflict use_column
        BEGIN
            -- claim_upload_chunk (0004) takes the lock, then checks with a snapshot of its own.
            RETURN QUERY
            SELECT t.status, u.storage_key, u.multipart_upload_id, u.file_size, u.chunk_size,
                   u.chunks_count, u.pool_id, claim_upload_chunk(u.task_id, p_index, p_lock_key)
            FROM uploads u JOIN tasks t ON t.task_id = u.task_id
            WHERE u.task_id = p_task_id AND t.deleted_at IS NULL
              AND (p_admin OR u.account_id = p_account_id);
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION record_upload_chunk(p_task_id varchar, p_index integer, p_size bigint)
        RETURNS TABLE (chunks_uploaded integer, bytes_uploaded bigint, last_activity timestamptz)
        LANGUAGE plpgsql VOLATILE AS $$
        #variable_conflict use_column
        BEGIN
            INSERT INTO upload_chunks (task_id, chunk_index, size)
            VALUES (p_task_id, p_index, p_size);
            RETURN QUERY
            UPDATE uploads u SET chunks_uploaded = u.chunks_uploaded + 1,
                   bytes_uploaded = u.bytes_uploaded + p_size,
                   last_activity = clock_timestamp()
            WHERE u.task_id = p_task_id
            RETURNING u.chunks_uploaded, u.bytes_uploaded, u.last_activity;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION record_upload_chunk(varchar, integer, bigint)")
    op.execute("DROP FUNCTION claim_chunk_of_upload(varchar, integer, bigint, boolean, uuid)")
