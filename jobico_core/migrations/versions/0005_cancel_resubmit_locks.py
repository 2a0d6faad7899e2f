"""cancel, resubmit and named locks: executions.locks, waiting_for, resubmitted_from,
cancel_requested_at, cancelled_by

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 21:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

import jobico_core.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('executions') as batch:
        batch.add_column(sa.Column('locks', sa.String(length=600), nullable=True))
        batch.add_column(sa.Column('waiting_for', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('resubmitted_from', sa.String(length=36), nullable=True))
        batch.add_column(sa.Column('cancel_requested_at', jobico_core.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('cancelled_by', sa.String(length=128), nullable=True))
    op.create_index('ix_executions_resubmitted_from', 'executions', ['resubmitted_from'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_executions_resubmitted_from', table_name='executions')
    with op.batch_alter_table('executions') as batch:
        for column in ('cancelled_by', 'cancel_requested_at', 'resubmitted_from', 'waiting_for', 'locks'):
            batch.drop_column(column)
