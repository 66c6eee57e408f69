"""task framework: last error, idempotent create, audit actor, execution logs

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("request_digest", sa.String(length=64), nullable=True))
    op.add_column("task_events", sa.Column("actor", sa.String(length=64), nullable=True))
    op.create_table(
        "task_logs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.task_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_logs_task", "task_logs", ["task_id", "id"], unique=False)
    op.create_index("ix_tasks_type_status", "tasks", ["type", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tasks_type_status", table_name="tasks")
    op.drop_index("ix_task_logs_task", table_name="task_logs")
    op.drop_table("task_logs")
    op.drop_column("task_events", "actor")
    op.drop_column("tasks", "request_digest")
    op.drop_column("tasks", "last_error")
