"""Relational state: accounts, keys, files, holds, ledger entries, tasks (SQLite or PostgreSQL)."""
