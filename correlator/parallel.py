"""Work of a large pass done on every core: deriving, and the reading of a backlog.

Deriving (stages, SLA, exceptions) is pure Python work per transaction, half of a pass from
empty; one interpreter runs it on one core. Helper processes forked once the batch is in memory
share it (copy on write, nothing is sent to them), each derives every n-th chunk and sends the
results back pickled; the pass takes them in chunk order, so it writes exactly what one process
would have written, in the same order. Reading a large backlog takes another third of a pass:
a helper forked before it reads the later part of the observations on a connection of its own
while the pass reads the rest, and sends them as plain tuples. Derive helpers touch no database
connection.

Helpers run only on Linux, from a process running no other thread: a thread holding a lock at a
fork would leave it held in the child forever. Inside ``serve``, whose collectors and scheduler
run on threads, passes stay in one process; they are small there. A helper ignores Ctrl-C (the
pass stops it) and dies with the pass. One that fails is not fatal: the pass does its work
itself and says so in the log.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from multiprocessing.connection import Connection
from queue import Queue
from typing import Generic, TypeVar

from syncwatch.cores import usable_cores

log = logging.getLogger(__name__)
Chunk = TypeVar("Chunk")
Result = TypeVar("Result")
MAX_PROCESSES = 4  # memory: every helper may come to copy the pages it touches
WAITING_RESULTS = 2  # results a helper may have ready before it waits for the pass to take one
MEMORY_EVERY_S = 1.0  # how often a helper reads its private memory at most (see _Memory)
PIPE_BYTES = 1 << 20  # a helper's pipe: Linux's default cap for unprivileged processes (pipe-max-size; see _roomy)


def processes_for(setting: int) -> int:
    """How many processes a large pass runs on: ``setting``, or where it is 0 one per core this
    process may use (its CPU affinity and its container's quota), at most ``MAX_PROCESSES``."""
    if setting > 0:
        return setting
    return min(usable_cores(), MAX_PROCESSES)


def can_fork() -> bool:
    """Whether helpers may run here: Linux (macOS's system libraries refuse forked children), and
    no other thread running."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


class Derivation(Generic[Chunk, Result]):
    """The results of ``derived_in_order``, and the memory its helpers took for themselves."""

    def __init__(self, chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], helpers: list[_Helper | None]):
        self._chunks, self._derive, self._helpers = chunks, derive, helpers

    def __iter__(self) -> Iterator[Result]:
        return _in_order(self._chunks, self._derive, self._helpers)

    @property
    def helpers_private_mib(self) -> int:
        """The most memory one helper came to hold privately (pages it copied or allocated; those
        it still shares with the pass are not counted): 0 without helpers."""
        return max((h.private_kib for h in self._helpers if h is not None), default=0) // 1024


@contextmanager
def derived_in_order(
    chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], processes: int
) -> Iterator[Derivation[Chunk, Result]]:
    """``derive(chunk)`` for every chunk, in order. With ``processes`` > 1 (and helpers allowed),
    chunk i is derived by process i mod ``processes``: this one takes the first of every round.
    The helpers are forked on entry — before the caller starts threads of its own — and are gone
    on exit, finished or killed."""
    helpers: list[_Helper | None] = []
    try:
        if can_fork():
            for share in range(1, processes):
                helpers.append(_forked(f"derive-{share}", partial(_share, chunks, derive, share, processes)))
            for helper in filter(None, helpers):  # after every fork: a child must not inherit a running thread
                helper.start_draining()
        yield Derivation(chunks, derive, helpers)
    finally:
        for helper in filter(None, helpers):
            helper.stop()


def _share(chunks: Sequence[Chunk], derive: Callable[[Chunk], Result], share: int, rounds: int) -> Iterator[Result]:
    """A derive helper's work: every ``rounds``-th chunk from the ``share``-th."""
    for chunk in chunks[share::rounds]:
        yield derive(chunk)


@contextmanager
def made_aside(name: str, make: Callable[[], Iterable[Result]]) -> Iterator[Aside[Result] | None]:
    """The results of ``make()``, made by a helper process forked on entry while this one does
    other work; None where no helper may run (see ``can_fork``). Every result waits here until
    taken, so the helper never stops for this process. The results end early, logged, where the
    helper failed: the caller does the rest itself. The helper is gone on exit."""
    helper = _forked(name, make, waiting=0) if can_fork() else None
    if helper is None:
        yield None
        return
    try:
        helper.start_draining()
        yield Aside(helper)
    finally:
        helper.stop()


class Aside(Generic[Result]):
    """The results of ``made_aside`` as they come, and the memory its helper took for itself."""

    def __init__(self, helper: _Helper) -> None:
        self._helper = helper

    def __iter__(self) -> Iterator[Result]:
        while (found := self._helper.next_result()) is not _MISSING:
            yield found  # type: ignore[misc]

    @property
    def helper_private_mib(self) -> int:
        return self._helper.private_kib // 1024


def _forked(name: str, work: Callable[[], Iterable[object]], waiting: int = WAITING_RESULTS) -> _Helper | None:
    """A running helper, or None where the system refuses another process (the pass does its work)."""
    try:
        return _Helper(f"correlator-{name}", work, waiting)
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
    """One helper process working through its results, and the thread draining its pipe (a full
    pipe would stop it until this process, busy with its own share, came to read); ``waiting``
    results at most wait for this process to take them (0: any number)."""

    def __init__(self, name: str, work: Callable[[], Iterable[object]], waiting: int) -> None:
        receive, send = multiprocessing.Pipe(duplex=False)
        _roomy(send)
        arguments = (send, work, os.getpid())
        self.process = multiprocessing.get_context("fork").Process(target=_serve, args=arguments, name=name)
        try:
            self.process.start()
        except OSError:  # no process: the caller does its work, and the pipe goes
            receive.close()
            raise
        finally:
            send.close()  # only the child holds the writing end now: its exit is this end's EOF
        self.results: Queue[bytes | None] = Queue(maxsize=waiting)
        self.failed = self.finished = False
        self.private_kib = 0
        self._receive = receive
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
        """The next result, or ``_MISSING`` once the helper finished or failed (the caller does the rest)."""
        if self.failed or self.finished:
            return _MISSING
        message = self.results.get()  # None at the pipe's end: the helper exited
        kind, value, private_kib = pickle.loads(message) if message is not None else ("died", None, 0)
        self.private_kib = max(self.private_kib, private_kib)
        if kind == "result":
            return value
        if kind == "finished":
            self.finished = True
            return _MISSING
        self.failed = True
        self.process.join()
        why = value or f"it ended with exit code {self.process.exitcode}"
        log.warning("helper process %s failed (%s); the pass does its work itself", self.process.name, why)
        return _MISSING

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        if self.drain.ident is None:  # never drained (its thread did not start): the pipe is still ours to close
            self._receive.close()
        else:
            while self.drain.is_alive():  # a drain waiting for room in the queue
                with suppress(Exception):
                    self.results.get_nowait()
                self.drain.join(timeout=0.01)


def _roomy(pipe: Connection) -> None:
    """Let ``pipe`` hold a megabyte instead of 64 KiB. Its reader is a thread of the pass, which
    gets the GIL back only every few milliseconds, and needs it between two reads: with the
    default size, a helper sent a result of several MB in dozens of such turns and spent a
    sixth to a third of its life blocked. The default stays where the system refuses."""
    with suppress(OSError, AttributeError):  # AttributeError: an fcntl without F_SETPIPE_SZ (not Linux)
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _serve(send: Connection, work: Callable[[], Iterable[object]], parent: int) -> None:
    """The helper's whole life: send each result of its work, then say it finished, and leave
    (multiprocessing ends a child with ``os._exit``: nothing inherited, such as a database
    connection, is closed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pass's to handle: it stops its helpers
    _die_with(parent)
    memory = _Memory()
    try:
        for result in work():
            send.send_bytes(pickle.dumps(("result", result, memory.kib()), protocol=pickle.HIGHEST_PROTOCOL))
        send.send_bytes(pickle.dumps(("finished", None, memory.kib(fresh=True)), protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as err:  # the pass does the rest and logs why; gone already, it hears nothing
        with suppress(OSError):
            send.send_bytes(pickle.dumps(("failed", f"{type(err).__name__}: {err}", memory.kib(fresh=True))))
    finally:
        with suppress(OSError):
            send.close()


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def _die_with(parent: int) -> None:
    """Ask Linux to kill this helper when the pass's process dies (killed, or out of memory)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


class _Memory:
    """A helper's private memory, read at most every ``MEMORY_EVERY_S`` (and when asked fresh): a
    read walks every page the process maps, 30 ms and more for one forked from a large pass, and
    a read per result cost a reading helper a fifth of its time."""

    def __init__(self) -> None:
        self._read_at: float | None = None
        self._kib = 0

    def kib(self, fresh: bool = False) -> int:
        now = time.monotonic()
        if fresh or self._read_at is None or now - self._read_at >= MEMORY_EVERY_S:
            self._read_at, self._kib = now, _private_kib()
        return self._kib


def _private_kib() -> int:
    """Memory this helper holds for itself: pages it copied from the pass or allocated."""
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            return sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty")))
    except (OSError, ValueError, IndexError):
        return 0
