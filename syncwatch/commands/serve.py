"""`syncwatch serve`: the collectors' HTTP endpoints under uvicorn, and a scheduler for the jobs
that run beside them: file tailers, the correlator, SLA re-evaluation, alerts, automatic retries
and retention.

A job factory gets the config and the store and returns ``Job``s; each runs on an interval,
never twice at once (not even in two `serve` instances on one PostgreSQL database), late runs
coalesced. The server, the collectors and the jobs are imported when `serve` runs, not when the
CLI starts: every other command would pay for them otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from syncwatch.commands.common import Command, add_common_options, config_from, open_store
from syncwatch.config import Config
from syncwatch.model import count
from syncwatch.store import Store
from syncwatch.store.locks import sole_serve

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from collectors.sink import Sink
    from collectors.workers import ParsePool
    from syncwatch.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class SkipsNowAndThen(logging.Filter):
    """apscheduler warns at every tick that a job still running is skipped: a correlator pass held
    up by a locked table wrote a line every five seconds. The first skip of a job is told, then one
    in ``every_s``; the 'Adding job tentatively' line of every job at start is not."""

    def __init__(self, every_s: float = 600.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._told: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Adding job tentatively"):
            return False  # one per job at every start, before the scheduler runs: the banner lists them
        if "maximum number of running instances reached" not in text:
            return True
        # 'Execution of job "tail:… (trigger: interval[0:00:01], next run at: 00:46:01 UTC)" skipped: …':
        # the job is what comes before its trigger, whose next run time changes at every tick.
        job, now = text.split(" skipped", 1)[0].split(" (trigger:", 1)[0], time.monotonic()
        if now - self._told.get(job, -self.every_s) < self.every_s:
            return False
        self._told[job] = now
        return True


SCHEDULER_LOG = logging.getLogger("syncwatch.scheduler")  # apscheduler's lines, with its skips thinned
SCHEDULER_LOG.addFilter(SkipsNowAndThen())


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    func: Callable[[], object]
    interval_s: float
    first_after_s: float = 0.0  # how long after `serve` starts it first runs


JobFactory = Callable[[Config, Store], Iterable[Job]]


def tailer_jobs(config: Config, store: Store, sink: Sink | None = None, pool: ParsePool | None = None) -> Iterable[Job]:
    """One job per tailed file. Given the server's sink and parse pool, tailers share its one
    writer, and a backlog (a file caught up after downtime) is parsed in the pool's workers."""
    from collectors.formats import spec_from_tailer
    from collectors.sink import Sink
    from collectors.tailer import FileTailer

    sink = sink or Sink(store, config)
    for tailer in config.file.tailers:
        spec = spec_from_tailer(tailer, config.file)
        follow = FileTailer(spec, sink, pool=pool)
        yield Job(f"tail:{spec.source}", _logged(follow.poll, spec.source), config.tail_interval_s)


def correlator_jobs(config: Config, store: Store) -> Iterable[Job]:
    """Correlate what arrived, re-evaluate SLAs that change with time alone, deliver alerts, and
    alert when the correlator falls behind or a system goes quiet."""
    from correlator.alerts import deliver, watch_backlog, watch_quiet
    from correlator.passes import Correlator

    correlator = Correlator(store, config)

    def correlate() -> None:
        result = correlator.run_pass()
        for conflict in result.conflicts:
            log.warning("correlate: %s (check the partner's references)", conflict)
        if result.refused_links > len(result.conflicts):
            log.debug("correlate: %d links refused (batch traces spanning orders included)", result.refused_links)

    yield Job("correlate", _logged(correlate, "correlate"), config.correlate_interval_s)
    yield Job("sla", _logged(correlator.reevaluate, "sla"), config.correlate_interval_s)
    yield Job("alerts", _logged(lambda: deliver(store, config), "alerts"), config.correlate_interval_s)
    yield Job("backlog", _logged(lambda: watch_backlog(store, config), "backlog"), BACKLOG_WATCH_INTERVAL_S)
    # While serve was down nothing could arrive: partners get the quarter of an hour a quiet system
    # is given anyway to resend and catch up before their silence is called one.
    quiet = _logged(lambda: watch_quiet(store, config), "quiet")
    yield Job("quiet", quiet, BACKLOG_WATCH_INTERVAL_S, first_after_s=QUIET_GRACE_S)


