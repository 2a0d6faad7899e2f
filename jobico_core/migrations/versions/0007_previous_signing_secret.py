"""webhook secret rotation with an overlap: tenants.previous_signing_secret,
previous_secret_expires_at

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 16:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

import jobico_core.db

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tenants') as batch:
        batch.add_column(sa.Column('previous_signing_secret', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('previous_secret_expires_at', jobico_core.db.UTCDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tenants') as batch:
        batch.drop_column('previous_secret_expires_at')
        batch.drop_column('previous_signing_secret')
