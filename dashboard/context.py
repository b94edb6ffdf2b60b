"""What every page needs: the config and store (opened once per process), and who is looking."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

import streamlit as st

from syncwatch.config import Config, load_config
from syncwatch.store import Store, StoreError
from syncwatch.store import queries as q
from syncwatch.store.engine import shown


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: the name the action layer knows them by, and their role."""

    actor: str
    role: str
    label: str


@st.cache_resource(show_spinner=False)
def _config(environment: tuple[tuple[str, str], ...]) -> Config:
    # Keyed by the SYNCWATCH_* variables, which load_config reads, so a changed variable is a new config.
    return load_config(environ=dict(environment))


@st.cache_resource(show_spinner=False)
def _store(url: str, raw_limit: int) -> Store:
    store = Store.open(url, raw_limit=raw_limit, must_exist=True)
    store.require_schema()
    return store


def config() -> Config:
    """The active config, from SYNCWATCH_CONFIG, SYNCWATCH_DB and the other SYNCWATCH_* variables."""
    return _config(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("SYNCWATCH_"))))


def store() -> Store | None:
    """The store, or None (after saying how to create it) when the database is missing or not set up."""
    cfg = config()
    try:
        return _store(cfg.db, cfg.quarantine_raw_limit)
    except StoreError as err:
        st.warning(f"The database is not ready: {err}")
        st.markdown(f"Run `syncwatch db upgrade --db {shown(cfg.db)}`, or start `syncwatch serve`, which does.")
        return None


def viewer() -> Viewer:
    return st.session_state["viewer"]


def clock(store: Store) -> datetime:
    """'Now' for SLA arithmetic: the correlator's clock, so a replayed week reads as of its own end."""
    real = datetime.now(UTC)
    latest = q.as_of(store)
    return min(latest, real) if latest else real
