"""Shared fixtures: a fresh store on every engine syncwatch supports.

The ``store`` fixture is parametrised over SQLite (a real file) and PostgreSQL (a throwaway
database on the server named by SYNCWATCH_TEST_PG). Where no PostgreSQL server answers, those
cases skip with the reason printed; CI's machine always has one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from syncwatch.store import Store

if TYPE_CHECKING:
    from collectors.sink import Sink
from syncwatch.store.engine import parse_url

PG_URL = os.environ.get("SYNCWATCH_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Callable[[], str]]:
    """A URL template for throwaway databases on the test PostgreSQL server."""
    admin = create_engine(parse_url(PG_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:  # any driver or network error means: no server here
        admin.dispose()
        pytest.skip(f"no PostgreSQL server answers at {PG_URL} ({type(err).__name__}); set SYNCWATCH_TEST_PG")
    created: list[str] = []

    def make() -> str:
        name = f"syncwatch_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return parse_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database, once per engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'syncwatch.db'}"
    return request.getfixturevalue("pg_server")()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An upgraded, empty store on each engine."""
    store = Store.open(db_url)
    store.upgrade()
    yield store
    store.close()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    """A collectors' sink on a fresh SQLite file, with the packaged config."""
    from collectors.sink import Sink
    from syncwatch.config import load_config

    config = load_config(None, {"db": f"sqlite:///{tmp_path / 'sink.db'}"}, environ={})
    store = Store.open(config.db)
    store.upgrade()
    yield Sink(store, config)
    store.close()


@dataclass
class RunningCollector:
    """A `serve`-equivalent app under a real uvicorn on 127.0.0.1, with its store."""

    url: str
    store: Store


@pytest.fixture
def run_collector(tmp_path: Path) -> Iterator[Callable[..., RunningCollector]]:
    """Start the collectors' ASGI app under uvicorn in a thread; config text and environment optional."""
    import socket
    import threading
    import time

    import uvicorn

    from collectors.server import create_app
    from collectors.sink import Sink
    from syncwatch.config import load_config

    started: list[tuple[uvicorn.Server, threading.Thread, Store]] = []

    def start(config_text: str = "", environ: dict[str, str] | None = None) -> RunningCollector:
        config_path = tmp_path / f"collector{len(started)}.toml"
        config_path.write_text(config_text)
        db = f"sqlite:///{tmp_path / f'collector{len(started)}.db'}"
        config = load_config(str(config_path), {"db": db}, environ={})
        store = Store.open(config.db, raw_limit=config.quarantine_raw_limit)
        store.upgrade()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        app = create_app(Sink(store, config), environ or {})
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        started.append((server, thread, store))
        return RunningCollector(f"http://127.0.0.1:{port}", store)

    yield start
    for server, thread, store in started:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The committed sample_data/ week ingested and correlated as of its end, 2026-11-08T23:59Z (a URL)."""
    import subprocess
    import sys
    from datetime import UTC, datetime

    from correlator.passes import Correlator
    from syncwatch.config import load_config

    url = f"sqlite:///{tmp_path_factory.mktemp('sample') / 'sample.db'}"
    files = sorted(str(p) for p in SAMPLE_DATA.rglob("*") if p.suffix in (".jsonl", ".log"))
    files = [f for f in files if not f.endswith("ground_truth.jsonl")]
    for args in (("db", "upgrade", "--db", url), ("ingest", "--db", url, *files)):
        subprocess.run([sys.executable, "-m", "syncwatch", *args], check=True, capture_output=True, timeout=300)
    store = Store.open(url)
    as_of = datetime(2026, 11, 8, 23, 59, tzinfo=UTC)
    Correlator(store, load_config(environ={}), clock=lambda: as_of).run_pass()
    store.close()
    return url
