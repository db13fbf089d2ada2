"""the survey background map: counts per survey, night and HEALPix pixel

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

``background_cells`` holds, per survey, night and order-5 NESTED pixel, the objects
first seen, the objects seen and the alerts stored (mma.match.background). It starts
empty: until a survey has been watched for ``background.min_nights`` nights, its
candidates are scored against the documented prior rate and flagged
``background_unmeasured``.
"""

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'background_cells',
        sa.Column('survey', sa.String(length=16), nullable=False),
        sa.Column('night', sa.Integer(), nullable=False),
        sa.Column('pixel', sa.Integer(), nullable=False),
        sa.Column('n_new', sa.Integer(), nullable=False),
        sa.Column('n_all', sa.Integer(), nullable=False),
        sa.Column('n_alerts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('survey', 'night', 'pixel', name='pk_background_cells'),
    )


def downgrade() -> None:
    op.drop_table('background_cells')
