"""outbox: what each customer update carried

A customer update carries the public actions after the participant's
``last_update_action_id``.  An action made public later (``postdesk action
toggle``) may have an id below that mark; to still send it exactly once, the
notifier records per sent update which actions it carried (``action_ids``)
and the mark it started from (``since_action_id``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action_ids", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("since_action_id", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("since_action_id")
        batch_op.drop_column("action_ids")
