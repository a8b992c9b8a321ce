"""blobs in the database: ``blobs`` and ``blob_chunks``

``[store] blobs = "database"`` keeps attachment bytes in these tables, so
every host on one PostgreSQL reads every attachment: ``blobs`` names a blob
by its SHA-256 and records its size; ``blob_chunks`` holds its bytes in
pieces of 256 KiB, in ``seq`` order.  Existing attachment files stay where
they are until ``postdesk blobs migrate --to database`` moves them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name="fk_blob_chunks_sha256_blobs"),
        sa.PrimaryKeyConstraint("sha256", "seq"),
    )


def downgrade() -> None:
    op.drop_table("blob_chunks")
    op.drop_table("blobs")
