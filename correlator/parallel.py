"""A large pass on every core: one interpreter runs its pure Python work on one core.

- Deriving (stages, SLA, exceptions), half of a pass from empty: helper processes forked once the
  batch is in memory share it (copy on write, nothing is sent to them), each derives every n-th
  chunk and sends the results back pickled; the pass takes them in chunk order, so it writes
  exactly what one process would have written, in the same order.
- Linking, a sixth: one helper reads the batch's keys on a connection of its own and links them
  while the pass reads the members (``computed_aside``).

A fork is only taken where it is safe: on Linux, from a process running no other thread (a
thread holding a lock at the fork would leave it held in the child forever). Inside ``serve``,
whose collectors and scheduler run on threads, passes stay in one process; they are small there.
A helper that dies is not fatal: the pass does its work itself and says so in the log.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from queue import Queue
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
Chunk = TypeVar("Chunk")
Result = TypeVar("Result")
MAX_PROCESSES = 4  # memory: every helper may come to copy the pages it touches


def processes_for(setting: int) -> int:
    """How many processes derive: ``setting``, or where it is 0 one per core this process may use."""
    if setting > 0:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, MAX_PROCESSES)


def can_fork() -> bool:
    """Whether forking is safe here: Linux (macOS's system libraries refuse forked children), and
    no other thread running."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


class Derivation(Generic[Chunk, Result]):
    """The results of ``derived_in_order``, and the largest peak memory of its helpers."""

    def __init__(self, chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], helpers: list[_Helper | None]):
        self._chunks, self._derive, self._helpers = chunks, derive, helpers

    def __iter__(self) -> Iterator[Result]:
        return _in_order(self._chunks, self._derive, self._helpers)

    @property
    def helpers_peak_rss_mib(self) -> int:
        """The largest peak resident memory a helper reported (0 without helpers); much of it is
        shared with this process."""
        return max((h.peak_rss_kib for h in self._helpers if h is not None), default=0) // 1024


@contextmanager
def derived_in_order(
    chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], processes: int
) -> Iterator[Derivation[Chunk, Result]]:
    """``derive(chunk)`` for every chunk, in order. With ``processes`` > 1 (and forking safe),
    chunk i is derived by process i mod ``processes``: this one takes the first of every round.
    The helpers are forked on entry — before the caller starts threads of its own — and are gone
    on exit, finished or killed."""
    helpers: list[_Helper | None] = []
    try:
        if can_fork():
            helpers = [_forked(f"derive-{share}", chunks, derive, share, processes) for share in range(1, processes)]
            for helper in filter(None, helpers):  # after every fork: a child must not inherit a running thread
                helper.start_draining()
        yield Derivation(chunks, derive, helpers)
    finally:
        for helper in filter(None, helpers):
            helper.stop()


@contextmanager
def computed_aside(compute: Callable[[], Result]) -> Iterator[Callable[[], Result | None]]:
    """``compute()`` in a forked helper while this process goes on: the getter yielded waits for
    its result, or gives None where forking is not safe or the helper failed (the caller computes
    it then). The helper is gone on exit."""
    helper = _forked(_name(compute), [compute], _call, 0, 1) if can_fork() else None
    if helper is None:
        yield lambda: None
        return
    helper.start_draining()
    try:
        yield lambda: _or_none(helper.next_result())
    finally:
        helper.stop()


def _call(compute: Callable[[], Result]) -> Result:
    return compute()


def _or_none(found: object) -> Any:
    return None if found is _MISSING else found


def _name(compute: Callable[[], Any]) -> str:
    """A helper's name from what it computes (``functools.partial`` of ``_link_apart``: link-apart)."""
    named = getattr(compute, "func", compute)
    return getattr(named, "__name__", "aside").strip("_").replace("_", "-")


def _forked(
    name: str, chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], share: int, rounds: int
) -> _Helper | None:
    """A helper for ``share``, or None where the system refuses another process (the pass does its work)."""
    try:
        return _Helper(f"correlator-{name}", chunks, derive, share, rounds)
    except OSError as err:
        log.warning("could not start the correlator's %s helper (%s); the pass does its work itself", name, err)
        return None


def _in_order(
    chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], helpers: list[_Helper | None]
) -> Iterator[Result]:
    rounds = len(helpers) + 1
    for index, chunk in enumerate(chunks):
        helper = helpers[index % rounds - 1] if index % rounds else None
        found = helper.next_result() if helper is not None else _MISSING
        yield derive(chunk) if found is _MISSING else found


_MISSING = object()


class _Helper:
    """One forked process deriving the chunks of its share, and the thread draining its pipe (a
    full pipe would stop it until this process, busy deriving its own share, came to read)."""

    def __init__(
        self, name: str, chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], share: int, rounds: int
    ) -> None:
        receive, send = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve_share, args=(send, chunks, derive, share, rounds), name=name
        )
        self.process.start()
        send.close()  # only the child holds the writing end now: its exit is this end's EOF
        self.results: Queue[bytes | None] = Queue()
        self.failed = False
        self.peak_rss_kib = 0
        self.drain = threading.Thread(target=self._drain, args=(receive,), name=self.process.name, daemon=True)

    def start_draining(self) -> None:
        self.drain.start()

    def _drain(self, receive: Connection) -> None:
        try:
            while True:
                self.results.put(receive.recv_bytes())
        except (EOFError, OSError):
            self.results.put(None)
        finally:
            receive.close()

    def next_result(self) -> object:
        """The next chunk's result, or ``_MISSING`` once the helper failed (the caller derives it)."""
        if self.failed:
            return _MISSING
        message = self.results.get()  # None at the pipe's end: the helper exited
        kind, value, peak_rss_kib = pickle.loads(message) if message is not None else ("died", None, 0)
        self.peak_rss_kib = max(self.peak_rss_kib, peak_rss_kib)
        if kind == "result":
            return value
        self.failed = True
        self.process.join()
        why = value or f"it ended with exit code {self.process.exitcode}"
        log.warning("helper process %s failed (%s); the pass does its work itself", self.process.name, why)
        return _MISSING

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        if self.drain.ident is not None:
            self.drain.join()


def _serve_share(
    send: Connection, chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], share: int, rounds: int
) -> None:
    """The helper's whole life: derive its chunks, send each result, then leave (multiprocessing
    ends a forked child with ``os._exit``: nothing inherited, such as a database connection, is closed)."""
    try:
        for chunk in chunks[share::rounds]:
            message = ("result", derive(chunk), _peak_rss_kib())
            send.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as err:  # the parent derives the rest and logs why
        send.send_bytes(pickle.dumps(("failed", f"{type(err).__name__}: {err}", _peak_rss_kib())))
    finally:
        send.close()


def _peak_rss_kib() -> int:
    import resource  # POSIX only, as helpers are

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, the only system helpers run on
