"""The thin driver half every collector shares: parse results into the store, atomically.

Observations, their quarantined neighbours and (for files) the checkpoint that covers them are
written in one transaction, so a crash at any moment leaves either all of a batch or none of it;
that is what makes ``kill -9`` safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from collectors.base import ParseContext, Parsed, now_ns
from collectors.keys import KeyExtractor
from syncwatch.config import Config
from syncwatch.store import Checkpoint, QuarantineItem, Store, WriteResult
from syncwatch.store.writes import save_checkpoint, write_observations, write_quarantine


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit did."""

    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0

    def __add__(self, other: Committed) -> Committed:
        return Committed(
            self.stored + other.stored, self.duplicates + other.duplicates, self.quarantined + other.quarantined
        )


class Sink:
    """Where parsed batches go: one store, one key extractor, the collectors' limits."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.keys = KeyExtractor.from_config(config.file)
        limits = config.file.collectors
        self._max_skew_ns = int(limits.max_clock_skew.total_seconds() * 1e9)
        self._max_attribute = limits.max_attribute_bytes

    def context(self, source: str) -> ParseContext:
        """A parse context with the clock read now (parsers never read it themselves)."""
        return ParseContext(source, self.keys, now_ns(), self._max_skew_ns, self._max_attribute)

    def commit(
        self, parsed: Parsed, source: str, content_type: str | None = None, checkpoint: Checkpoint | None = None
    ) -> Committed:
        items = parsed.quarantine_items(source, content_type)
        with self.store.writing() as conn:
            result = write_observations(conn, parsed.observations) if parsed.observations else WriteResult()
            quarantined = write_quarantine(conn, items, self.store.raw_limit) if items else 0
            if checkpoint is not None:
                save_checkpoint(conn, checkpoint)
        return Committed(result.stored, result.duplicates, quarantined)

    def reject(
        self, source: str, reason: str, raw: bytes, position: str | None = None, content_type: str | None = None
    ) -> None:
        """Quarantine a whole input (an undecodable body, a refused request)."""
        self.store.quarantine([QuarantineItem(source, reason, raw, position, content_type)])
