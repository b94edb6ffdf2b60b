"""Helper processes for a large pass (``correlator.parallel``): results in chunk order whoever
derived them, no fork while another thread runs, and a helper's failure costs only time."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from correlator import parallel
from syncwatch import cores as cores_module

CHUNKS = list(range(10))


def derive(chunk: int) -> tuple[int, int]:
    return chunk, os.getpid()


def test_helpers_derive_every_nth_chunk_and_the_results_come_in_order() -> None:
    with parallel.derived_in_order(CHUNKS, derive, 3) as results:
        found = list(results)
    assert results.helpers_private_mib > 0
    assert [chunk for chunk, _ in found] == CHUNKS
    derived_by = [pid for _, pid in found]
    assert derived_by[0::3] == [os.getpid()] * 4
    helpers = set(derived_by) - {os.getpid()}
    assert len(helpers) == 2, "two helper processes should have derived a share each"
    assert derived_by[1] == derived_by[4] == derived_by[7] != derived_by[2]


def test_no_helper_is_forked_while_another_thread_runs() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with parallel.derived_in_order(CHUNKS, derive, 3) as results:
            found = list(results)
    finally:
        stop.set()
        other.join()
    assert found == [(chunk, os.getpid()) for chunk in CHUNKS]
    assert results.helpers_private_mib == 0


def test_a_helper_that_dies_leaves_its_chunks_to_this_process(caplog: pytest.LogCaptureFixture) -> None:
    parent = os.getpid()

    def dying(chunk: int) -> tuple[int, int]:
        if os.getpid() != parent and chunk >= 3:
            os._exit(9)  # as a helper killed by the system would end, sending nothing
        return derive(chunk)

    with parallel.derived_in_order(CHUNKS, dying, 2) as results:
        found = list(results)
    assert [chunk for chunk, _ in found] == CHUNKS
    assert found[1][1] != parent, "the helper should have derived its first chunk before it died"
    assert all(pid == parent for _, pid in found[3:])
    assert "helper process correlator-derive-1 failed (it ended with exit code 9)" in caplog.text


def test_leaving_early_stops_the_helpers() -> None:
    parent = os.getpid()

    def slow(chunk: int) -> tuple[int, int]:
        if os.getpid() != parent:
            time.sleep(60)  # still deriving when the caller leaves
        return derive(chunk)

    with parallel.derived_in_order(CHUNKS, slow, 2) as results:
        next(iter(results))
        helpers = [child for child in parallel.multiprocessing.active_children() if child.name.startswith("correlator")]
    assert helpers, "a helper should have been running"
    assert not any(helper.is_alive() for helper in helpers)


def test_work_made_aside_comes_whole_and_in_order_and_only_where_a_helper_may_run() -> None:
    parent = os.getpid()

    def make() -> list[tuple[int, int]]:
        return [derive(chunk) for chunk in CHUNKS]

    with parallel.made_aside("test", make) as made:
        assert made is not None
        found = list(made)
    assert [chunk for chunk, _ in found] == CHUNKS
    assert len({pid for _, pid in found} - {parent}) == 1, "one helper process should have made them all"
    assert parallel.can_fork(), "the helper's drain thread should be gone with it"
    assert not [child for child in parallel.multiprocessing.active_children() if child.name == "correlator-test"]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with parallel.made_aside("test", make) as none:
            assert none is None, "no fork while another thread runs"
    finally:
        stop.set()
        other.join()


def test_processes_are_one_per_core_within_the_quota_up_to_the_limit_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parallel.processes_for(3) == 3
    cores = min(len(os.sched_getaffinity(0)), parallel.MAX_PROCESSES)
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(cores_module, "CPU_MAX", quota)
    assert parallel.processes_for(0) == cores, "no quota file: every core"
    quota.write_text("max 100000\n")
    assert parallel.processes_for(0) == cores
    quota.write_text("150000 100000\n")  # a container allowed one and a half cores
    assert parallel.processes_for(0) == 1
    quota.write_text("50000 100000\n")  # half a core: one process, not every core
    assert parallel.processes_for(0) == 1


def test_a_helper_sends_on_a_pipe_of_a_megabyte() -> None:
    """The pass's thread that drains a helper's pipe gets the GIL back only every few
    milliseconds: a pipe of the default 64 KiB made a helper wait through dozens of such
    turns for each result of several MB."""
    helper = parallel._Helper("test", lambda: iter([1]), 0)
    try:
        size = fcntl.fcntl(helper._receive.fileno(), fcntl.F_GETPIPE_SZ)  # the pipe's, from either end
    finally:
        helper.start_draining()
        helper.stop()
    assert size == parallel.PIPE_BYTES
