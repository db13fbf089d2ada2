"""Alembic environment: runs against the connection mma passes in."""

from alembic import context

from mma.db.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    engine = config.attributes["engine"]
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
