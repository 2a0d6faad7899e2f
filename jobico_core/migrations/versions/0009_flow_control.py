"""flow control per key: executions.flow, debounce_key, superseded_by, priority and the debounce index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_QUEUED = "debounce_key IS NOT NULL AND status = 'queued'"


def upgrade() -> None:
    with op.batch_alter_table('executions') as batch:
        batch.add_column(sa.Column('flow', sa.Text(), nullable=True))
        batch.add_column(sa.Column('debounce_key', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('superseded_by', sa.String(length=36), nullable=True))
        batch.add_column(sa.Column('priority', sa.Integer(), nullable=True))
    op.create_index('ix_executions_debounce', 'executions', ['tenant_id', 'package', 'event', 'debounce_key'],
                    unique=False, postgresql_where=sa.text(_QUEUED), sqlite_where=sa.text(_QUEUED))


def downgrade() -> None:
    op.drop_index('ix_executions_debounce', table_name='executions')
    with op.batch_alter_table('executions') as batch:
        batch.drop_column('priority')
        batch.drop_column('superseded_by')
        batch.drop_column('debounce_key')
        batch.drop_column('flow')
