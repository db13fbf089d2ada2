"""alerts (hpx29, time, object_pk): a covering index for back-matching

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

The correlator's back-match (mma.db.backmatch.objects_in_region) asks which
objects have an alert inside a new region's tiles and time window. With
object_pk in the (hpx29, time) index both SQLite and PostgreSQL answer it from
the index alone, instead of reading every matching alerts row (with its JSON
columns) from the table. The new index serves every lookup the old one did,
so it replaces it.
"""

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_hpx29_time_object_pk',
                              ['hpx29', 'time', 'object_pk'], unique=False)
        batch_op.drop_index('ix_alerts_hpx29_time')


def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_hpx29_time', ['hpx29', 'time'], unique=False)
        batch_op.drop_index('ix_alerts_hpx29_time_object_pk')
