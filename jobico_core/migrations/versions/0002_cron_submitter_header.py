"""cron triggers and submitter header: executions.scheduled_at (unique per tenant, event and
fire time) and tenants.submitter_header

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import jobico_core.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scheduled_at', jobico_core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('uq_executions_scheduled_fire', ['tenant_id', 'event', 'scheduled_at'], unique=True,
                              postgresql_where=sa.text('scheduled_at IS NOT NULL'),
                              sqlite_where=sa.text('scheduled_at IS NOT NULL'))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submitter_header', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('submitter_header')
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.drop_index('uq_executions_scheduled_fire')
        batch_op.drop_column('scheduled_at')
