"""The dashboard's entry point: sign-in, then the pages each role uses, the role's own page first."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import auth, context

# The tab's icon is served from here: a Material icon there is fetched from Google's fonts, which a
# dashboard behind a firewall cannot reach (a console error on every page).
st.set_page_config(page_title="syncwatch", page_icon=str(Path(__file__).with_name("favicon.png")), layout="wide")

LANDING = {"executive": "kpis", "agent": "exceptions", "lead": "operations"}
PAGES = (
    ("operations.py", "Operations", ":material/monitor_heart:", "operations"),
    ("exceptions.py", "Exceptions", ":material/report:", "exceptions"),
    ("endpoints.py", "Endpoints", ":material/lan:", "endpoints"),
    ("search.py", "Transaction search", ":material/search:", "search"),
    ("kpis.py", "KPIs", ":material/query_stats:", "kpis"),
    ("admin.py", "Admin", ":material/admin_panel_settings:", "admin"),
)
LEADS_ONLY = {"admin"}


def pages_for(role: str) -> list[st.Page]:
    """Every page at its own address (a bookmarked /operations opens Operations for everyone), and a
    hidden front page that sends each role on to its own first page."""
    pages = {
        url: st.Page(path, title=title, icon=icon, url_path=url)
        for path, title, icon, url in PAGES
        if url not in LEADS_ONLY or role == "lead"
    }
    first = pages[LANDING.get(role, "operations")]
    front = st.Page(
        lambda: st.switch_page(first), title="syncwatch", url_path="home", default=True, visibility="hidden"
    )
    return [front, *pages.values()]


viewer = auth.sign_in(context.config())
# Pages are registered (hidden) even before sign-in, so a link to a page survives the sign-in form.
navigation = st.navigation(pages_for(viewer.role if viewer else "lead"), position="sidebar" if viewer else "hidden")
if viewer is not None:
    st.session_state["viewer"] = viewer
    st.sidebar.caption(f"Signed in as **{viewer.label}**")
    navigation.run()
