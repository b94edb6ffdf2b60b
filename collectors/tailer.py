"""Tail a file into the store: survives rotation (rename + new file) and truncation
(copytruncate), and resumes from a checkpoint committed with the lines it covers.

A file is known by its identity (a hash of its first line) and a generation bumped on each
truncation; lines are identified by identity, generation and offset, so re-reading after a crash
dedupes and a rewritten file is new data even when it starts with the same line.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import BinaryIO

from collectors.base import Parsed
from collectors.formats import FileSpec, safe_end
from collectors.sink import MAX_GROUP_OBSERVATIONS, Committed, Sink
from syncwatch.store import Checkpoint

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
MAX_ITEM_BYTES = 16 << 20
FIRST_LINE_MAX = 64 * 1024


def first_line_identity(handle: BinaryIO) -> str | None:
    """A hash of the file's first line, or None while that line is still incomplete."""
    handle.seek(0)
    head = handle.read(FIRST_LINE_MAX)
    end = head.find(b"\n")
    if end < 0:
        return None if len(head) < FIRST_LINE_MAX else hashlib.blake2b(head, digest_size=8).hexdigest()
    return hashlib.blake2b(head[: end + 1], digest_size=8).hexdigest()


@dataclass(slots=True)
class _Position:
    """Where the tailer is: offset of the first unread byte in the file known by identity."""

    offset: int = 0
    identity: str | None = None
    generation: int = 0
    inode: int | None = None

    def state(self) -> dict[str, object]:
        return {"identity": self.identity, "generation": self.generation, "inode": self.inode}

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


class FileTailer:
    """One tailed file; ``poll`` reads what is new and commits it with the checkpoint."""

    def __init__(self, spec: FileSpec, sink: Sink, chunk: int = CHUNK_BYTES) -> None:
        self.spec = spec
        self.sink = sink
        self.chunk = chunk
        self._parser = spec.parser()
        self._position: _Position | None = None

    def poll(self) -> Committed:
        position = self._position or self._load()
        self._position = position
        try:
            stat = os.stat(self.spec.path)
        except FileNotFoundError:
            return Committed()
        total = Committed()
        if position.inode is not None and position.inode != stat.st_ino:
            total += self._drain_rotated(position)
            position.offset, position.identity, position.generation = 0, None, 0
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
            checkpoint.position, state.get("identity"), int(state.get("generation", 0)), state.get("inode")
        )

    def _follow(self, handle: BinaryIO, position: _Position, size: int) -> Committed:
        identity = first_line_identity(handle)
        if identity is None:
            return Committed()
        if position.identity is None:
            position.identity = identity
        elif identity != position.identity or size < position.offset:
            log.info("%s was truncated or replaced; reading it from the start", self.spec.path)
            position.offset, position.identity, position.generation = 0, identity, position.generation + 1
        return self._read_to_end(handle, position, eof=False)

    def _read_to_end(self, handle: BinaryIO, position: _Position, eof: bool) -> Committed:
        """Everything new, committed with its checkpoint a sink's largest group at a time: a
        backlog stores faster in fewer, larger transactions (see `syncwatch ingest`)."""
        total = Committed()
        while True:
            pending, end = Parsed(), position.offset
            while len(pending.rows) + len(pending.rejections) < MAX_GROUP_OBSERVATIONS:
                data = read_items(handle, end, self.spec.documents, eof, self.chunk)
                if not data:
                    break
                pending.extend(self._parser(data, self.sink.context(self.spec.source), end, position.line_identity))
                end += len(data)
            if end == position.offset:
                return total
            checkpoint = Checkpoint(self.spec.source, end, position.state())
            total += self.sink.commit(pending, self.spec.source, checkpoint=checkpoint)
            position.offset = end

    def _drain_rotated(self, position: _Position) -> Committed:
        """The rest of the file we were reading, now under a rotated name (path.1, path-DATE…)."""
        for candidate in sorted(glob.glob(glob.escape(self.spec.path) + "?*")):
            try:
                with open(candidate, "rb") as handle:
                    if os.fstat(handle.fileno()).st_ino != position.inode:
                        continue
                    if first_line_identity(handle) != position.identity:
                        continue
                    log.info("%s was rotated to %s; reading its last lines", self.spec.path, candidate)
                    return self._read_to_end(handle, position, eof=True)
            except OSError:
                continue
        return Committed()
