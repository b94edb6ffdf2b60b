"""Tail a file into the store: survives rotation (rename + new file) and truncation
(copytruncate), and resumes from a checkpoint committed with the lines it covers.

A rotated file is read on after the rename until it has been quiet for ``ROTATED_QUIET_S``: a
writer that keeps its file open (nginx until it is told to reopen, logrotate's ``create`` with a
delayed ``postrotate``) goes on writing there. Those later reads carry no checkpoint, which
belongs to the new file; their lines' natural ids still make a repeat harmless.

A file is known by its identity (a hash of its first line) and a generation bumped on each
truncation; lines are identified by identity, generation and offset, so re-reading after a crash
dedupes and a rewritten file is new data even when it starts with the same line. The bytes just
before the checkpoint are remembered too (``tail``): a file rewritten with the same first line and
grown past the checkpoint between two polls is noticed by them, not read from the old offset.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from collectors.base import ParseContext, Parsed
from collectors.formats import BOM, FileSpec, safe_end
from collectors.sink import MAX_GROUP_OBSERVATIONS, Committed, Sink
from syncwatch.store import Checkpoint

if TYPE_CHECKING:
    from collectors.workers import ParsePool, Parser

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
PARSE_AHEAD = 4  # chunks parsed in a pool's workers while one is stored
MAX_ITEM_BYTES = 16 << 20
FIRST_LINE_MAX = 64 * 1024
TAIL_BYTES = 64
ROTATED_QUIET_S = 60.0  # a rotated file that has not grown for this long is read to its end and left


def first_line_identity(handle: BinaryIO) -> str | None:
    """A hash of the file's first line, or None while that line is still incomplete."""
    handle.seek(0)
    head = handle.read(FIRST_LINE_MAX)
    end = head.find(b"\n")
    if end < 0:
        return None if len(head) < FIRST_LINE_MAX else hashlib.blake2b(head, digest_size=8).hexdigest()
    return hashlib.blake2b(head[: end + 1], digest_size=8).hexdigest()


def tail_mark(handle: BinaryIO, offset: int) -> str | None:
    """A hash of the bytes just before ``offset``, or None at the start of the file."""
    if offset <= 0:
        return None
    start = max(0, offset - TAIL_BYTES)
    handle.seek(start)
    return hashlib.blake2b(handle.read(offset - start), digest_size=8).hexdigest()


@dataclass(slots=True)
class _Rotated:
    """The file read before the last rotation, followed until it has been quiet a while."""

    path: str
    position: _Position
    size: int
    quiet_since: float
    grew: bool = False


@dataclass(slots=True)
class _Position:
    """Where the tailer is: offset of the first unread byte in the file known by identity."""

    offset: int = 0
    identity: str | None = None
    generation: int = 0
    inode: int | None = None
    tail: str | None = None  # tail_mark at offset; None before the first commit (or in older checkpoints)

    def state(self) -> dict[str, object]:
        return {"identity": self.identity, "generation": self.generation, "inode": self.inode, "tail": self.tail}

    @property
    def line_identity(self) -> str:
        return f"{self.identity}:{self.generation}"


def read_items(handle: BinaryIO, offset: int, documents: bool, eof: bool, chunk: int = CHUNK_BYTES) -> bytes:
    """Complete items from ``offset``: whole lines (or documents), never half of one. An item
    longer than the chunk grows the read, up to MAX_ITEM_BYTES, after which it is taken as is."""
    size = chunk
    while True:
        handle.seek(offset)
        data = handle.read(size)
        end = safe_end(data, documents, eof)
        if end or len(data) < size:
            return data[:end]
        if size >= MAX_ITEM_BYTES:
            return data
        size *= 2


