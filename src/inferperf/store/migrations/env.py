"""Alembic environment for the performance database.

inferperf runs migrations itself when a database is opened (``inferperf.store.migrate.upgrade``): it hands
over a connection that is already inside a locked transaction, so concurrent openers never race to create
the same tables. The ``alembic`` command line (``-c .../migrations/alembic.ini``) is supported for writing
new revisions; it connects on its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from inferperf.store.schema import VERSION_TABLE, Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect = connection.dialect.name if connection is not None else (url or "").split(":", 1)[0]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead
        render_as_batch=dialect.startswith("sqlite"),
        literal_binds=connection is None,
    )


def _url() -> str:
    from inferperf.store.paths import resolve_db_url

    return resolve_db_url(config.get_main_option("sqlalchemy.url") or None)


def run_migrations_offline() -> None:
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from inferperf.store.db import create_store_engine

    engine = create_store_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
