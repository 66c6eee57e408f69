"""claim_upload_chunk(): a chunk's lock and the ledger check, in one round trip

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The check must run after the lock is taken, with a snapshot that postdates it, or a chunk
    # committed by the lock's previous holder could go unseen and be written twice. One plain
    # statement cannot do that (its snapshot is taken before it runs); the query inside a
    # VOLATILE function takes a fresh snapshot of its own.
    op.execute(
        """
        CREATE FUNCTION claim_upload_chunk(p_task_id varchar, p_index integer, p_lock_key bigint)
        RETURNS text LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            locked boolean := pg_try_advisory_xact_lock(p_lock_key);
        BEGIN
            IF EXISTS (
                SELECT 1 FROM upload_chunks WHERE task_id = p_task_id AND chunk_index = p_index
            ) THEN
                RETURN 'stored';
            END IF;
            RETURN CASE WHEN locked THEN 'claimed' ELSE 'busy' END;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION claim_upload_chunk(varchar, integer, bigint)")