def parsed_chunks(
    handle: BinaryIO,
    spec: FileSpec,
    context: Callable[[str], ParseContext],
    start: tuple[int, str],
    final: bool,
    pool: ParsePool | None = None,
    chunk: int = CHUNK_BYTES,
) -> Iterator[tuple[Parsed, int]]:
    """(parsed chunk, offset just past it) for each chunk of complete items from ``start`` (offset,
    line identity). With ``final`` (the file grows no more: an import, a rotated file) a last item
    without its newline is taken too. With a ``pool``, the next chunks are parsed in its workers
    while the caller stores this one; a chunk the pool could not parse is parsed here."""
    offset, identity = start
    if offset == 0:
        handle.seek(0)
        if handle.read(len(BOM)) == BOM:
            offset = len(BOM)  # the byte order mark Windows tools write is not part of the first line
    ends: deque[int] = deque()  # of the chunks read so far; a pool reads a few ahead of the results

    def calls() -> Iterator[tuple[Parser, tuple[Any, ...], str]]:
        at = offset
        while data := read_items(handle, at, spec.documents, False, chunk) or (
            read_items(handle, at, spec.documents, True, chunk) if final else b""
        ):
            ends.append(at + len(data))
            yield spec.parse, (data, at, identity), spec.source
            at += len(data)

    if pool is None:
        results: Iterable[Parsed] = (parser(*args, context(source)) for parser, args, source in calls())
    else:
        results = pool.parse_ahead(calls(), PARSE_AHEAD)
    for parsed in results:
        yield parsed, ends.popleft()


def commit_chunks(
    sink: Sink,
    source: str,
    chunks: Iterable[tuple[Parsed, int]],
    checkpoint: Callable[[int], Checkpoint | None],
    committed: Callable[[int], None],
) -> Committed:
    """Commit parsed chunks a sink's largest group at a time: as the table grows, SQLite's cost per
    row is set by how many index pages each commit rewrites, so fewer, larger transactions store
    the same rows faster. Each group goes with ``checkpoint(end)``; ``committed(end)`` follows."""
    total, pending, end, stored_to = Committed(), Parsed(), None, None
    for parsed, end in chunks:
        pending.extend(parsed)
        if len(pending.rows) + len(pending.rejections) >= MAX_GROUP_OBSERVATIONS:
            total += sink.commit(pending, source, checkpoint=checkpoint(end))
            pending, stored_to = Parsed(), end
            committed(end)
    if end is not None and end != stored_to:
        total += sink.commit(pending, source, checkpoint=checkpoint(end))
        committed(end)
    return total


