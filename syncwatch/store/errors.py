"""Store errors, translated from SQLAlchemy and driver errors where they enter.

    StoreError(RuntimeError)
    ├── DatabaseUnavailable   the URL is malformed, the driver is missing, or the server does not answer
    └── SchemaMissing         the database answers but has no (or an old) syncwatch schema

Each carries one sentence for a person; the CLI prints it without a traceback.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base of every error the store raises."""


class DatabaseUnavailable(StoreError):
    """The database cannot be opened or reached."""


class SchemaMissing(StoreError):
    """The database has no syncwatch schema, or an older one than this version needs."""
