"""traces: executions.trace_id and trace_parent (jobico_core.tracing)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 17:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('executions') as batch:
        batch.add_column(sa.Column('trace_id', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('trace_parent', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('executions') as batch:
        batch.drop_column('trace_parent')
        batch.drop_column('trace_id')
