"""A trace's observations, found through the indexes the schema keeps for them.

On SQLite a span is found by its natural id (``trace:span``, so a trace's spans are one range of
the unique natural-id index) and any other traced row through the trace-id index, which holds only
those (see ``schema.NOT_OWN_TRACE_PREFIX``). On PostgreSQL the trace-id index holds every traced row.
"""

from __future__ import annotations

from sqlalchemy import Select, and_, select, text, union_all

from syncwatch.store.schema import NOT_OWN_TRACE_PREFIX, observations

# SQLite: the rows of each trace (a JSON array parameter) whose natural id begins with it: ':' and
# ';' are adjacent, so "T:" <= id < "T;" is every id that starts with "T:".
SPANS_OF_TRACES = (
    "SELECT o.id FROM json_each(?) AS t JOIN observations AS o"
    " ON o.natural_id > t.value || ':' AND o.natural_id < t.value || ';' AND o.trace_id = t.value"
)


def in_traces(dialect: str, traces: Select) -> Select:
    """A select of the ids of every observation in the traces ``traces`` selects (one column)."""
    o = observations.c
    if dialect != "sqlite":
        return select(o.id).where(o.trace_id.in_(traces))
    others = select(o.id).where(o.trace_id.in_(traces), text(NOT_OWN_TRACE_PREFIX))
    wanted = traces.subquery()
    trace = wanted.c[0]
    own = observations.alias("own")
    prefixed = and_(own.c.natural_id > trace.concat(":"), own.c.natural_id < trace.concat(";"), own.c.trace_id == trace)
    both = union_all(others, select(own.c.id).join_from(wanted, own, prefixed)).subquery()
    return select(both.c.id)  # a plain select, which callers may put in a union of their own
