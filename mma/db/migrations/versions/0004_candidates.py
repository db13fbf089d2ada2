"""candidates per object, event classes, packet history, revision history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

* ``events.event_class`` (backfilled from the messenger: gw -> gw.cbc, grb -> grb,
  xray -> xray, neutrino -> neutrino.track), which chooses the time window.
* ``alerts.history`` and ``alerts.history_source``: the packet's earlier >= 5 sigma
  positive detections (NULL for alerts stored before: "not told").
* ``coincidences.object_pk`` and the fold to one row per (event, survey, object):
  the coincidences of one object with one event become one candidate whose id is
  uuid5(event_id|survey|object_id). The row kept is the live one with the highest
  ln B (else the newest); its revision is the highest of the group, so consumers
  keyed by the new id never see it go backwards; the outbox rows of every folded row
  point to the new id, so a later retraction still reaches every channel that carried
  any of them. Payloads keep their version-1 fields until the next re-score rewrites
  them as version 2 (the daemon's periodic re-score, or the end of a replay), which
  publishes one update per live candidate.
* ``coincidence_revisions``: every scoring of a candidate that changed anything
  (consecutive quiet ones share a row, counted in ``n_scorings``).
"""

import logging
import uuid

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

NS = uuid.UUID("5d1c3e0a-6f55-4c36-9a38-8f0e3e0b8a11")  # mma.match.candidate.COINCIDENCE_NS
CLASSES = {'gw': 'gw.cbc', 'grb': 'grb', 'xray': 'xray', 'neutrino': 'neutrino.track'}


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch rebuild: on SQLite a rebuild drops and re-creates
    # the table, which foreign keys from rows of other tables (outbox -> coincidences,
    # notices -> events) refuse. New columns are therefore nullable; mma always fills them.
    op.add_column('events', sa.Column('event_class', sa.String(length=32), nullable=True))
    events = sa.table('events', sa.column('messenger'), sa.column('event_class'))
    for messenger, event_class in CLASSES.items():
        op.execute(sa.update(events).where(events.c.messenger == messenger)
                   .values(event_class=event_class))
    op.execute(sa.update(events).where(events.c.event_class.is_(None)).values(event_class='xray'))
    op.add_column('alerts', sa.Column('history', sa.JSON(), nullable=True))
    op.add_column('alerts', sa.Column('history_source', sa.String(length=32), nullable=True))
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite takes a foreign key only inline in ADD COLUMN (alembic would rebuild).
        op.execute('ALTER TABLE coincidences ADD COLUMN object_pk INTEGER '
                   'CONSTRAINT fk_coincidences_object_pk_objects REFERENCES objects (id)')
    else:
        op.add_column('coincidences', sa.Column(
            'object_pk', sa.BigInteger(),
            sa.ForeignKey('objects.id', name='fk_coincidences_object_pk_objects'),
            nullable=True))
    _fold()
    op.create_index('ix_coincidences_object_pk', 'coincidences', ['object_pk'], unique=False)

    op.create_table(
        'coincidence_revisions',
        sa.Column('id', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'), autoincrement=True, nullable=False),
        sa.Column('coincidence_id', sa.String(length=36), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('published', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('changes', sa.JSON(), nullable=False),
        sa.Column('region_pk', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'), nullable=False),
        sa.Column('region_version', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('credible_level', sa.Float(), nullable=True),
        sa.Column('log_bayes_factor', sa.Float(), nullable=True),
        sa.Column('p_chance', sa.Float(), nullable=True),
        sa.Column('n_detections', sa.Integer(), nullable=True),
        sa.Column('rank', sa.Integer(), nullable=True),
        sa.Column('n_scorings', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['coincidence_id'], ['coincidences.coincidence_id'], name='fk_coincidence_revisions_coincidence_id_coincidences'),
        sa.ForeignKeyConstraint(['region_pk'], ['regions.id'], name='fk_coincidence_revisions_region_pk_regions'),
        sa.PrimaryKeyConstraint('id', name='pk_coincidence_revisions'),
    )
    op.create_index('ix_coincidence_revisions_coincidence_id', 'coincidence_revisions', ['coincidence_id'], unique=False)


def _fold() -> None:
    """One row per (event, object): see the module docstring."""
    conn = op.get_bind()
    meta = sa.MetaData()
    co = sa.Table('coincidences', meta, autoload_with=conn)
    al = sa.Table('alerts', meta, autoload_with=conn)
    ob = sa.Table('objects', meta, autoload_with=conn)
    ev = sa.Table('events', meta, autoload_with=conn)
    box = sa.Table('outbox', meta, autoload_with=conn)
    rows = conn.execute(
        sa.select(co, al.c.object_pk.label('obj_pk'), ob.c.object_id, ob.c.survey,
                  ev.c.event_id)
        .join(al, al.c.id == co.c.alert_pk).join(ob, ob.c.id == al.c.object_pk)
        .join(ev, ev.c.id == co.c.event_pk)).all()
    groups: dict[tuple[int, int], list] = {}
    for row in rows:
        groups.setdefault((row.event_pk, row.obj_pk), []).append(row)
    for members in groups.values():
        keep = max(members, key=lambda r: (r.status != 'retracted', r.log_bayes_factor,
                                           r.updated_at, r.coincidence_id))
        cid = str(uuid.uuid5(NS, f"{keep.event_id}|{keep.survey}|{keep.object_id}"))
        payload = {**keep.payload, 'coincidence_id': cid}
        values = {c.name: getattr(keep, c.name) for c in co.columns}
        values.update(coincidence_id=cid, object_pk=keep.obj_pk, payload=payload,
                      revision=max(r.revision for r in members))
        conn.execute(sa.insert(co).values(**values))
        old = [r.coincidence_id for r in members]
        conn.execute(sa.update(box).where(box.c.coincidence_id.in_(old))
                     .values(coincidence_id=cid))
        conn.execute(sa.delete(co).where(co.c.coincidence_id.in_(old)))
    if groups:
        log.info('folded %d coincidences into %d candidates (one per event and object)',
                 len(rows), len(groups))


def downgrade() -> None:
    op.drop_index('ix_coincidence_revisions_coincidence_id', table_name='coincidence_revisions')
    op.drop_table('coincidence_revisions')
    op.drop_index('ix_coincidences_object_pk', table_name='coincidences')
    with op.batch_alter_table('coincidences', schema=None) as batch_op:
        batch_op.drop_column('object_pk')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_column('history_source')
        batch_op.drop_column('history')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('event_class')
