"""Plotly figures for the pages: small frames in, figures out; no queries here."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.fmt import SLA_COLORS, SLA_LABELS, SLA_ORDER
from syncwatch.redact import mask_emails

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
OUTCOME_COLORS = {"ok": "#4c78a8", "error": "#d62728"}
KIND_SYMBOLS = {"event": "diamond", "log": "line-ns-open"}  # a log line is a tick; a call's bar is the square


# Above the plot: a horizontal legend below it lands on the x axis's ticks and title.
_LEGEND = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"}


def _layout(fig: go.Figure, height: int = 320) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend=_LEGEND)
    return fig


def sla_bars(data: pd.DataFrame, group: str) -> go.Figure:
    """Open transactions per channel or partner, stacked by SLA state, worst first."""
    fig = go.Figure()
    for state in SLA_ORDER:
        part = data[data["sla_state"] == state]
        if not part.empty:
            fig.add_bar(
                y=part[group],
                x=part["transactions"],
                name=SLA_LABELS[state],
                orientation="h",
                marker_color=SLA_COLORS[state],
            )
    fig.update_layout(barmode="stack", xaxis_title="open transactions")
    return _layout(fig, 80 + 40 * max(1, data[group].nunique()))


def stage_heatmap(data: pd.DataFrame, stages: list[str]) -> go.Figure:
    """Late transactions per stage at fault (rows, in the process's order from the top) and partner
    (columns); a stage ``stages`` does not name goes last."""
    grid = data.pivot_table(index="stage", columns="partner", values="transactions", aggfunc="sum", fill_value=0)
    rank = {stage: i for i, stage in enumerate(stages)}
    grid = grid.loc[sorted(grid.index, key=lambda stage: (rank.get(stage, len(rank)), stage))]
    fig = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=list(grid.columns),
            y=list(grid.index),
            colorscale="Reds",
            zmin=0,  # from none late: a grid of equal counts otherwise reads 31.5, 32, 32.5 on its scale
            zmax=max(1, int(grid.values.max())),
            colorbar={"tickformat": ",d"},
            text=grid.values,
            texttemplate="%{text}",
            hovertemplate="%{y} at %{x}: %{z} late<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")  # the first stage on top, as the process reads
    return _layout(fig, 80 + 45 * len(grid.index))


def throughput(data: pd.DataFrame, open_now: int) -> go.Figure:
    """Started and completed per hour as bars, and the backlog those imply as a line."""
    hours = pd.to_datetime(data["hour"], format="%Y-%m-%d %H")
    # The backlog at the end of an hour is the open count now minus what changed after it.
    net_after = (data["started"] - data["completed"])[::-1].cumsum()[::-1].shift(-1, fill_value=0)
    backlog = open_now - net_after
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=hours, y=data["started"], name="started", marker_color="#9ecae1")
    fig.add_bar(x=hours, y=data["completed"], name="completed", marker_color="#3182bd")
    fig.add_scatter(x=hours, y=backlog, name="open (backlog)", line_color="#d62728", secondary_y=True)
    # Half an hour either side of the hours drawn: one hour alone would be scaled to its milliseconds.
    fig.update_xaxes(range=[hours.min() - HALF_HOUR, hours.max() + HALF_HOUR])
    fig.update_yaxes(title_text="per hour", secondary_y=False)
    # Round ticks of its own (ticks synced to the bars' axis read 344, 687, 1,031), and no second grid.
    fig.update_yaxes(
        title_text="open", secondary_y=True, rangemode="tozero", tickformat=",.0f", tickmode="auto", showgrid=False
    )
    return _layout(fig)


KIND_NAMES = {"span": "call", "log": "log line", "event": "event"}
OUTCOME_NAMES = {"ok": "ok", "error": "failed"}
THINNEST = 0.004  # of the whole timeline: a call of 80 ms in a day-long order is still drawn
SHORTEST_TIMELINE = pd.Timedelta(seconds=10)
HALF_HOUR = pd.Timedelta(minutes=30)


def waterfall(data: pd.DataFrame, highlight: int | None = None, opened: datetime | None = None) -> go.Figure:
    """The cross-system timeline: one row per system and operation, calls as bars (never thinner than
    can be seen), logs and events as marks; the failing observation outlined and marked, and the
    moment the exception opened (for a stuck step: when it was due) drawn across."""
    data = data.assign(
        row=data["system"] + " · " + data["operation"].str.slice(0, 60),
        start=pd.to_datetime(data["start_time"], utc=True),
        end=pd.to_datetime(data["end_time"], utc=True),
    )
    first, last = data["start"].min(), data["end"].fillna(data["start"]).max()
    if opened is not None:
        last = max(last, pd.Timestamp(opened))
    thinnest_ms = max((last - first).total_seconds() * 1000 * THINNEST, 1.0)
    fig = go.Figure()
    spans = data[(data["kind"] == "span") & data["end"].notna()]
    for outcome, part in spans.groupby("outcome"):
        fig.add_bar(
            y=part["row"],
            x=((part["end"] - part["start"]).dt.total_seconds() * 1000).clip(lower=thinnest_ms),
            base=part["start"],
            orientation="h",
            name=f"{KIND_NAMES['span']} {OUTCOME_NAMES.get(str(outcome), outcome)}",
            marker_color=OUTCOME_COLORS.get(str(outcome), "#999"),
            marker_line_width=[3 if i == highlight else 0 for i in part["id"]],
            customdata=_hover(part),
            hovertemplate="%{y}<br>%{base|%H:%M:%S.%L}<br>%{customdata[0]} %{customdata[1]}<extra></extra>",
        )
    marks = data[(data["kind"] != "span") | data["end"].isna()]
    for (kind, outcome), part in marks.groupby(["kind", "outcome"]):
        fig.add_scatter(
            y=part["row"],
            x=part["start"],
            mode="markers",
            name=f"{KIND_NAMES.get(str(kind), kind)} {OUTCOME_NAMES.get(str(outcome), outcome)}",
            marker={"symbol": KIND_SYMBOLS.get(str(kind), "circle"), "size": 11, "line": {"width": 2}},
            marker_color=OUTCOME_COLORS.get(str(outcome), "#999"),
            customdata=_hover(part),
            hovertemplate="%{y}<br>%{x|%H:%M:%S.%L}<br>%{customdata[0]} %{customdata[1]}<extra></extra>",
        )
    rows = list(dict.fromkeys(data.sort_values("start")["row"]))
    failing = data[data["id"] == highlight] if highlight is not None else data.iloc[0:0]
    if not failing.empty:
        fig.add_scatter(
            y=failing["row"],
            x=failing["start"],
            mode="markers+text",
            name="this exception's step",
            text=["this step"],
            textposition="top center",
            marker={"symbol": "x", "size": 14, "color": "#000"},
            hoverinfo="skip",
        )
    if opened is not None:
        fig.add_vline(x=pd.Timestamp(opened), line_dash="dot", line_color="#d62728")
        fig.add_annotation(
            x=pd.Timestamp(opened), y=1, yref="paper", text="exception opened", showarrow=False, xanchor="right"
        )
    fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1])
    fig.update_xaxes(type="date")
    if last - first < SHORTEST_TIMELINE:  # one instant would be drawn across fractions of a millisecond
        middle = first + (last - first) / 2
        fig.update_xaxes(range=[middle - SHORTEST_TIMELINE / 2, middle + SHORTEST_TIMELINE / 2])
    return _layout(fig, 120 + 26 * len(rows))


def _hover(part: pd.DataFrame) -> list[tuple[str, str]]:
    """(HTTP status, error message) per mark, blank where absent."""
    return [
        ("" if pd.isna(code) else str(int(code)), "" if pd.isna(message) else mask_emails(str(message)))
        for code, message in zip(part["status_code"], part["error_message"], strict=True)
    ]


def endpoint_timeline(data: pd.DataFrame) -> go.Figure:
    """Calls per bucket: answered, refused (4xx: the data's problem), asked to slow down (429, the
    partner's pause) and failed (no answer, or 5xx)."""
    fig = go.Figure()
    fig.add_bar(x=data["bucket"], y=data["requests"] - data["errors"], name="ok", marker_color="#4c78a8")
    fig.add_bar(x=data["bucket"], y=data["rejected"], name="refused (4xx)", marker_color="#b279a2")
    fig.add_bar(x=data["bucket"], y=data["throttled"], name="429 (slow down)", marker_color="#f2a93b")
    fig.add_bar(x=data["bucket"], y=data["failed"], name="failed", marker_color="#d62728")
    fig.update_layout(barmode="stack", yaxis_title="requests", xaxis_title="UTC")  # as every time on the pages
    return _layout(fig, 260)


MAX_PERIOD_TICKS = 16
MIN_SHARE_SPAN = 0.02  # two percentage points


def _share_range(values: pd.DataFrame) -> list[float] | None:
    """A y range for shares (0-1) at least MIN_SHARE_SPAN wide around the data, inside 0-100 %."""
    shown = values.stack().dropna()
    if shown.empty:
        return None
    low, high = float(shown.min()), float(shown.max())
    pad = max(MIN_SHARE_SPAN - (high - low), 0) / 2 + (high - low) * 0.1
    low, high = max(0.0, low - pad), min(1.0, high + pad)
    if high - low < MIN_SHARE_SPAN:  # against a bound: grow away from it
        low, high = (max(0.0, high - MIN_SHARE_SPAN), high) if high >= 1.0 else (low, min(1.0, low + MIN_SHARE_SPAN))
    return [low, high]


def kpi_trend(
    data: pd.DataFrame,
    column: str,
    title: str,
    percent: bool = False,
    tail: str | None = None,
    partial: Collection[str] = (),
) -> go.Figure:
    """One line per group over the periods; with ``tail`` (a p90 beside a p50), a dashed line of it
    in the same colour, so the slow orders show next to the typical one. ``partial`` periods (today,
    this week, a week the range starts inside, one still finishing) are not whole or not final, so
    their points are hollow and only a dotted line reaches them: a half day is no dip. A share's axis
    spans two points at least: a 0.1-point change is no cliff."""
    fig = go.Figure()
    for index, (group, part) in enumerate(data.groupby("group")):
        color = _PALETTE[index % len(_PALETTE)]
        open_points = part["period"].isin(partial)
        symbols = ["circle-open" if hollow else "circle" for hollow in open_points]
        fig.add_scatter(
            x=part["period"],
            y=part[column],
            name=str(group),
            legendgroup=str(group),
            mode="lines+markers",
            line={"color": color, "dash": "dot", "width": 1},
            marker={"symbol": symbols, "size": [10 if hollow else 6 for hollow in open_points]},
        )
        # The solid line joins only whole, final periods: drawn on to a young day, it read as a collapse.
        fig.add_scatter(
            x=part["period"],
            y=part[column].mask(open_points),
            name=f"{group} (final)",
            legendgroup=str(group),
            showlegend=False,
            hoverinfo="skip",
            mode="lines",
            line_color=color,
            connectgaps=False,
        )
        if tail is not None:
            fig.add_scatter(
                x=part["period"],
                y=part[tail],
                name=f"{group} p90",
                mode="lines",
                line={"color": color, "dash": "dash"},
            )
    fig.update_layout(title=title)
    if percent:
        fig.update_yaxes(tickformat=".1%", range=_share_range(data[[c for c in (column, tail) if c]]))
    periods = sorted(data["period"].unique())
    if len(periods) <= MAX_PERIOD_TICKS:  # a tick on each period (a week's Monday), not on Plotly's own days
        fig.update_xaxes(tickmode="array", tickvals=periods, tickformat="%d %b")
    fig = _layout(fig, 340)
    # Below the plot: a legend of several groups with their p90 lines wraps, and above it covered the title.
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0}, margin_b=10)
    return fig
