"""Writes that collectors make: observations (deduplicated), quarantine and checkpoints.

The observation path is the ingest hot path, so parsers build ``Row``s (DBAPI values already in
the driver's form) and the writer talks to the driver cursor: multi-row INSERTs (SQLite) or a few
``INSERT … RETURNING`` statements (PostgreSQL) with ``ON CONFLICT (natural_id) DO NOTHING`` store
the new rows first, and only when some were not stored (re-deliveries, rare) does one SELECT find
the ids of those already there. Re-deliveries bump ``duplicates`` and stamp ``redelivered_at`` by
primary key. Transactions that write observations commit one after another (SQLite's write lock,
PostgreSQL's ingest lock), so a row not stored by this call was stored by an earlier one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import blake2b
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from time import gmtime
from typing import Any

import orjson
from sqlalchemy import Connection, Insert, Table, and_, select
from sqlalchemy.dialects import postgresql, sqlite

from syncwatch.model import Observation, from_ns, utcnow
from syncwatch.redact import clip
from syncwatch.store.bulk import driver_cursor, insert_tuples, pg_insert_unnest, sqlite_last_ids
from syncwatch.store.locks import hold_until_commit
from syncwatch.store.schema import business_keys, checkpoints, observations, quarantine

INGEST_LOCK = "ingest"
COLUMNS = (
    "natural_id",
    "kind",
    "system",
    "operation",
    "start_time",
    "end_time",
    "outcome",
    "status_code",
    "error_message",
    "trace_id",
    "span_id",
    "parent_id",
    "source",
    "extracted_keys",
    "attributes",
    "payload",
    "received_at",
)
KEY_COLUMNS = ("value", "key_type", "observation_id")
# A Row is one observation on the hot path: the values of COLUMNS up to ``payload`` in that order and
# in driver form (see DriverForm), then its identity keys as ((key type, value), …). The writer adds
# ``received_at``.
Row = tuple[Any, ...]
IDENTITY = len(COLUMNS) - 1


def _stdlib_encoder() -> Callable[[Any], str]:
    """Compact JSON through the C encoder made once (``json.dumps`` makes one per call). No
    circular-reference markers: the values come from parsers, which cannot build cycles."""
    if c_make_encoder is None:
        return json.JSONEncoder(separators=(",", ":"), default=str).encode
    chunks = c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(chunks(value, 0))


_stdlib_json = _stdlib_encoder()
# Dates and dataclasses go through ``default=str`` as the standard library would have them.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value: Any) -> str:
    """Compact JSON text: orjson (six times faster on a span's attributes), or the standard library
    for what orjson refuses (integers beyond 64 bits, lone surrogates, non-string keys)."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _stdlib_json(value)


_SECONDS: dict[int, str] = {}  # whole seconds → "YYYY-MM-DD HH:MM:SS."; a batch's times share a few
_MAX_SECONDS = 4096


def _second_text(seconds: int) -> str:
    if len(_SECONDS) >= _MAX_SECONDS:
        _SECONDS.clear()
    year, month, day, hour, minute, second = gmtime(seconds)[:6]
    text = _SECONDS[seconds] = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}."
    return text


def sqlite_time_ns(ns: int) -> str:
    """Nanoseconds since the epoch as the text SQLAlchemy's SQLite DateTime stores (to the
    microsecond), without a datetime: the seconds' text comes from a plain dict (a lru_cache call
    costs as much as the formatting), the microseconds are padded by adding a million."""
    micros = ns // 1000
    seconds = micros // 1_000_000
    return (_SECONDS.get(seconds) or _second_text(seconds)) + str(micros - seconds * 1_000_000 + 1_000_000)[1:]


