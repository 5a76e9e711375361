"""The web page: controls, linked charts, a statistics card, alerts, feed health, exports.

One ``Page`` per browser session. Reads go to the SQLite file through a read-only
connection opened per read in a worker thread; the page shows its frame at once and fills
in when the read is back, so a slow range never holds the server's loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import pandas as pd
import panel as pn

from pairwatch.series import SeriesKey
from pairwatch.web import data
from pairwatch.web.charts import ChartOptions, Charts
from pairwatch.web.health import FeedHealth
from pairwatch.web.page_html import (
    alerts_html,
    download_links,
    epoch_ms,
    filter_alerts,
    health_html,
    stats_html,
    status_html,
    url_choices,
)
from pairwatch.web.view_read import View, read, read_news, read_view

logger = logging.getLogger(__name__)

T = TypeVar("T")

RANGES: Final = {
    "15 min": 15 * 60_000,
    "1 h": 3_600_000,
    "24 h": 86_400_000,
    "7 d": 7 * 86_400_000,
    "all": None,
}
"""Range presets: how far back from the series' last bar."""
DEFAULT_RANGE: Final = "24 h"
HEADER_CSS: Final = """
.pw-header { background: #0072b5; color: white; font: 600 22px system-ui, sans-serif;
             padding: 10px 18px; }
"""
NO_DATA: Final = (
    "No data yet: pairwatch has not stored any pair analytics. They appear once the "
    "daemon has closed a bar of both legs of a configured pair (`[[pairs]]` in the settings)."
)


@dataclass(frozen=True, slots=True)
class PageContext:
    """What every session of the page shares."""

    db_path: Path
    timeframes: Mapping[str, int] = field(default_factory=dict)
    """Timeframe label → length in ms (live mode polls once per bar)."""
    health: Callable[[], FeedHealth | None] | None = None
    live_interval_s: float | None = None
    prefix: str = ""
    """The server's URL prefix (the export links are absolute paths)."""
    clock: Callable[[], float] = time.time


