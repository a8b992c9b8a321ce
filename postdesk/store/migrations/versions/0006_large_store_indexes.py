"""indexes for large stores and for retention

- ``ix_tickets_requester_created``: tickets a sender opened since a time
  (the filter's new-ticket rate limit, on every new ticket) scanned the
  whole tickets table.
- ``ix_outbox_sent``: the notifier's count of acknowledgements sent in its
  window read every sent outbox row.
- ``ix_outbox_message_state`` replaces ``ix_outbox_message_id``: the
  stranger rule's "whom did we send this Message-ID" (message_id IN ...,
  state = 'sent') went through ``ix_outbox_due`` on SQLite, every sent row.
- ``ix_tickets_status_updated``: ``postdesk purge`` takes closed tickets,
  oldest first.
- ``ix_tickets_status_number``: a page of ``postdesk ticket list --status``
  (without it: every ticket of that status, sorted).
- ``ix_tickets_owner_id``, ``ix_actions_author_ticket``,
  ``ix_participants_person_id``: whether a person is still referenced
  (purge, ``postdesk person forget``), and the foreign key checks when a
  person row is deleted.  The ticket in ``ix_actions_author_ticket`` keeps
  "a sender's actions on ticket N" (the auto-responder rule) from walking
  all of a staff member's actions.
- ``ix_message_ids_action_id``, ``ix_outbox_action_id``: deleting an action
  checks these foreign keys; without an index each check scans the table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_tickets_requester_created", "tickets", ["requester_id", "created_at"]),
    ("ix_tickets_status_updated", "tickets", ["status", "updated_at"]),
    ("ix_tickets_status_number", "tickets", ["status", "number"]),
    ("ix_tickets_owner_id", "tickets", ["owner_id"]),
    ("ix_actions_author_ticket", "actions", ["author_id", "ticket_id"]),
    ("ix_participants_person_id", "participants", ["person_id"]),
    ("ix_message_ids_action_id", "message_ids", ["action_id"]),
    ("ix_outbox_action_id", "outbox", ["action_id"]),
    ("ix_outbox_sent", "outbox", ["kind", "state", "sent_at"]),
)


def upgrade() -> None:
    # Plain CREATE INDEX (no batch mode: SQLite adds an index in place).
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    op.create_index("ix_outbox_message_state", "outbox", ["message_id", "state"], unique=False)
    op.drop_index("ix_outbox_message_id", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_message_id", "outbox", ["message_id"], unique=False)
    op.drop_index("ix_outbox_message_state", table_name="outbox")
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
