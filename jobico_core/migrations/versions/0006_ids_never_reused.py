"""ids never reused: SQLite tables with integer ids become AUTOINCREMENT

A deleted row's id must never come back: in-process caches and queued tasks name rows by id
(jobico_core.db.NEVER_REUSED). SQLite hands out the highest rowid + 1 again after a delete
unless the table is AUTOINCREMENT, which it cannot be made by ALTER: each table is rebuilt
(batch mode, recreate="always"). Each table's counter starts above its highest id, and the
versions' above every id an execution still names (its package may be deleted), so an old
task's version id never meets a new version. (Other ids freed before the upgrade are named by
nothing left, in the database or out of it: they may be handed out once more, harmlessly.)
PostgreSQL sequences never go back: nothing to do.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 16:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

from jobico_core.db import INTEGER_ID_TABLES

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _rebuild(autoincrement: bool) -> None:
    # migrations/env.py turns foreign keys off on SQLite: dropping the old table must not cascade
    for table in INTEGER_ID_TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    if not _sqlite():
        return
    bind = op.get_bind()
    _rebuild(True)
    floor = bind.execute(sa.text("SELECT MAX(version_id) FROM executions")).scalar()
    if floor is not None:  # versions of deleted packages that executions still name
        seq = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'package_versions'")).scalar()
        if seq is None:
            bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('package_versions', :n)"),
                         {"n": floor})
        elif seq < floor:
            bind.execute(sa.text("UPDATE sqlite_sequence SET seq = :n WHERE name = 'package_versions'"),
                         {"n": floor})
    problems = bind.execute(sa.text("PRAGMA foreign_key_check")).all()
    if problems:
        raise RuntimeError(f"foreign keys broken after rebuilding the tables: {problems[:5]}")


def downgrade() -> None:
    if _sqlite():
        _rebuild(False)
