"""Parsing in worker processes, so the server's request threads and its one store writer do not
share one GIL with the parsers.

A parser is a pure function (bytes in, ``Parsed`` out) whose last argument is its ``ParseContext``;
a worker builds that context from what it was given at start (the key rules and limits) and what
each call carries (the source and the receiver's clock, read when the request was taken). Results
come back pickled: rows are plain tuples, rejections small dataclasses, and a parser's
``MalformedInput`` is raised in the caller's thread as if the parse had run there.

Workers are spawned (never forked from a threaded server), ignore SIGINT (the server stops them),
and exit by themselves once the server's process is gone, ``kill -9`` included. A worker that dies
fails only the calls it held; those are parsed in the caller's thread and the pool is started again.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from typing import Any

from collectors.base import ParseContext, Parsed, now_ns
from collectors.keys import KeyExtractor
from collectors.sink import Sink
from syncwatch.cores import usable_cores
from syncwatch.store.writes import DriverForm

Parser = Callable[..., Parsed]
_PARENT_POLL_S = 0.5
_setup: tuple[KeyExtractor, DriverForm, int, int, bool] | None = None


def default_workers() -> int:
    """One worker per core the server's own threads leave free (within a container's CPU quota), at
    least one, at most four."""
    return max(1, min(4, usable_cores() - 1))


def workers_for(asked: int | None) -> int:
    """The pool size a ``--parse-workers`` flag asks for: its value (0: parse in process), else the default."""
    return default_workers() if asked is None else max(0, asked)


def _start_worker(
    keys: KeyExtractor, form: DriverForm, max_skew_ns: int, max_attribute: int, ordered_line_ids: bool, parent: int
) -> None:
    global _setup
    _setup = (keys, form, max_skew_ns, max_attribute, ordered_line_ids)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="parent-watch").start()


def _exit_with(parent: int) -> None:
    """Leave once the server is gone: a worker re-parented after ``kill -9`` must not linger."""
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(0)


def _parse_in_worker(parser: Parser, args: tuple[Any, ...], source: str, clock_ns: int) -> Parsed:
    if _setup is None:
        raise RuntimeError("parse worker was not set up")
    keys, form, max_skew_ns, max_attribute, ordered_line_ids = _setup
    return parser(*args, ParseContext(source, keys, clock_ns, form, max_skew_ns, max_attribute, ordered_line_ids))


def _ready() -> bool:
    return _setup is not None


@dataclass(slots=True)
class _Call:
    """One call of ``parse_ahead``: its future once a worker (``pool``) or the caller took it."""

    parser: Parser
    args: tuple[Any, ...]
    source: str
    pool: ProcessPoolExecutor | None = None
    future: Future[Parsed] | None = None

    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def result(self) -> Parsed:
        assert self.future is not None
        return self.future.result()


class ParsePool:
    """``workers`` processes that run parsers for one sink's key rules and limits."""

    def __init__(self, sink: Sink, workers: int) -> None:
        self.sink = sink
        self.workers = workers
        self._lock = threading.Lock()
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        sink = self.sink
        setup = (sink.keys, sink.form, sink.max_skew_ns, sink.max_attribute, sink.ordered_line_ids, os.getpid())
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker, initargs=setup)

    def wait_ready(self) -> None:
        """Block until the workers have started and imported the parsers (spawning takes a second)."""
        for done in [self._pool.submit(_ready) for _ in range(self.workers)]:
            done.result()

    def parse(self, parser: Parser, args: tuple[Any, ...], source: str) -> Parsed:
        """``parser(*args, ctx)`` in a worker, with the clock read now; in this thread if the pool broke."""
        clock_ns = now_ns()
        pool = self._pool
        try:
            return pool.submit(_parse_in_worker, parser, args, source, clock_ns).result()
        except BrokenProcessPool:
            self._restart(pool)
        return parser(*args, self.sink.context(source))

    def parse_ahead(self, calls: Iterable[tuple[Parser, tuple[Any, ...], str]], ahead: int) -> Iterator[Parsed]:
        """Each call's ``parser(*args, ctx)`` in order, reading up to ``ahead`` calls ahead: a
        file's next chunks are parsed while the caller stores this one. The workers get as many
        as keep each busy; while the caller would wait for the next result, it parses the furthest
        call not handed out itself (when the workers set the pace, as in a file import whose writes
        leave the caller idle half the time, its wait becomes parsing). Results, and errors, keep
        their places. A call the pool could not run (a worker died) is parsed in this thread."""
        remaining = iter(calls)
        queue: deque[_Call] = deque()
        at_once = self.workers + 1  # one running in each worker, one waiting

        def read_and_hand_out() -> None:
            queue.extend(_Call(*call) for call in islice(remaining, max(1, ahead) - len(queue)))
            out = sum(1 for call in queue if call.pool is not None and not call.done())
            for call in queue:
                if out >= at_once:
                    break
                if call.future is None:
                    self._hand_out(call)
                    out += 1

        read_and_hand_out()
        while queue:
            call = queue.popleft()
            read_and_hand_out()
            if call.future is None:
                self._parse_here(call)
            elif not call.done():
                unsent = [later for later in queue if later.future is None]
                if unsent:
                    self._parse_here(unsent[-1])
            try:
                yield call.result()
            except BrokenProcessPool:
                if call.pool is not None:
                    self._restart(call.pool)
                yield call.parser(*call.args, self.sink.context(call.source))

    def _hand_out(self, call: _Call) -> None:
        call.pool = self._pool
        try:
            call.future = call.pool.submit(_parse_in_worker, call.parser, call.args, call.source, now_ns())
        except BrokenProcessPool as err:
            call.future = Future()
            call.future.set_exception(err)

    def _parse_here(self, call: _Call) -> None:
        call.future = Future()
        try:
            call.future.set_result(call.parser(*call.args, self.sink.context(call.source)))
        except Exception as err:  # raised where the caller reads this result, as from a worker
            call.future.set_exception(err)

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = self._start()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
