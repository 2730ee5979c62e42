"""Schema migrations, run programmatically when a database is opened.

Several processes may open the same database at once (a collection job's workers, a dashboard), so the
upgrade happens inside one transaction that first takes the database's write lock — ``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL — and re-reads the revision under it: the first
opener migrates, the others wait and then find the schema already at head. Both databases have
transactional DDL (SQLite once the driver's legacy transaction handling is off, see ``db.py``), so a
migration interrupted half-way leaves the previous schema intact.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from inferperf.errors import StoreError
from inferperf.store.schema import VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: key of the PostgreSQL advisory lock that serialises migrations (any constant unique to inferperf)
_PG_LOCK_KEY = 0x1F_E2_F0_01


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations; no alembic.ini is needed."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of inferperf knows."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StoreError(f"no schema migrations found under {MIGRATIONS_DIR}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None for a database inferperf has never initialised."""
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def _check_known(revision: str | None) -> None:
    if revision is None:
        return
    from alembic.util import CommandError

    try:
        known = _script().get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise StoreError(
            f"the database schema is at revision {revision}, which this version of inferperf does not know "
            f"(its newest is {head_revision()}); upgrade inferperf"
        )


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the schema to ``revision`` (default head) and return the revision it is at afterwards.

    A database already at head costs one read and takes no write lock.
    """
    from alembic import command

    target = head_revision() if revision == "head" else revision
    with engine.connect() as conn:
        current = current_revision(conn)
        conn.rollback()
    _check_known(current)
    if current == target:
        return current

    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                from sqlalchemy import text

                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            current = current_revision(conn)  # another process may have migrated while we waited
            _check_known(current)
            if current != target:
                command.upgrade(alembic_config(conn), revision)
            current = current_revision(conn)
    return current or ""
