"""who claimed each delivery: a restarted daemon takes back its predecessor's claims

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

``outbox.claimed_by`` names the daemon instance (``kafka.instance``) that last
claimed a delivery. A daemon that starts under the same name releases the claims
its killed predecessor held, so they are sent at once instead of after
``outbox.lease_seconds``.
"""

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('claimed_by', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('claimed_by')
