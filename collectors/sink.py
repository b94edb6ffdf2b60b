"""The thin driver half every collector shares: parse results into the store, atomically.

Observations, their quarantined neighbours and (for files) the checkpoint that covers them are
written in one transaction, so a crash at any moment leaves either all of a batch or none of it;
that is what makes ``kill -9`` safe.

Concurrent commits (several HTTP requests at once) are grouped: the first caller to find the
store idle becomes the writer and commits everything queued so far in one transaction, while
the others keep parsing. A single writer per process also keeps SQLite's write lock from being
fought over by our own threads, whose busy-timeout sleeps would cost more than the writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from collectors.base import ParseContext, Parsed, now_ns
from collectors.keys import KeyExtractor
from syncwatch.config import Config
from syncwatch.redact import clip, mask_emails
from syncwatch.store import Checkpoint, QuarantineItem, Store, WriteResult
from syncwatch.store.writes import driver_form, save_checkpoint, write_quarantine, write_rows

if TYPE_CHECKING:
    from syncwatch.metrics import ServiceMetrics

log = logging.getLogger(__name__)
# A group stops growing at this many observations, so one transaction (and its memory) stays bounded.
MAX_GROUP_OBSERVATIONS = 20_000
REJECTION_LOG_INTERVAL_S = 60.0  # at most one warning per source in this long
REJECTION_LOG_REASON_CHARS = 300  # a reason may quote the input; the log gets its start


def collector_limits(config: Config) -> tuple[int, int]:
    """(largest clock skew accepted in ns, largest attribute in bytes), as parse contexts take them."""
    limits = config.file.collectors
    return int(limits.max_clock_skew.total_seconds() * 1e9), limits.max_attribute_bytes


class RejectionLog:
    """A warning naming the source, position and reason of what was quarantined: at most one per
    source per interval, counting the rest, so a partner sending garbage all day cannot flood the
    log, yet whoever reads it learns where to look and why."""

    def __init__(self, interval_s: float = REJECTION_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # source → (when last reported, quarantined since)
        self._unkept: dict[str, tuple[float, int]] = {}  # the same for requests refused and not kept

    def report(self, items: Sequence[QuarantineItem]) -> None:
        by_source: dict[str, list[QuarantineItem]] = {}
        for item in items:
            by_source.setdefault(item.source, []).append(item)
        for source, quarantined in by_source.items():
            since = self._tell_now(self._last, source, len(quarantined))
            if since is None:
                continue
            first = quarantined[0]
            reason = clip(mask_emails(first.reason), REJECTION_LOG_REASON_CHARS + 1)  # quoted input, then "…"
            more = [f"{len(quarantined) - 1} more with it"] if len(quarantined) > 1 else []
            if since:
                more.append(f"{since} more since the last report")
            log.warning(
                "quarantined from %s at %s: %s%s",
                source,
                first.position or "its whole body",
                reason,
                f" ({'; '.join(more)}; `syncwatch stats` lists them)" if more else "",
            )

    def not_kept(self, source: str, reason: str, why: str) -> None:
        """A request refused and, ``why``, not kept in quarantine: told as ``report`` tells, at
        most once per source per interval, counting the rest."""
        since = self._tell_now(self._unkept, source, 1)
        if since is None:
            return
        more = f"; {since} more since the last report" if since else ""
        log.warning(
            "refused at %s and not kept (%s): %s%s", source, why, clip(reason, REJECTION_LOG_REASON_CHARS), more
        )

    def _tell_now(self, counts: dict[str, tuple[float, int]], source: str, n: int) -> int | None:
        """How many of ``source`` went untold before these ``n``, when its interval has passed and
        they are told now; None while it has not (they are counted for later)."""
        with self._lock:
            now = self.clock()
            last, since = counts.get(source, (None, 0))
            if last is not None and now - last < self.interval_s:
                counts[source] = (last, since + n)
                return None
            counts[source] = (now, 0)
            return since

    def flush(self) -> None:
        """Tell what was counted but not yet told, once its source's interval has passed: the rest
        of a burst otherwise waited for that source's next rejection, perhaps for good."""
        with self._lock:
            now = self.clock()
            quarantined, unkept = _due(self._last, now, self.interval_s), _due(self._unkept, now, self.interval_s)
        for source, since in quarantined:
            log.warning(
                "quarantined from %s: %d more since the last report (`syncwatch stats` lists them)", source, since
            )
        for source, since in unkept:
            log.warning("refused at %s and not kept: %d more since the last report", source, since)


def _due(counts: dict[str, tuple[float, int]], now: float, interval_s: float) -> list[tuple[str, int]]:
    """The sources with a count not yet told whose interval has passed; each is marked told now."""
    due = [(source, since) for source, (last, since) in counts.items() if since and now - last >= interval_s]
    for source, _ in due:
        counts[source] = (now, 0)
    return due


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit did; ``conflicts``: events refused as they were written (their id came
    before with other content), quarantined with the rest."""

    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    conflicts: tuple[QuarantineItem, ...] = ()

    def __add__(self, other: Committed) -> Committed:
        return Committed(
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.quarantined + other.quarantined,
            self.conflicts + other.conflicts,
        )


@dataclass(slots=True)
class _Job:
    """One caller's commit, waiting in the queue until a writer has done it."""

    parsed: Parsed
    quarantined: list[QuarantineItem]  # its rejections, with the source and content type they came with
    checkpoint: Checkpoint | None
    done: bool = False
    result: Committed | None = None
    error: BaseException | None = None


