"""execution leases: executions.lease_until and the running rows' index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 16:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import jobico_core.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('executions') as batch:
        batch.add_column(sa.Column('lease_until', jobico_core.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index('ix_executions_running_lease', 'executions', ['lease_until'], unique=False,
                    postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))


def downgrade() -> None:
    op.drop_index('ix_executions_running_lease', table_name='executions')
    with op.batch_alter_table('executions') as batch:
        batch.drop_column('lease_until')
