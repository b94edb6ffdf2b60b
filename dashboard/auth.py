"""Who is looking: OIDC through ``st.login`` when configured, else the local users file, else the demo user.

Roles always come from the config's [users] through the action layer, which checks them again on
every action: the pages only hide what a role may not use. Local sign-ins, allowed or refused, go
to the audit log with the client that asked, and a name guessed wrong too often is locked for a
while: for that client after a few guesses, for everyone only after many (guessing spread over many
clients), so a stranger cannot lock a lead out by typing the lead's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import streamlit as st

from actions.api import role_of
from dashboard import context
from dashboard.context import Viewer
from dashboard.users import verify
from syncwatch.config import Config
from syncwatch.model import utcnow
from syncwatch.store import Store
from syncwatch.store.actions import append_audit
from syncwatch.store.sign_ins import MISMATCH, PREFIX, SIGN_IN, failed_guesses

SIGNED_IN = "signed_in_as"


def sign_in(config: Config) -> Viewer | None:
    """The viewer for this session, or None after drawing the sign-in form or the how-to."""
    if config.dashboard_demo_user:
        return _demo(config, config.dashboard_demo_user)
    if _oidc_configured():
        return _oidc(config)
    if config.dashboard_users:
        return _local(config, Path(config.dashboard_users))
    _no_sign_in(config)
    return None


def viewer_for(config: Config, actor: str) -> Viewer:
    role = role_of(config, actor)
    return Viewer(actor=actor, role=role, label=f"{actor} ({role})")


def _demo(config: Config, default: str) -> Viewer:
    """The demo signs in as a lead; a switcher shows the same screens as each configured user sees them."""
    names = sorted(config.file.users, key=lambda n: (n != default, n))
    if default not in names:
        names.insert(0, default)
    # The choice is kept apart from the widget's own state, which a page opened from a table row
    # (st.switch_page) may drop: the sidebar then still showed the executive while the page acted
    # as the lead.
    if DEMO_WIDGET not in st.session_state and st.session_state.get(DEMO_CHOSEN) in names:
        st.session_state[DEMO_WIDGET] = st.session_state[DEMO_CHOSEN]
    actor = st.sidebar.selectbox(
        "Demo: see the screens as",
        names,
        format_func=lambda n: viewer_for(config, n).label,
        key=DEMO_WIDGET,
    )
    st.session_state[DEMO_CHOSEN] = actor
    return viewer_for(config, actor)


DEMO_WIDGET, DEMO_CHOSEN = "demo_actor", "demo_actor_chosen"


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:
        return False


def _oidc(config: Config) -> Viewer | None:
    if not st.user.is_logged_in:
        st.title("syncwatch")
        st.button("Sign in", on_click=st.login, type="primary")
        return None
    actor = oidc_actor(st.user.to_dict())
    st.sidebar.button("Sign out", on_click=st.logout)
    if actor is None:
        st.title("syncwatch")
        st.error(
            "Your sign-in did not give syncwatch a verified e-mail address, and syncwatch knows people (and "
            "their roles) by e-mail. Ask whoever runs your sign-in to release the verified `email` claim."
        )
        return None
    return viewer_for(config, actor)


def oidc_actor(claims: Mapping[str, Any]) -> str | None:
    """Who an OIDC sign-in is: the e-mail address the identity provider vouches for, or None. A
    display name (``name``) is whatever its owner typed, and an address marked unverified may be
    anyone's: either could take the role of the configured user it names."""
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip() or claims.get("email_verified") in (False, "false"):
        return None
    return email.strip()


def _local(config: Config, path: Path) -> Viewer | None:
    actor = st.session_state.get(SIGNED_IN)
    if actor:
        st.sidebar.button("Sign out", on_click=lambda: st.session_state.pop(SIGNED_IN, None))
        return viewer_for(config, actor)
    st.title("Sign in to syncwatch")
    with st.form("sign_in"):
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        name = name.strip()[:NAME_CHARS]
        refused = _attempt(config, path, name, password)
        if refused is None:
            st.session_state[SIGNED_IN] = name
            st.rerun()
        st.error(refused)
    return None


def _attempt(config: Config, path: Path, name: str, password: str) -> str | None:
    """Check one sign-in and write it to the audit log; why it was refused, or None. After
    ``LOCKOUT_FAILURES`` wrong passwords for a name from one client within ``LOCKOUT_WINDOW``, that
    client is refused the name without a look at the password (five guesses a window, not one every
    50 ms, scrypt's cost); after ``LOCKOUT_ANYWHERE`` from any clients, every client is."""
    store = context.store()
    if store is None:  # no lockout to consult and no audit log to write: guesses would go unlimited and unseen
        return "Sign-in waits for the database, which holds the audit log of sign-ins: try again once it is back."
    now, client = utcnow(), client_address()
    with store.engine.connect() as conn:
        guesses = failed_guesses(conn, name, now - LOCKOUT_WINDOW)
    minutes = int(LOCKOUT_WINDOW.total_seconds() // 60)
    if len(guesses) >= LOCKOUT_ANYWHERE:
        _audit(store, name, None, "refused", "locked: too many refused sign-ins from several clients", now, client)
        return f"Too many failed sign-ins for this user name: try again in {minutes} minutes."
    if guesses.count(client) >= LOCKOUT_FAILURES:
        _audit(store, name, None, "refused", "locked: too many refused sign-ins from this client", now, client)
        return f"Too many failed sign-ins for this user name from here: try again in {minutes} minutes."
    if not verify(path, name, password):
        _audit(store, name, None, "refused", MISMATCH, now, client)
        return "That user name and password do not match."
    _audit(store, name, role_of(config, name), "succeeded", "signed in", now, client)
    return None


def client_address() -> str:
    """Where the browser connects from, as the lockout counts it: the IPv4 address, or the /64 an
    IPv6 address is one of (one host holds a whole /64); "local" for this computer. It is the TCP
    peer unless ``FORWARDED_ALLOW_IPS`` names a reverse proxy whose X-Forwarded-For is trusted
    (``syncwatch dashboard`` trusts none by default); behind an untrusted proxy every browser has the
    proxy's address, so the lockout is per name there."""
    try:
        address = ip_address(str(st.context.ip_address))
    except ValueError:  # None (this computer), or not an address
        return "local" if st.context.ip_address is None else "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:  # ::ffff:203.0.113.9 is that IPv4 client
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def _audit(store: Store, actor: str, role: str | None, result: str, summary: str, at: datetime, client: str) -> None:
    entry = {"at": at, "actor": actor, "role": role, "action": SIGN_IN, "target": None}
    with store.writing() as conn:
        append_audit(
            conn,
            {**entry, "request_summary": PREFIX + summary, "result": result, "detail": {"client": client}},
        )


NAME_CHARS = 128  # the audit log's actor column
LOCKOUT_FAILURES = 5
LOCKOUT_ANYWHERE = 25
LOCKOUT_WINDOW = timedelta(minutes=15)


def _no_sign_in(config: Config) -> None:
    st.title("syncwatch")
    st.warning("No sign-in is configured, so nobody can open the dashboard yet.")
    st.markdown(
        "Either configure an OIDC provider in `.streamlit/secrets.toml` (`[auth]`, see Streamlit's `st.login`), "
        "or create local users:\n\n"
        "```\nsyncwatch dashboard --add-user alex --users-file dashboard-users.txt\n"
        "syncwatch dashboard --users-file dashboard-users.txt\n```\n\n"
        "Each user's role comes from `[users]` in the config file."
    )