RETENTION_INTERVAL_S = 6 * 3600
QUIET_GRACE_S = 15 * 60
BACKLOG_WATCH_INTERVAL_S = 60.0  # a stalled correlator, or a quiet system, is alerted within a minute


def retention_jobs(config: Config, store: Store) -> Iterable[Job]:
    """Prune history older than the retention, when `serve` starts and every 6 hours after."""
    from syncwatch.commands.db import prune_expired, pruned_text

    days = config.retention_days
    if days <= 0:
        return

    def run() -> None:
        pruned = prune_expired(store, days)
        if pruned.transactions or pruned.observations or pruned.quarantine or pruned.alerts:
            log.info("retention: %s", pruned_text(pruned, days))

    yield Job("retention", _logged(run, "retention"), RETENTION_INTERVAL_S)


def _logged(poll: Callable[[], object], name: str) -> Callable[[], bool]:
    """A job that logs its failure and runs again next time, instead of dying with the scheduler;
    it returns whether it worked. The same failure again (an unreadable file, every second) is not
    logged again until the job has worked in between; that it works again is said once."""
    failing: list[str] = []  # the failure last logged, while it lasts

    def run() -> bool:
        try:
            poll()
        except Exception as err:  # a job must never take the scheduler down; the next run retries
            text = f"{type(err).__name__}: {err}"
            if failing == [text]:
                log.debug("job %s failed again: %s", name, text)
                return False
            failing[:] = [text]
            if isinstance(err, OSError):
                log.warning("job %s cannot read its file: %s; it tries again at every interval", name, err)
            else:
                log.exception("job %s failed; it runs again at the next interval", name)
            return False
        if failing:
            log.info("job %s works again", name)
            failing.clear()
        return True

    return run


def one_at_a_time(store: Store, job: Job, metrics: ServiceMetrics | None = None) -> Callable[[], None]:
    """The job, skipped while another `serve` on the same database runs it (it runs next time);
    each run counted in ``metrics``: a job that raises, or returns False, failed."""

    def run() -> None:
        with store.exclusive(f"job:{job.id}") as held:
            if not held:
                log.debug("job %s runs in another serve instance; skipped", job.id)
                if metrics is not None:
                    metrics.job_ran(job.id, None, 0.0)
                return
            started, worked = time.perf_counter(), False
            try:
                worked = job.func() is not False
            finally:
                if metrics is not None:
                    metrics.job_ran(job.id, worked, time.perf_counter() - started)

    return run


def job_factories(sink: Sink | None = None, pool: ParsePool | None = None) -> tuple[JobFactory, ...]:
    from actions.jobs import policy_jobs

    return (partial(tailer_jobs, sink=sink, pool=pool), correlator_jobs, policy_jobs, retention_jobs)


def build_scheduler(
    config: Config,
    store: Store,
    sink: Sink | None = None,
    pool: ParsePool | None = None,
    metrics: ServiceMetrics | None = None,
) -> BackgroundScheduler:
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=UTC, logger=SCHEDULER_LOG)
    for factory in job_factories(sink, pool):
        for job in factory(config, store):
            scheduler.add_job(
                one_at_a_time(store, job, metrics),
                "interval",
                seconds=job.interval_s,
                id=job.id,
                name=job.id,  # what apscheduler's own log lines call it
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,  # a run delayed by a busy start runs late, once, instead of being skipped
                next_run_time=datetime.now(UTC) + timedelta(seconds=job.first_after_s),
            )
    if sink is not None:  # the rest of a burst of rejections is told when its interval is over
        scheduler.add_job(sink.rejections.flush, "interval", seconds=sink.rejections.interval_s, id="quarantine-log")
    return scheduler


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--host", help="address to listen on (default: setting host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: setting port, 4318)")
    parser.add_argument(
        "--parse-workers",
        type=int,
        help="processes that parse request bodies (default: one per core beyond the first, 1 to 4; "
        "0 parses in the request threads)",
    )


