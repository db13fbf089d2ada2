"""Database access: engine, tables, migrations and the store (the only SQL writer)."""
