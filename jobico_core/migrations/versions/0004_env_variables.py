"""environment and secrets: env_variables (a tenant's stored variables, encrypted at rest)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

import jobico_core.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'env_variables',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('secret', sa.Boolean(), nullable=False),
        sa.Column('sealed', sa.Text(), nullable=False),
        sa.Column('key_id', sa.String(length=16), nullable=False),
        sa.Column('updated_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'name', name='uq_env_variables_tenant_name'),
    )
    op.create_index('ix_env_variables_tenant_id', 'env_variables', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_env_variables_tenant_id', table_name='env_variables')
    op.drop_table('env_variables')
