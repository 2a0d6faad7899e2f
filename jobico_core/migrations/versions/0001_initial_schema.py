"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 16:04:55.974444
"""
import sqlalchemy as sa
from alembic import op

import jobico_core.db

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('executions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('package', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('queue', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('code', jobico_core.db.U64(), nullable=True),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('stdout', sa.Text(), nullable=False),
    sa.Column('limit', sa.String(length=16), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('dead_lettered', sa.Boolean(), nullable=False),
    sa.Column('chained_from', sa.String(length=36), nullable=True),
    sa.Column('chain_depth', sa.Integer(), nullable=False),
    sa.Column('submitter', sa.String(length=128), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('created_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', jobico_core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', jobico_core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_executions_chained_from'), ['chained_from'], unique=False)
        batch_op.create_index('ix_executions_tenant_id_desc', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_executions_tenant_package', ['tenant_id', 'package', 'id'], unique=False)
        batch_op.create_index('ix_executions_tenant_status', ['tenant_id', 'status'], unique=False)
        batch_op.create_index('ix_executions_tenant_seq', ['tenant_id', 'seq'], unique=False)

    op.create_table('counters',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    # the stream sequence of finished executions: a real SEQUENCE where there is one
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE execution_seq")
    else:
        op.execute("INSERT INTO counters (name, value) VALUES ('execution_seq', 0)")

    op.create_table('tenants',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('webhook_auth', sa.String(length=8), nullable=False),
    sa.Column('signing_secret', sa.String(length=128), nullable=True),
    sa.Column('created_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', jobico_core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash'),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_api_keys_tenant_name')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('execution_logs',
    sa.Column('execution_id', sa.String(length=36), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['execution_id'], ['executions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('execution_id', 'idx')
    )
    op.create_table('files',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('object_key', sa.String(length=256), nullable=False),
    sa.Column('uploaded_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_files_tenant_name')
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('packages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('active_version', sa.Integer(), nullable=False),
    sa.Column('created_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_packages_tenant_name')
    )
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_packages_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('event_routes',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'event')
    )
    with op.batch_alter_table('event_routes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_routes_package_id'), ['package_id'], unique=False)

    op.create_table('package_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('pins', sa.JSON(), nullable=False),
    sa.Column('created_at', jobico_core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('package_id', 'number', name='uq_package_versions_number')
    )
    with op.batch_alter_table('package_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_package_versions_package_id'), ['package_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('package_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_package_versions_package_id'))

    op.drop_table('package_versions')
    with op.batch_alter_table('event_routes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_routes_package_id'))

    op.drop_table('event_routes')
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_packages_tenant_id'))

    op.drop_table('packages')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_tenant_id'))

    op.drop_table('files')
    op.drop_table('execution_logs')
    op.drop_table('counters')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE execution_seq")
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_tenant_id'))

    op.drop_table('api_keys')
    op.drop_table('tenants')
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.drop_index('ix_executions_tenant_status')
        batch_op.drop_index('ix_executions_tenant_package')
        batch_op.drop_index('ix_executions_tenant_id_desc')
        batch_op.drop_index(batch_op.f('ix_executions_chained_from'))

    op.drop_table('executions')
