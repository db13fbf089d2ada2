"""event x event coincidences

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

A coincidence is either a candidate (an optical object scored against an event)
or, new here, a pair of events (GW x GRB, GW x neutrino, GRB x neutrino):
``coincidences.other_event_pk`` names the second event, and such a row has no
object, alert or score, so those columns become nullable; so do the region
columns of its revision history (an event may be paired on time alone).
"""

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    id_type = sa.Integer().with_variant(sa.BigInteger(), 'postgresql')
    with op.batch_alter_table('coincidences') as batch:
        batch.add_column(sa.Column('other_event_pk', id_type, nullable=True))
        batch.create_foreign_key('fk_coincidences_other_event_pk_events', 'events',
                                 ['other_event_pk'], ['id'])
        batch.create_index('ix_coincidences_other_event_pk', ['other_event_pk'])
        for name in ('alert_pk', 'region_pk'):
            batch.alter_column(name, existing_type=id_type, nullable=True)
        for name in ('log_bayes_factor', 'p_chance'):
            batch.alter_column(name, existing_type=sa.Float(), nullable=True)
    with op.batch_alter_table('coincidence_revisions') as batch:
        batch.alter_column('region_pk', existing_type=id_type, nullable=True)
        batch.alter_column('region_version', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    conn = op.get_bind()
    pairs = sa.table('coincidences', sa.column('coincidence_id'), sa.column('object_pk'))
    history = sa.table('coincidence_revisions', sa.column('coincidence_id'))
    mail = sa.table('outbox', sa.column('coincidence_id'))
    gone = sa.select(pairs.c.coincidence_id).where(pairs.c.object_pk.is_(None))
    for table in (history, mail):
        conn.execute(sa.delete(table).where(table.c.coincidence_id.in_(gone)))
    conn.execute(sa.delete(pairs).where(pairs.c.object_pk.is_(None)))
    id_type = sa.Integer().with_variant(sa.BigInteger(), 'postgresql')
    with op.batch_alter_table('coincidence_revisions') as batch:
        batch.alter_column('region_version', existing_type=sa.Integer(), nullable=False)
        batch.alter_column('region_pk', existing_type=id_type, nullable=False)
    with op.batch_alter_table('coincidences') as batch:
        for name in ('log_bayes_factor', 'p_chance'):
            batch.alter_column(name, existing_type=sa.Float(), nullable=False)
        for name in ('alert_pk', 'region_pk'):
            batch.alter_column(name, existing_type=id_type, nullable=False)
        batch.drop_index('ix_coincidences_other_event_pk')
        batch.drop_constraint('fk_coincidences_other_event_pk_events', type_='foreignkey')
        batch.drop_column('other_event_pk')