class Page:
    """One browser session's page."""

    def __init__(self, context: PageContext) -> None:
        self.context = context
        self.series: list[SeriesKey] = []
        self.key: SeriesKey | None = None
        self._shown = 0
        """Counts views shown: live mode's reads drop their bars when another came."""
        self._span: tuple[int | None, int | None] = (None, None)
        self._alert_id = 0
        self.charts = Charts()
        self._live: Any = None
        self._doc: Any = None
        self._generation = 0
        """Counts loads: a read whose controls changed before it returned is dropped."""
        self._reading = 0
        self._redraws = 0
        self._requested: tuple[Any, ...] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._quiet = False
        self.pair = pn.widgets.Select(
            label="Pair (y / x)", css_classes=["pw-pair"], options=[], width=220
        )
        self.timeframe = pn.widgets.Select(
            label="Timeframe", css_classes=["pw-timeframe"], options=[], width=100
        )
        self.window = pn.widgets.Select(
            label="Window", css_classes=["pw-window"], options=[], width=100
        )
        self.range = pn.widgets.RadioButtonGroup(
            label="Range",
            options=list(RANGES),
            value=DEFAULT_RANGE,
            color="default",
            css_classes=["pw-range"],
        )
        self.custom = pn.widgets.DatetimeRangePicker(
            label="From – to (UTC)", width=320, css_classes=["pw-custom"]
        )
        self.kalman = pn.widgets.Checkbox(label="Kalman", value=False, css_classes=["pw-kalman"])
        self.threshold = pn.widgets.FloatInput(
            label="|z| threshold", value=2.0, start=0.1, end=20.0, step=0.5, width=100
        )
        self.live = pn.widgets.Toggle(
            label="Live", value=False, color="success", width=80, css_classes=["pw-live"]
        )
        self.message = pn.pane.Alert("Loading…", alert_type="info", css_classes=["pw-message"])
        self.stats = pn.pane.HTML("", css_classes=["pw-stats-card"], width=340)
        self.health = pn.pane.HTML(health_html(None), css_classes=["pw-health-strip"])
        self.alerts = pn.pane.HTML(
            alerts_html(data.load_alerts_empty()),
            sizing_mode="stretch_width",
            css_classes=["pw-alerts"],
        )
        self.alert_filter = pn.widgets.TextInput(
            placeholder="filter alerts: rule, pair, kind, severity or text",
            width=360,
            css_classes=["pw-alert-filter"],
        )
        self.alert_table = data.load_alerts_empty()
        self.chart_pane = pn.pane.Bokeh(self.charts.layout, sizing_mode="stretch_width")
        self.charts.on_zoom = self._zoomed
        self.downloads = pn.pane.HTML("", css_classes=["pw-downloads"])
        self.status = pn.pane.HTML("", css_classes=["pw-status"])
        self.pair.param.watch(self._pair_changed, "value")
        for widget in (self.timeframe, self.window, self.range):
            widget.param.watch(self._reload, "value")
        self.custom.param.watch(self._custom_range, "value")
        self.kalman.param.watch(self._restyle, "value")
        self.threshold.param.watch(self._restyle, "value")
        self.live.param.watch(self._live_changed, "value")
        self.alert_filter.param.watch(lambda _: self._show_alerts(), "value_input")

    # --- layout ----------------------------------------------------------------------

    def view(self) -> pn.viewable.Viewable:
        controls = pn.Column(
            self.pair,
            pn.Row(self.timeframe, self.window),
            self.range,
            self.custom,
            pn.Row(self.kalman, self.threshold),
            self.live,
            self.downloads,
            self.stats,
            width=360,
        )
        main = pn.Column(
            self.health,
            self.status,
            self.message,
            self.chart_pane,
            pn.pane.Markdown("### Recent alerts"),
            self.alert_filter,
            self.alerts,
            sizing_mode="stretch_width",
        )
        # A plain layout, not a Panel template: a template took ~0.5 s to build per
        # session (on the loop), and every resource here is served by pairwatch itself.
        header = pn.pane.HTML(
            "<div class='pw-header'>pairwatch</div>",
            sizing_mode="stretch_width",
            stylesheets=[HEADER_CSS],
        )
        page = pn.Column(
            header,
            pn.Row(controls, main, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        self._doc = pn.state.curdoc
        self._prime()
        pn.state.onload(self._started)
        return page

    # --- loading ---------------------------------------------------------------------

    def _prime(self) -> None:
        """Load the first view while the session is made: the page's HTML then carries the
        charts' data (one round trip; this runs on the web server's own loop)."""
        try:
            self.series = read(self.context.db_path, data.list_series)
        except Exception as exc:
            logger.warning("web page: cannot read %s: %s", self.context.db_path, exc)
            self._say(f"Cannot read the database: {exc}", "danger")
            return
        if not self.series:
            self._say(NO_DATA, "warning")
            return
        self._choose(url_choices(pn.state.session_args))
        key = self.selected()
        if key is None:
            return
        self._requested = (key, self.range.value, self.custom.value)
        try:
            loaded = self._read(key)
            drawn = self.charts.compute(loaded.frame, loaded.alerts, self._options(key))
        except Exception as exc:
            self._requested = None
            logger.warning("web page: reading %s failed: %s", key, exc)
            self._say(f"Reading {key.pair} failed: {exc}", "danger")
            return
        self._show_loaded(key, loaded, drawn)

    def _choose(self, wanted: Mapping[str, str]) -> None:
        """Set the controls to the URL's choices (or the first series), without loading."""
        pairs = sorted({k.pair for k in self.series})
        self._quiet = True
        try:
            self.pair.options = pairs
            choice = wanted.get("pair", "").upper()
            self.pair.value = choice if choice in pairs else pairs[0]
            self._timeframes()
            if wanted.get("timeframe") in self.timeframe.options:
                self.timeframe.value = wanted["timeframe"]
                self._windows()
            if wanted.get("window", "").isdigit() and int(wanted["window"]) in self.window.options:
                self.window.value = int(wanted["window"])
            if wanted.get("range") in RANGES:
                self.range.value = wanted["range"]
        finally:
            self._quiet = False

    def _started(self) -> None:
        """The browser has the page: keep its health strip fresh."""
        self._refresh_health()
        if self.context.health is not None:
            pn.state.add_periodic_callback(self._refresh_health, period=2_000)

    async def _pair_changed(self, _: Any) -> None:
        self._timeframes()
        if not self._quiet:
            await self._load()

    def _timeframes(self) -> None:
        keys = [k for k in self.series if k.pair == self.pair.value]
        timeframes = sorted({k.timeframe for k in keys}, key=self._tf_order)
        quiet, self._quiet = self._quiet, True
        try:
            self.timeframe.options = timeframes
            if self.timeframe.value not in timeframes:
                self.timeframe.value = timeframes[0]
            self._windows()
        finally:
            self._quiet = quiet

    def _windows(self) -> None:
        windows = sorted(
            k.window
            for k in self.series
            if k.pair == self.pair.value and k.timeframe == self.timeframe.value
        )
        self.window.options = windows
        if self.window.value not in windows and windows:
            self.window.value = windows[0]

    def _tf_order(self, label: str) -> tuple[int, str]:
        return (self.context.timeframes.get(label, 0), label)

    def selected(self) -> SeriesKey | None:
        """Return the series the controls name, if it exists."""
        if not self.pair.value or "/" not in self.pair.value:
            return None
        y, x = self.pair.value.split("/", 1)
        key = SeriesKey(y, x, self.timeframe.value, self.window.value or 0)
        return key if key in self.series else None

    async def _reload(self, event: Any) -> None:
        if event.obj is self.timeframe:
            self._windows()
        if self._quiet:
            return
        if event.obj is self.range and self.range.value is not None:
            self.custom.value = None
        await self._load()

    async def _custom_range(self, _: Any) -> None:
        if self.custom.value is not None:
            self.range.value = None
            await self._load()

    def bounds(self, last_ts: int) -> tuple[int | None, int | None]:
        """Return the [start, end) of the range the controls name (epoch ms)."""
        if self.custom.value is not None:
            start, end = self.custom.value
            return epoch_ms(start), epoch_ms(end)
        back = RANGES.get(self.range.value or DEFAULT_RANGE)
        return (None if back is None else last_ts - back + 1), None

    async def _load(self) -> None:
        key = self.selected()
        if key is None:
            return
        # Setting several controls fires one (asynchronous) event each: load once per choice.
        wanted = (key, self.range.value, self.custom.value)
        if wanted == self._requested:
            return
        self._requested = wanted
        self._generation += 1
        mine = self._generation
        self._reading += 1
        options = self._options(key)
        try:
            loaded = await asyncio.to_thread(self._read, key)
            drawn = await asyncio.to_thread(
                self.charts.compute, loaded.frame, loaded.alerts, options
            )
        except Exception as exc:
            self._requested = None  # the same choice may be tried again
            logger.warning("web page: reading %s failed: %s", key, exc)
            self._say(f"Reading {key.pair} failed: {exc}", "danger")
            return
        finally:
            self._reading -= 1
        if mine != self._generation:
            return  # the controls changed meanwhile: a newer read shows its range

        self._in_document(lambda: self._show_loaded(key, loaded, drawn))

    def _show_loaded(self, key: SeriesKey, loaded: View, drawn: Any) -> None:
        """Show what ``_read`` and ``Charts.compute`` made (under the document lock)."""
        frame, alerts, stats, table, span, alert_id = loaded
        self.key, self._span, self._alert_id = key, span, alert_id
        self._shown += 1
        self.stats.object = stats_html(key, stats)
        self._links(key, *span)
        self.alert_table = table
        self._show_alerts()
        self._draw(frame, alerts, drawn)
        self._show_status()

    async def _redraw(self, visible: tuple[float, float] | None, tries: int = 3) -> None:
        """Recompute the charts of the shown bars (new options or visible range) in a
        worker thread and apply them, unless a load or another redraw came meanwhile."""
        key, shown = self.key, self._shown
        if key is None or shown == 0:
            return
        self._redraws += 1
        mine = self._redraws
        options = self._options(key)
        alerts, parts, rows = self.charts.alerts, self.charts.parts(), self.charts.rows

        def compute() -> tuple[pd.DataFrame, Any]:
            frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
            return frame, self.charts.compute(frame, alerts, options, visible)

        frame, drawn = await asyncio.to_thread(compute)
        if mine != self._redraws or shown != self._shown:
            return

        def apply() -> None:
            if shown != self._shown:
                return
            if self.charts.rows != rows or self.charts.alerts is not alerts:
                if tries > 1:  # live bars came meanwhile: again, with them
                    self._spawn(self._redraw(visible, tries - 1))
                return
            self.charts.apply(frame, alerts, drawn)

        self._in_document(apply)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _zoomed(self, start: float, end: float) -> None:
        """A zoom or pan ended (Bokeh event, on the loop): send that range's points."""
        self._spawn(self._redraw((start, end)))

    def _in_document(self, change: Callable[[], None]) -> None:
        """Run ``change`` holding the session's document lock (Bokeh models are changed
        directly, which only Panel's own callbacks do under the lock)."""
        doc = self._doc
        if doc is None or doc.session_context is None:
            change()
        else:
            doc.add_next_tick_callback(change)

    def _read(self, key: SeriesKey) -> View:
        return read_view(self.context.db_path, key, self.bounds, self.context.timeframes)

    def _options(self, key: SeriesKey) -> ChartOptions:
        return ChartOptions(
            y=key.y,
            x=key.x,
            kalman=bool(self.kalman.value),
            threshold=float(self.threshold.value or 2),
        )

    def _draw(self, frame: pd.DataFrame, alerts: pd.DataFrame, drawn: Any) -> None:
        if frame.empty:
            self._say("No data in this range: pick a longer range or another pair.", "warning")
        elif frame[["y_close", "x_close"]].isna().all().any():
            self._say(
                "The legs have no bars in common in this range: prices and volumes are empty.",
                "warning",
            )
        else:
            self.message.visible = False
        self.charts.apply(frame, alerts, drawn)

    def _show_alerts(self) -> None:
        self.alerts.object = alerts_html(
            filter_alerts(self.alert_table, self.alert_filter.value_input)
        )

    def _show_status(self) -> None:
        """Say what is drawn: the series, its bar count and time span (UTC)."""
        key, charts = self.key, self.charts
        if key is None or self._shown == 0:
            return
        self.status.object = status_html(key, charts.rows, charts.first_ts, charts.last_ts)

    async def _restyle(self, _: Any) -> None:
        await self._redraw(self.charts.visible)

    def _say(self, text: str, kind: Any) -> None:
        self.message.object = text
        self.message.alert_type = kind
        self.message.visible = True

    # --- live mode -------------------------------------------------------------------

    def _live_changed(self, _: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.live.value:
            period = self.context.live_interval_s
            if period is None:
                period = self.context.timeframes.get(self.timeframe.value, 1_000) / 1000
            self._live = pn.state.add_periodic_callback(
                self._follow,  # type: ignore[arg-type]  # Panel awaits a coroutine function
                period=int(period * 1000),
            )

    async def _follow(self) -> None:
        """Append the bars stored since the last shown one and the new alert events (at
        most once per bar)."""
        key, shown, last = self.key, self._shown, self.charts.last_ts
        if key is None or shown == 0 or self._reading:
            return
        start, end = self._span
        # A from–to range stops at its end; the presets follow the newest bars.
        news = await asyncio.to_thread(
            read_news,
            self.context.db_path,
            key,
            self.context.timeframes,
            after_ts=start if last is None else last + 1,
            end=end,
            start=start,
            after_id=self._alert_id,
        )
        if news.frame.empty and news.table is None:
            return

        def apply() -> None:
            if key != self.key or shown != self._shown:
                return  # another series or range was loaded meanwhile
            self._alert_id = news.alert_id
            self.charts.append(news.frame, news.alerts)
            if news.table is not None:
                self.alert_table = news.table
                self._show_alerts()
            self.message.visible = False
            self._show_status()

        self._in_document(apply)

    def _refresh_health(self) -> None:
        probe = self.context.health
        self.health.object = health_html(None if probe is None else probe())

    # --- exports ---------------------------------------------------------------------

    def _links(self, key: SeriesKey, start: int | None, end: int | None) -> None:
        """Point the download links at the export route for the shown range."""
        self.downloads.object = download_links(self.context.prefix, key, start, end)