class FileTailer:
    """One tailed file; ``poll`` reads what is new and commits it with the checkpoint."""

    def __init__(self, spec: FileSpec, sink: Sink, chunk: int = CHUNK_BYTES, pool: ParsePool | None = None) -> None:
        self.spec = spec
        self.sink = sink
        self.chunk = chunk
        self.pool = pool
        self._position: _Position | None = None
        self._rotated: _Rotated | None = None
        self._said_missing = False

    def poll(self) -> Committed:
        position = self._position or self._load()
        self._position = position
        try:
            stat = os.stat(self.spec.path)
        except FileNotFoundError:
            # Said once, for a file never seen: a misspelt path must not pass in silence. A file
            # seen before is briefly missing in every rotation, which is no news.
            if position.inode is None and not self._said_missing:
                log.warning("%s does not exist (yet); it is tailed from its first line once it does", self.spec.path)
                self._said_missing = True
            return Committed()
        if self._said_missing:
            log.info("%s appeared; tailing it", self.spec.path)
            self._said_missing = False
        total = self._follow_rotated() if self._rotated else Committed()
        if position.inode is not None and position.inode != stat.st_ino:
            total += self._drain_rotated(position)
            position = self._position = _Position()
        position.inode = stat.st_ino
        with open(self.spec.path, "rb") as handle:
            total += self._follow(handle, position, stat.st_size)
        return total

    def _load(self) -> _Position:
        checkpoint = self.sink.store.checkpoint(self.spec.source)
        if checkpoint is None:
            return _Position()
        state = checkpoint.state
        return _Position(
            checkpoint.position,
            state.get("identity"),
            int(state.get("generation", 0)),
            state.get("inode"),
            state.get("tail"),
        )

    def _follow(self, handle: BinaryIO, position: _Position, size: int) -> Committed:
        identity = first_line_identity(handle)
        if identity is None:
            return Committed()
        if position.identity is None:
            position.identity = identity
        elif (
            identity != position.identity
            or size < position.offset
            or (position.tail is not None and tail_mark(handle, position.offset) != position.tail)
        ):
            log.info("%s was truncated or replaced; reading it from the start", self.spec.path)
            position.offset, position.identity, position.generation = 0, identity, position.generation + 1
            position.tail = None
        return self._read_to_end(handle, position, final=False)

    def _read_to_end(self, handle: BinaryIO, position: _Position, final: bool, checkpointed: bool = True) -> Committed:
        """Everything new, committed with its checkpoint (see ``commit_chunks``); a large backlog
        is parsed ahead in the pool's workers, when the tailer has a pool. ``checkpointed=False``
        (a rotated file read on) moves ``position`` without touching the stored checkpoint."""
        start = (position.offset, position.line_identity)
        chunks = parsed_chunks(handle, self.spec, self.sink.context, start, final, self.pool, self.chunk)

        marks: dict[int, str | None] = {}

        def checkpoint(end: int) -> Checkpoint | None:
            marks[end] = tail_mark(handle, end)  # every read seeks first, so this read moves nothing
            if not checkpointed:
                return None
            return Checkpoint(self.spec.source, end, {**position.state(), "tail": marks[end]})

        metrics, size = self.sink.metrics, os.fstat(handle.fileno()).st_size

        def committed(end: int) -> None:
            position.offset, position.tail = end, marks.pop(end)
            if metrics is not None and checkpointed:
                metrics.tailed(self.spec.source, size - end)

        done = commit_chunks(self.sink, self.spec.source, chunks, checkpoint, committed)
        if metrics is not None and checkpointed:
            metrics.tailed(self.spec.source, size - position.offset)
        return done

    def _drain_rotated(self, position: _Position) -> Committed:
        """The rest of the file we were reading, now under a rotated name (path.1, path-DATE…),
        which is then followed until quiet; said when it cannot be found."""
        found = self._find_rotated(position)
        if found is None:
            if position.offset:
                log.warning(
                    "%s was replaced, and the file read before (to byte %s) is not beside it under a rotated name "
                    "(compressed or removed?): lines written to it after that byte were not read",
                    self.spec.path,
                    f"{position.offset:,}",
                )
            return Committed()
        log.info("%s was rotated to %s; reading its last lines", self.spec.path, found)
        with open(found, "rb") as handle:
            done = self._read_to_end(handle, position, final=False)
            size = os.fstat(handle.fileno()).st_size
        self._rotated = _Rotated(found, position, size, time.monotonic())
        return done

    def _find_rotated(self, position: _Position) -> str | None:
        for candidate in sorted(glob.glob(glob.escape(self.spec.path) + "?*")):
            try:
                with open(candidate, "rb") as handle:
                    if os.fstat(handle.fileno()).st_ino != position.inode:
                        continue
                    if first_line_identity(handle) == position.identity:
                        return candidate
            except OSError:
                continue
        return None

    def _follow_rotated(self) -> Committed:
        """What the writer added to the rotated file since the last look; once it has been quiet
        for ROTATED_QUIET_S, its last line too (even without a newline), and it is left."""
        rotated = self._rotated
        assert rotated is not None
        inode = rotated.position.inode
        path = rotated.path if _same_inode(rotated.path, inode) else self._find_rotated(rotated.position)
        if path is None:  # renamed on (path.1 → path.2.gz) or removed: whatever it had was read
            self._rotated = None
            return Committed()
        rotated.path = path
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            now = time.monotonic()
            if size != rotated.size:
                if not rotated.grew:
                    log.info("%s is still written to after its rotation; reading it on until it is quiet", path)
                rotated.size, rotated.quiet_since, rotated.grew = size, now, True
                return self._read_to_end(handle, rotated.position, final=False, checkpointed=False)
            if now - rotated.quiet_since < ROTATED_QUIET_S:
                return Committed()
            self._rotated = None
            return self._read_to_end(handle, rotated.position, final=True, checkpointed=False)


def _same_inode(path: str, inode: int | None) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False