class Sink:
    """Where parsed batches go: one store, one key extractor, the collectors' limits."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.keys = KeyExtractor.from_config(config.file)
        self.max_skew_ns, self.max_attribute = collector_limits(config)
        self.form = driver_form(store.dialect)
        self.ordered_line_ids = store.ordered_line_ids()
        if not self.ordered_line_ids:
            log.info(
                "this database holds access-log lines stored by an earlier version; new lines keep their "
                "hashed natural ids so that a file read again dedupes (a new database imports large logs faster)"
            )
        self._queue: deque[_Job] = deque()
        self._changed = threading.Condition()
        self._writing = False
        self._writing_since: float | None = None
        self.rejections = RejectionLog()
        self.metrics: ServiceMetrics | None = None  # `serve` counts what was stored and refused, per source

    def context(self, source: str) -> ParseContext:
        """A parse context with the clock read now (parsers never read it themselves)."""
        return ParseContext(
            source, self.keys, now_ns(), self.form, self.max_skew_ns, self.max_attribute, self.ordered_line_ids
        )

    def commit(
        self, parsed: Parsed, source: str, content_type: str | None = None, checkpoint: Checkpoint | None = None
    ) -> Committed:
        """Store one parse result (with its checkpoint) atomically; returns once it is durable."""
        job = _Job(parsed, parsed.quarantine_items(source, content_type), checkpoint)
        with self._changed:
            self._queue.append(job)
        while True:
            group = self._lead_or_wait(job)
            if group is None:
                break
            self._write_group(group)
        if job.error is not None:
            raise job.error
        if job.result is None:  # the writer was interrupted (the process is stopping): never claim success
            raise RuntimeError("the batch was not stored: its writer stopped")
        result = job.result
        if self.metrics is not None:
            self.metrics.ingested(source, result.stored, result.duplicates, result.quarantined)
        if result.quarantined:
            self.rejections.report([*job.quarantined, *result.conflicts])
        return result

    def _lead_or_wait(self, job: _Job) -> list[_Job] | None:
        """The group to write when this caller becomes the writer; None once ``job`` is done."""
        with self._changed:
            while self._writing and not job.done:
                self._changed.wait()
            if job.done:
                return None
            self._writing, self._writing_since = True, time.monotonic()
            return self._take_group()

    def write_waiting_s(self) -> float:
        """How long the write under way has taken so far (0 when none is): a database whose write
        lock another holds keeps it waiting, up to the busy timeout, with every caller behind it."""
        since = self._writing_since
        return time.monotonic() - since if since is not None else 0.0

    def _take_group(self) -> list[_Job]:
        group = [self._queue.popleft()]
        size = len(group[0].parsed.rows)
        while self._queue and size + len(self._queue[0].parsed.rows) <= MAX_GROUP_OBSERVATIONS:
            job = self._queue.popleft()
            group.append(job)
            size += len(job.parsed.rows)
        return group

    def _write_group(self, group: list[_Job]) -> None:
        try:
            if len(group) == 1:
                self._write_alone(group[0])
                return
            try:
                self._write_together(group)
            except Exception:
                # One job's failure must not fail its neighbours: retry each alone, so the error
                # reaches only the caller whose data caused it.
                for job in group:
                    self._write_alone(job)
        finally:
            with self._changed:
                for job in group:
                    job.done = True
                self._writing, self._writing_since = False, None
                self._changed.notify_all()

    def _write_together(self, group: list[_Job]) -> None:
        with self.store.writing() as conn:
            results = [self._write_job(conn, job) for job in group]
        for job, result in zip(group, results, strict=True):
            job.result = result

    def _write_alone(self, job: _Job) -> None:
        try:
            with self.store.writing() as conn:
                job.result = self._write_job(conn, job)
        except Exception as err:  # handed to the caller's thread, which raises it
            job.error = err

    def _write_job(self, conn: Connection, job: _Job) -> Committed:
        rows = job.parsed.rows
        result = write_rows(conn, rows) if rows else WriteResult()
        refused = [*job.quarantined, *result.conflicts]
        quarantined = write_quarantine(conn, refused, self.store.raw_limit) if refused else 0
        if job.checkpoint is not None:
            save_checkpoint(conn, job.checkpoint)
        return Committed(result.stored, result.duplicates, quarantined, result.conflicts)

    def reject(
        self,
        source: str,
        reason: str,
        raw: bytes,
        position: str | None = None,
        content_type: str | None = None,
        size: int | None = None,
    ) -> None:
        """Quarantine a whole input (an undecodable body, a refused request); ``size``: its whole
        size where only ``raw``, its start, was read."""
        item = QuarantineItem(source, reason, raw, position, content_type, size)
        self.store.quarantine([item])
        if self.metrics is not None:
            self.metrics.ingested(source, 0, 0, 1)
        self.rejections.report([item])
