"""file_relocations: the move of a file's bytes under way, noted before its copy starts

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_relocations",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("from_pool_id", sa.Uuid(), nullable=False),
        sa.Column("from_key", sa.String(length=1024), nullable=False),
        sa.Column("to_pool_id", sa.Uuid(), nullable=False),
        sa.Column("to_key", sa.String(length=1024), nullable=False),
        sa.Column("move", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("task_id", "file_id"),
    )


def downgrade() -> None:
    op.drop_table("file_relocations")
