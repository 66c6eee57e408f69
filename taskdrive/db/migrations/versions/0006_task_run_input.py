"""tasks.run_input: the input of the task's latest run, so a retry needs no Temporal history

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("run_input", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "run_input")