def _sqlite_time(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores; observation times are already aware UTC."""
    return value.isoformat(" ", "microseconds")[:26]


def _pg_time(value: datetime) -> datetime:
    return value


@dataclass(frozen=True, slots=True)
class DriverForm:
    """How one engine's driver takes times: ``ns`` from nanoseconds, ``moment`` from aware datetimes."""

    ns: Callable[[int], Any]
    moment: Callable[[datetime], Any]


SQLITE_FORM = DriverForm(sqlite_time_ns, _sqlite_time)
POSTGRESQL_FORM = DriverForm(from_ns, _pg_time)


def driver_form(dialect: str) -> DriverForm:
    return SQLITE_FORM if dialect == "sqlite" else POSTGRESQL_FORM


def observation_row(o: Observation, form: DriverForm) -> Row:
    """An Observation as a Row (the writers that are not parsers hand over Observations)."""
    return (
        o.natural_id,
        o.kind.value,
        o.system,
        o.operation,
        form.moment(o.start),
        None if o.end is None else form.moment(o.end),
        o.outcome.value,
        o.status_code,
        o.error_message,
        o.trace_id,
        o.span_id,
        o.parent_id,
        o.source,
        json_text([[k.type, k.value, k.identity] for k in o.keys]),
        json_text(o.attributes),
        o.payload,
        tuple(dict.fromkeys((k.type, k.value) for k in o.keys if k.identity)),
    )


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch did: how many were new and how many were re-deliveries; ``conflicts``, the
    events refused because their id came before with other content (for the caller to quarantine)."""

    stored: int = 0
    duplicates: int = 0
    conflicts: tuple[QuarantineItem, ...] = ()

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.stored + other.stored, self.duplicates + other.duplicates, self.conflicts + other.conflicts
        )


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    """Rejected input: its source, where in the source, why, and the raw bytes."""

    source: str
    reason: str
    raw: bytes
    position: str | None = None
    content_type: str | None = None
    size: int | None = None  # the input's whole size, where only part of it was ever read (a body over the limit)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    source: str
    position: int
    state: dict[str, Any] = field(default_factory=dict)


def upsert_insert(conn: Connection, table: Table) -> Insert:
    """The dialect's INSERT that supports ON CONFLICT (both engines we run on do)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def write_observations(conn: Connection, batch: Sequence[Observation]) -> WriteResult:
    """Store each observation once; count the ones already stored (or repeated in the batch)."""
    form = driver_form(conn.dialect.name)
    return write_rows(conn, [observation_row(o, form) for o in batch])


def write_rows(conn: Connection, batch: Sequence[Row]) -> WriteResult:
    """``write_observations`` for Rows built in the driver form of ``conn``'s engine.

    Observation ids must follow commit order: the correlator reads past its checkpoint by id, and
    on PostgreSQL an id taken by a transaction that commits later would fall behind it for good.
    """
    hold_until_commit(conn, INGEST_LOCK)
    roomy_cache(conn)
    fresh: dict[str, Row] = {}
    repeats: Counter[str] = Counter()
    conflicts: list[QuarantineItem] = []
    for row in batch:
        first = fresh.get(row[0])
        if first is None:
            fresh[row[0]] = row
        elif _same_notice(_content(first), row):
            repeats[row[0]] += 1
        else:
            conflicts.append(_conflict(row, _content(first)))
    now = utcnow()
    ids, stored = _store_new(conn, fresh, now)
    stored_content = _event_contents(conn, [ids[nid] for nid in ids if fresh[nid][1] == EVENT])
    for natural_id, row_id in ids.items():
        row = fresh.pop(natural_id)
        before = stored_content.get(row_id)
        if before is not None and not _same_notice(before, row):
            # its repeats in this batch are the same conflicting notice again, no re-delivery of the stored one
            conflicts.extend([_conflict(row, before)] * (1 + repeats.pop(natural_id, 0)))
        else:
            repeats[natural_id] += 1
    _write_identity_keys(conn, fresh, stored)
    ids.update(stored)
    _count_duplicates(conn, {ids[nid]: n for nid, n in repeats.items()}, now)
    return WriteResult(stored=len(stored), duplicates=sum(repeats.values()), conflicts=tuple(conflicts))


# SQLite page cache of a connection that writes observations. Span ids are random, so each batch
# touches leaves all over the natural-id index (68 MB at 1M spans); with SQLite's default 2 MiB
# nearly each one is read back from the operating system. Kept for the connection's life (64 MiB
# at most per pooled connection, filled only as far as the writes reach).
INGEST_CACHE_KIB = 65_536


def roomy_cache(conn: Connection) -> None:
    """Give ``conn``'s SQLite connection INGEST_CACHE_KIB of page cache, once per connection."""
    record = conn.connection.info
    if conn.dialect.name != "sqlite" or record.get("ingest_cache"):
        return
    with driver_cursor(conn) as cursor:
        size = int(cursor.execute("PRAGMA cache_size").fetchone()[0])
        page = int(cursor.execute("PRAGMA page_size").fetchone()[0])
        if (-size if size < 0 else size * page // 1024) < INGEST_CACHE_KIB:
            cursor.execute(f"PRAGMA cache_size = -{INGEST_CACHE_KIB}")
    record["ingest_cache"] = True


EVENT = "event"
# An event's type, source and data in a Row.
OPERATION, SOURCE, PAYLOAD = (COLUMNS.index(name) for name in ("operation", "source", "payload"))


def _content(row: Row) -> tuple[Any, Any]:
    return row[OPERATION], row[PAYLOAD]


def _same_notice(before: tuple[Any, Any], row: Row) -> bool:
    """Whether an event delivered again under its id is the same notice: the same type and data
    (compared as JSON, so a re-sent body with other spacing or key order is still the same).
    Spans and log lines delivered again are the same by their ids alone."""
    if row[1] != EVENT:
        return True
    return before[0] == row[OPERATION] and _same_data(before[1], row[PAYLOAD])


def _same_data(stored: Any, sent: Any) -> bool:
    if stored == sent:
        return True
    try:
        return bool(orjson.loads(stored) == orjson.loads(sent))
    except (orjson.JSONDecodeError, TypeError):
        return False


def _conflict(row: Row, before: tuple[Any, Any]) -> QuarantineItem:
    """An event whose id came before with other content: kept in quarantine, not counted as a
    re-delivery. A partner that reuses an id per order or shipment loses every later notice else."""
    natural_id, operation = row[0], row[OPERATION]  # event:SOURCE:ID, which says where without more words
    changed = f"type {before[0]!r}, now {operation!r}" if before[0] != operation else "other data"
    reason = (
        f"its id came before with {changed}: not stored. A notice's id must be unique per notice "
        "(a webhook's as a CloudEvent's), not per order or shipment"
    )
    return QuarantineItem(row[SOURCE], reason, bytes(row[PAYLOAD] or b""), natural_id)


def _event_contents(conn: Connection, row_ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """row id → (type, payload) of stored events, to tell a re-delivery from a reused id."""
    rows = _observations_where_in(conn, "id, operation, payload", "id", row_ids)
    return {row_id: (operation, payload) for row_id, operation, payload in rows}


def _existing_ids(conn: Connection, natural_ids: list[str]) -> dict[str, int]:
    """natural id → row id of those already stored, in one statement whatever the batch size."""
    return dict(_observations_where_in(conn, "natural_id, id", "natural_id", natural_ids))


def _observations_where_in(conn: Connection, columns: str, column: str, values: list[Any]) -> list[tuple[Any, ...]]:
    """``columns`` of the observations whose ``column`` is one of ``values``, in one statement:
    a JSON array on SQLite (no bound-parameter limit), a binary array on PostgreSQL."""
    if not values:
        return []
    with driver_cursor(conn) as cursor:
        if conn.dialect.name == "sqlite":
            sql = f"SELECT {columns} FROM observations WHERE {column} IN (SELECT value FROM json_each(?))"
            cursor.execute(sql, (json_text(values),))
        else:
            cursor.execute(f"SELECT {columns} FROM observations WHERE {column} = ANY(%b)", (values,))
        return list(cursor.fetchall())


def _store_new(conn: Connection, fresh: dict[str, Row], now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Insert the rows whose natural id is not stored yet: (natural id → row id of those already
    stored, natural id → row id of those this call stored). Inserting first and looking up only
    what was left out saves a lookup per row whenever a batch is new, as nearly every one is."""
    if not fresh:
        return {}, {}
    if conn.dialect.name == "sqlite":
        return _store_sqlite(conn, fresh, _sqlite_time(now))
    stored = _insert_postgresql(conn, fresh, now)
    left_out = [natural_id for natural_id in fresh if natural_id not in stored]
    return _existing_ids(conn, left_out), stored


def _store_sqlite(conn: Connection, fresh: dict[str, Row], received: str) -> tuple[dict[str, int], dict[str, int]]:
    """Under SQLite's write lock (BEGIN IMMEDIATE, or the first write of any transaction) nobody
    else inserts, and each new row gets the largest id so far plus one: the rows this call stores
    get the ids after the largest one before it, in order. Were ids ever chosen at random (once the
    largest 64-bit id is taken), the stored ones are looked up first and only the others inserted."""
    with driver_cursor(conn) as cursor:
        largest = cursor.execute("SELECT max(id) FROM observations").fetchone()[0] or 0
    if largest + len(fresh) >= _MAX_ROWID:
        existing = _existing_ids(conn, list(fresh))
        rest = {natural_id: row for natural_id, row in fresh.items() if natural_id not in existing}
        insert_tuples(conn, observations, COLUMNS, _with_received(rest.values(), received), ("natural_id",))
        return existing, _existing_ids(conn, list(rest))
    rows = _with_received(fresh.values(), received)
    inserted = insert_tuples(conn, observations, COLUMNS, rows, ("natural_id",))
    if inserted == len(rows) and sqlite_last_ids(conn, inserted) == range(largest + 1, largest + inserted + 1):
        return {}, dict(zip(fresh, range(largest + 1, largest + inserted + 1), strict=True))
    existing: dict[str, int] = {}
    stored: dict[str, int] = {}
    for natural_id, row_id in _existing_ids(conn, list(fresh)).items():
        (stored if row_id > largest else existing)[natural_id] = row_id
    return existing, stored


_MAX_ROWID = 2**63 - 1  # SQLite picks ids at random once this one is taken


def _insert_postgresql(conn: Connection, fresh: dict[str, Row], now: datetime) -> dict[str, int]:
    """RETURNING gives each stored row's id (a sequence's, so not consecutive across sessions)."""
    rows = _with_received(fresh.values(), now)
    return dict(pg_insert_unnest(conn, observations, COLUMNS, rows, ("natural_id",), "natural_id, id"))


def _with_received(rows: Iterable[Row], received: Any) -> list[tuple[Any, ...]]:
    """DBAPI tuples in COLUMNS order: each Row without its identity keys, then ``received``."""
    stamp = (received,)
    return [row[:IDENTITY] + stamp for row in rows]


def _write_identity_keys(conn: Connection, fresh: dict[str, Row], stored: dict[str, int]) -> None:
    rows = [(value, key_type, row_id) for nid, row_id in stored.items() for key_type, value in fresh[nid][IDENTITY]]
    insert_tuples(conn, business_keys, KEY_COLUMNS, rows, KEY_COLUMNS)


def _count_duplicates(conn: Connection, repeats: dict[int, int], now: datetime) -> None:
    """Add each row's re-deliveries to ``duplicates`` and stamp ``redelivered_at`` (the correlator
    looks there to notice a notice sent twice)."""
    if not repeats:
        return
    with driver_cursor(conn) as cursor:
        if conn.dialect.name == "sqlite":
            sql = "UPDATE observations SET duplicates = duplicates + ?, redelivered_at = ? WHERE id = ?"
            when = _sqlite_time(now)
            cursor.executemany(sql, [(n, when, row_id) for row_id, n in repeats.items()])
        else:
            sql = (
                "UPDATE observations AS o SET duplicates = o.duplicates + u.n, redelivered_at = %s "
                "FROM unnest(%b::bigint[], %b::int[]) AS u(id, n) WHERE o.id = u.id"
            )
            cursor.execute(sql, (now, list(repeats), list(repeats.values())))


REASON_LIMIT = 1_000  # characters of a reason kept: one may quote the input, which ``raw`` already holds (cut)


def write_quarantine(conn: Connection, items: Iterable[QuarantineItem], raw_limit: int) -> int:
    """Keep each rejected item with its reason; how many were rejected. The same input rejected
    again for the same kind of reason (a file imported twice, a refused batch retried) is counted
    on its first row, whose reason becomes the latest one."""
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        fingerprint = quarantine_fingerprint(item)
        if fingerprint in rows:
            rows[fingerprint]["deliveries"] += 1
            continue
        rows[fingerprint] = {
            "received_at": now,
            "source": item.source,
            "position": item.position,
            "reason": clip(item.reason, REASON_LIMIT),
            "content_type": item.content_type,
            "raw": item.raw[:raw_limit],
            "raw_size": max(item.size or 0, len(item.raw)),
            "fingerprint": fingerprint,
            "deliveries": 1,
            "last_received_at": None,
        }
    if rows:
        stmt = upsert_insert(conn, quarantine)
        again = {
            "deliveries": quarantine.c.deliveries + stmt.excluded.deliveries,
            "last_received_at": stmt.excluded.received_at,
            "reason": stmt.excluded.reason,
        }
        conn.execute(stmt.on_conflict_do_update(index_elements=["fingerprint"], set_=again), list(rows.values()))
    return sum(row["deliveries"] for row in rows.values())


def quarantine_fingerprint(item: QuarantineItem) -> str:
    """What identifies a rejected input: its source, position, every byte (not only the kept ones)
    and the kind of its reason (the reason's words, its numbers left out: "4.9 h in the future"
    grows as a file is imported again). The same body refused once for its token and once for its
    content type is two refusals, not one counted twice under the latest reason."""
    digest = blake2b(digest_size=16)
    kind = _NUMBERS.sub("#", item.reason).encode()
    for part in (item.source.encode(), (item.position or "").encode(), item.raw, kind):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    if item.size is not None:  # a body over the limit is known by its start and its whole size
        digest.update(item.size.to_bytes(8, "little"))
    return digest.hexdigest()


_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


LINE_IDS = "syncwatch:line-ids"  # the checkpoints row that records which form of line ids the database uses


def ordered_line_ids(conn: Connection) -> bool:
    """Whether access-log lines are stored under ordered natural ids here. Decided the first time
    a collector asks, and kept: a database that already holds lines under the hashed ids of earlier
    versions (``line:HASH``) keeps that form, so a file read again there still dedupes."""
    ordered = recorded_line_ids(conn)
    if ordered is None:
        o = observations.c
        # SQLite: one probe of the natural-id index (';' follows ':'). PostgreSQL's index follows the
        # collation, so it is a scan there, which stops at the first hashed id and runs once per database.
        if conn.dialect.name == "sqlite":
            hashed = and_(o.natural_id >= "line:", o.natural_id < "line;")
        else:
            hashed = o.natural_id.like("line:%")
        ordered = conn.execute(select(o.id).where(hashed).limit(1)).first() is None
        save_checkpoint(conn, Checkpoint(LINE_IDS, 0, {"ordered": ordered}))
    return ordered


def recorded_line_ids(conn: Connection) -> bool | None:
    """The recorded choice of ``ordered_line_ids``, or None before a collector first asked."""
    saved = read_checkpoint(conn, LINE_IDS)
    return None if saved is None else bool(saved.state.get("ordered", True))


def read_checkpoint(conn: Connection, source: str) -> Checkpoint | None:
    row = conn.execute(
        select(checkpoints.c.position, checkpoints.c.state).where(checkpoints.c.source == source)
    ).first()
    return None if row is None else Checkpoint(source, row.position, row.state or {})


def save_checkpoint(conn: Connection, checkpoint: Checkpoint) -> None:
    values = {"position": checkpoint.position, "state": checkpoint.state, "updated_at": utcnow()}
    stmt = upsert_insert(conn, checkpoints).values(source=checkpoint.source, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["source"], set_=values))
