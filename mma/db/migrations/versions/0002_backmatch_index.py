"""region_tiles.credible_level and alerts (hpx29, time) for back-matching in SQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Adds the searched probability of each tile, so that mma.db.backmatch can keep
only the tiles inside the credible-level cut within the range join, and
backfills it for regions stored before this revision (recomputed from the
stored densities exactly as mma.skymaps.region.Region.from_tiles does).
Replaces the index on alerts (hpx29) by one on (hpx29, time), which serves the
same lookups and lets PostgreSQL check the time window inside the index.
"""

import logging

import numpy as np
import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)


def upgrade() -> None:
    with op.batch_alter_table('region_tiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credible_level', sa.Float(), nullable=True))
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_hpx29')
        batch_op.create_index('ix_alerts_hpx29_time', ['hpx29', 'time'], unique=False)
    _backfill()


def _backfill() -> None:
    from mma.skymaps.region import Region

    conn = op.get_bind()
    tiles = sa.table('region_tiles', sa.column('region_pk'), sa.column('lo'), sa.column('hi'),
                     sa.column('probdensity'), sa.column('credible_level'))
    pending = conn.execute(sa.select(tiles.c.region_pk).distinct()
                           .where(tiles.c.credible_level.is_(None))).scalars().all()
    for region_pk in pending:
        rows = conn.execute(sa.select(tiles.c.lo, tiles.c.hi, tiles.c.probdensity)
                            .where(tiles.c.region_pk == region_pk)
                            .order_by(tiles.c.lo)).all()
        lo, hi, dens = (np.asarray(col) for col in zip(*rows, strict=True))
        region = Region.from_tiles(lo, hi, dens)
        conn.execute(
            sa.update(tiles)
            .where(tiles.c.region_pk == sa.bindparam('pk'), tiles.c.lo == sa.bindparam('tile_lo'))
            .values(credible_level=sa.bindparam('cl')),
            [{'pk': region_pk, 'tile_lo': int(a), 'cl': float(c)}
             for a, c in zip(region.lo, region.credible_level, strict=True)],
        )
    if pending:
        log.info('credible levels backfilled for %d stored regions', len(pending))


def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_hpx29_time')
        batch_op.create_index('ix_alerts_hpx29', ['hpx29'], unique=False)
    with op.batch_alter_table('region_tiles', schema=None) as batch_op:
        batch_op.drop_column('credible_level')
