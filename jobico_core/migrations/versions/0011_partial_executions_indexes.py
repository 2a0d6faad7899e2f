"""executions: the seq, chained_from and resubmitted_from indexes partial (non-NULL rows only)

A webhook's INSERT leaves the three columns NULL, so it no longer adds an entry to each of
the three indexes; every query using them filters ``col = x`` / ``col > x`` / ``IN`` (or
``seq IS NOT NULL``), which PostgreSQL and SQLite prove implies ``col IS NOT NULL``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 23:40:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# index name: its columns (the indexed column is the one that must be non-NULL: the last)
_INDEXES = {
    'ix_executions_tenant_seq': ['tenant_id', 'seq'],
    'ix_executions_chained_from': ['chained_from'],
    'ix_executions_resubmitted_from': ['resubmitted_from'],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        where = sa.text(f"{columns[-1]} IS NOT NULL")
        op.drop_index(name, table_name='executions')
        op.create_index(name, 'executions', columns, unique=False, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, columns in _INDEXES.items():
        op.drop_index(name, table_name='executions')
        op.create_index(name, 'executions', columns, unique=False)
