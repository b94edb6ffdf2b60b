"""The store: schema, engine, migrations, and the named reads and writes on top of them."""

from syncwatch.store.database import Store
from syncwatch.store.errors import DatabaseUnavailable, SchemaMissing, StoreError
from syncwatch.store.writes import Checkpoint, QuarantineItem, WriteResult

__all__ = [
    "Checkpoint",
    "DatabaseUnavailable",
    "QuarantineItem",
    "SchemaMissing",
    "Store",
    "StoreError",
    "WriteResult",
]
