"""uploads.verified_hash: the SHA-256 the API computed while the chunks arrived

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("verified_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("uploads", "verified_hash")
