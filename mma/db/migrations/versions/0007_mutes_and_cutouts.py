"""muted events, and the cutouts of stored alerts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

``events.muted_at``: when a person muted the event (``mma mute``); the human
channels (Slack, email) get nothing new about a muted event, the Kafka topic
still does. NULL: not muted.

``cutouts``: the image stamps an alert packet carries (ZTF and Rubin science,
template and difference cutouts), as the packet gives them, for the event
page and the email's cutout triplet.
"""

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('muted_at', sa.DateTime(timezone=True), nullable=True))
    id_type = sa.Integer().with_variant(sa.BigInteger(), 'postgresql')
    op.create_table(
        'cutouts',
        sa.Column('alert_pk', id_type, sa.ForeignKey('alerts.id',
                  name='fk_cutouts_alert_pk_alerts'), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('format', sa.String(length=16), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('alert_pk', 'kind', name='pk_cutouts'),
    )


def downgrade() -> None:
    op.drop_table('cutouts')
    with op.batch_alter_table('events') as batch:
        batch.drop_column('muted_at')
