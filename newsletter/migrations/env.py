"""Alembic environment of the newsletter schema.

Normally run by `newsletter.migrations.upgrade()`, which hands over a connection that is
already inside a locked transaction (config.attributes["connection"]); Alembic then runs in
that transaction and starts none of its own. A `sqlalchemy.url` main option is honoured too,
for offline (`--sql`) output or a hand-made Config.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from newsletter.migrations import include_object
from newsletter.store.schema import metadata

config = context.config


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=metadata,
        include_object=include_object,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    _configure(
        url=url,
        literal_binds=True,
        render_as_batch=url is not None and url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # SQLite can ALTER little: batch mode rebuilds the table ("move and copy") instead.
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection given and no sqlalchemy.url set")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection=connection, render_as_batch=engine.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
