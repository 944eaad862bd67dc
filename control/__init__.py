"""The control plane: tenant and mailbox configuration in PostgreSQL, API credentials, migrations.

`control.db` is the only module that imports asyncpg; SQL migrations in `migrations/` are the
source of truth of the database schema and are applied by the project itself (`apply_migrations`).
"""
