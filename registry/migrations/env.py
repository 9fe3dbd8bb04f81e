"""Alembic environment: runs on the connection the registry hands over (see store.upgrade_schema)."""

from alembic import context

from registry.schema import SQLModel

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the registry always passes its connection
    raise RuntimeError("run migrations through `modeldeck db upgrade` or registry.store.upgrade_schema")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
