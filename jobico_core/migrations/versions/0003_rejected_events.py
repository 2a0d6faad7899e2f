"""MQTT triggers: rejected_events (messages the bridge could not accept, kept for the tenant)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import jobico_core.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rejected_events',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('event', sa.String(length=64), nullable=True),
        sa.Column('trigger', sa.String(length=16), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('errors', sa.JSON(), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('payload_size', sa.Integer(), nullable=False),
        sa.Column('created_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_rejected_events_tenant_id', 'rejected_events', ['tenant_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_rejected_events_tenant_id', table_name='rejected_events')
    op.drop_table('rejected_events')
