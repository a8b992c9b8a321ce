"""departments, owners, pending and merged tickets; HTML and inline parts

- ``tickets.department``: the ``[[departments]]`` name ("" = the default).
- ``tickets.owner_id``: the staff member who owns the ticket.
- ``tickets.merged_into``: the number of the ticket it was merged into.
- ``tickets.closed_at``: when it was last closed (the reopen window).
- ``tickets.last_public_staff_at``, ``tickets.reminded_at``: the pending
  reminder and auto-close; ``ix_tickets_pending`` serves their due query.
- ``actions.html``: the message's sanitised HTML.
- ``attachments.inline``: a part shown inline by its Content-ID.

Existing closed tickets get ``closed_at`` = their ``updated_at``, the best
that is known.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("department", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("merged_into", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_public_staff_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reminded_at", sa.DateTime(), nullable=True))
        batch_op.create_foreign_key("fk_tickets_owner_id_people", "people", ["owner_id"], ["id"])
        batch_op.create_index("ix_tickets_pending", ["status", "last_public_staff_at"], unique=False)
    op.execute("UPDATE tickets SET closed_at = updated_at WHERE status = 'closed'")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("html", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inline", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_column("inline")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("html")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_pending")
        batch_op.drop_constraint("fk_tickets_owner_id_people", type_="foreignkey")
        for column in ("reminded_at", "last_public_staff_at", "closed_at", "merged_into", "owner_id", "department"):
            batch_op.drop_column(column)