def _run(args: argparse.Namespace) -> int:
    config = config_from(args, host=args.host, port=args.port)
    if missing := _unset_tokens(config):
        print(f"syncwatch serve: {missing}", file=sys.stderr)
        return 2
    store = open_store(config, require_schema=False)
    with sole_serve(store.engine):
        return _serve(config, store, args.parse_workers)


def _serve(config: Config, store: Store, parse_workers: int | None) -> int:
    import uvicorn

    from collectors.server import create_app
    from collectors.sink import Sink
    from collectors.workers import ParsePool, workers_for
    from syncwatch.metrics import ServiceMetrics

    # The port first: an instance that cannot listen must not run its jobs (retries sent to partners,
    # alerts, pruning) on every restart a supervisor makes.
    try:
        listening = _listen(config.host, config.port)
    except OSError as err:
        print(f"syncwatch serve: cannot listen on {config.host}:{config.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    store.upgrade()
    store.checkpoint_less_often()
    sink = Sink(store, config)
    workers = workers_for(parse_workers)
    parse_pool = ParsePool(sink, workers) if workers else None
    metrics = ServiceMetrics(store)
    scheduler = build_scheduler(config, store, sink, parse_pool, metrics)

    def stop_jobs() -> None:
        """Let a running job (a correlator pass, an action) finish; start no more."""
        if scheduler.running:
            scheduler.shutdown(wait=True)
            log.info("serve: scheduled jobs stopped")

    try:
        if parse_pool is not None:
            parse_pool.wait_ready()
        app = create_app(sink, parse_pool=parse_pool, on_shutdown=(stop_jobs,), metrics=metrics)
        server = uvicorn.Server(
            uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level, access_log=False)
        )
        log.info("serve: %s", _plan(config, store, workers))
        scheduler.start()
        try:
            server.run(sockets=[listening])
        finally:
            stop_jobs()
    finally:
        listening.close()
        if parse_pool is not None:
            parse_pool.close()
        store.close()
    return 0


def _unset_tokens(config: Config) -> str | None:
    """The first token variable the config names that serve's environment lacks: every request of that
    sender would be refused (401) from the first, a deploy's mistake better said before starting."""
    named = [(f"[sources.{n}]", s.token_env) for n, s in sorted(config.file.sources.items())]
    named += [(f"[webhooks.{n}]", w.token_env) for n, w in sorted(config.file.webhooks.items()) if w.token_env]
    for where, env in named:
        if not os.environ.get(env):
            return f"{where} token_env names {env}, which is not set in this environment: set it, or remove the token"
    return None


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn to serve on (as its own binding would make it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _plan(config: Config, store: Store, workers: int) -> str:
    """What this serve will do, in one line for whoever starts it (the database URL without its
    password, the alert webhook named by its variable only: both may be secrets)."""
    files = config.file
    tokens = f"bearer tokens for {', '.join(sorted(files.sources))}" if files.sources else "no tokens required"
    hooks = f"; webhooks {', '.join(f'/v1/webhooks/{n}' for n in sorted(files.webhooks))}" if files.webhooks else ""
    alerts = "set" if os.environ.get(config.alert_webhook_env) else "not set, so alerts wait in the outbox"
    retention = f"{config.retention_days} days" if config.retention_days > 0 else "off (everything kept)"
    return (
        f"database {store.url}; OTLP and events at http://{config.host}:{config.port} ({tokens}{hooks}); "
        f"{count(len(files.tailers), 'file')} tailed; {count(workers, 'parse worker')}; correlating every "
        f"{config.correlate_interval_s:g} s; retention {retention}; alert webhook ${config.alert_webhook_env} {alerts}"
        f"{_partners_note(config)}"
    )


def _partners_note(config: Config) -> str:
    """Where actions go, said when every partner is on this machine: the packaged partners are the
    simulator's, and a config without its own [partners] retries orders against them."""
    hosts = {urlsplit(p.base_url).hostname for p in config.file.partners.values()}
    if not hosts or not hosts <= {"127.0.0.1", "localhost", "::1"}:
        return ""
    return (
        f"; partners: all {len(config.file.partners)} on this machine, as the simulator's are, so a person's "
        "retries and reroutes go there until [partners] names your systems"
    )


COMMAND = Command(
    "serve", "run the collectors (OTLP/HTTP, events, file tailers) and the scheduler", _add_arguments, _run
)
