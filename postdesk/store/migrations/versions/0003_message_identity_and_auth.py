"""message identity by sender and content; the authentication verdict per action

- ``message_ids.digest``: the filter's digest of author, subject and body
  (and whether the mail failed authentication).  Unique is now
  (key, digest), not key: a redelivery (same Message-ID, same content) is
  still one duplicate, but a forged mail that reuses a genuine Message-ID
  no longer makes the genuine mail a duplicate.  Rows from before get "".
- ``actions.auth``: the verdict of the message's SPF/DKIM/DMARC checks as
  JSON, shown by ``ticket show``.
- ``ix_outbox_message_id``: whom one of our Message-IDs was sent to (a
  reply to it makes its author no stranger only when it is that recipient).

The unique constraint on ``key`` came unnamed from revision 0001, which
SQLite cannot drop in place; so the table is rebuilt (new table, copy,
swap) the same way on every database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = "id, key, ticket_id, action_id, ours, created_at"


def _message_ids(name: str, with_digest: bool) -> None:
    columns: list[sa.schema.SchemaItem] = [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=998), nullable=False),
    ]
    if with_digest:
        columns.append(sa.Column("digest", sa.String(length=64), nullable=False, server_default=""))
    columns += [
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("action_id", sa.Integer(), nullable=True),
        sa.Column("ours", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", "digest", name="uq_message_ids_key_digest") if with_digest else sa.UniqueConstraint("key"),
    ]
    op.create_table(name, *columns)


def _swap(with_digest: bool, where: str = "") -> None:
    _message_ids("message_ids_new", with_digest)
    op.execute(f"INSERT INTO message_ids_new ({COLUMNS}) SELECT {COLUMNS} FROM message_ids{where}")
    op.drop_index("ix_message_ids_ticket_id", table_name="message_ids")
    op.drop_table("message_ids")
    op.rename_table("message_ids_new", "message_ids")
    op.create_index("ix_message_ids_ticket_id", "message_ids", ["ticket_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # The ids were copied: move the new table's sequence past them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('message_ids', 'id'), COALESCE((SELECT MAX(id) FROM message_ids), 0) + 1, false)"
        )


def upgrade() -> None:
    _swap(with_digest=True)
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auth", sa.Text(), nullable=False, server_default=""))
    op.create_index("ix_outbox_message_id", "outbox", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_message_id", table_name="outbox")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("auth")
    # Back to one row per key: the first recorded wins.
    _swap(with_digest=False, where=" WHERE id IN (SELECT MIN(id) FROM message_ids GROUP BY key)")
