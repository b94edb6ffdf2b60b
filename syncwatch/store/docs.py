"""The schema as Markdown, from the comments on every table and column.

The README's "SQL schema" section is this text; a test keeps the two identical, so the
documented contract BI tools rely on cannot drift from the real schema.
"""

from __future__ import annotations

from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql

from syncwatch.store.schema import metadata

SQL_TYPES = postgresql.dialect()


def schema_markdown() -> str:
    return "\n".join(_table_markdown(table) for table in metadata.sorted_tables)


def _table_markdown(table: Table) -> str:
    keys = ", ".join(c.name for c in table.primary_key.columns)
    rows = [f"| `{c.name}` | {_type(c)} | {_escape(c.comment)} |" for c in table.columns]
    header = [
        f"### `{table.name}`",
        "",
        f"{table.comment} (primary key: {keys})",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    return "\n".join([*header, *rows, ""])


def _escape(comment: str | None) -> str:
    return (comment or "").replace("|", "\\|")


def _type(column: Column) -> str:
    text = column.type.compile(dialect=SQL_TYPES).lower()
    text = "timestamptz" if "timestamp" in text else text
    return text if column.nullable else f"{text}, not null"
