"""Bringing a database to the schema this package expects: the head revision, the migration lock,
adoption of files the seed wrote, and running Alembic. The revision scripts themselves are in the
checkout's top-level ``alembic/versions`` (shipped in the wheel as ``animedex_store/_alembic``)."""
