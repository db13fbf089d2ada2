"""daemon_status: heartbeats of running daemons for ``mma status``

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

One row per daemon instance (source "") and one per Kafka topic it consumes,
written by mma.service.heartbeat.beat and removed by mma.service.heartbeat.retire.
"""

import sqlalchemy as sa
from alembic import op

import mma.db.schema


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('daemon_status',
    sa.Column('instance', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=False),
    sa.Column('messages', sa.BigInteger(), nullable=False),
    sa.Column('dead_letters', sa.BigInteger(), nullable=False),
    sa.Column('lag', sa.BigInteger(), nullable=True),
    sa.Column('last_message_at', mma.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', mma.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', mma.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=256), nullable=False),
    sa.PrimaryKeyConstraint('instance', 'source', name=op.f('pk_daemon_status'))
    )


def downgrade() -> None:
    op.drop_table('daemon_status')
