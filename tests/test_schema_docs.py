"""The README's SQL schema section is the schema: BI users rely on it as a contract."""

from __future__ import annotations

from pathlib import Path

from syncwatch.store.docs import schema_markdown
from syncwatch.store.schema import metadata

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_schema_section_is_the_output_of_db_schema() -> None:
    text = README.read_text()
    documented = text.split("<!-- schema:start -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert documented.strip() == schema_markdown().strip(), "run `syncwatch db schema` and paste it into README.md"


def test_every_table_and_column_says_what_it_means() -> None:
    undocumented = [f"{t.name}.{c.name}" for t in metadata.sorted_tables for c in t.columns if not c.comment]
    assert undocumented == []
    assert all(t.comment for t in metadata.sorted_tables)
