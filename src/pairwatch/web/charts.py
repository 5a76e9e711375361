"""The page's linked charts: Bokeh figures fed from one series frame, downsampled on the server.

Six figures share one time axis (zoom or pan one, all follow): normalised prices of both
legs, the spread with its rolling mean ± k·σ, the z-score with threshold lines, shaded
breaches and alert markers, the rolling correlation, OLS vs Kalman β, and each leg's
volume. Each line keeps its full-resolution values here and sends the browser at most
``POINTS`` of them, picked by MinMax-LTTB for the visible range (``tsdownsample``):
recomputed when a zoom or pan ends, so a million bars draw as fast as a thousand. New
bars in live mode are streamed onto the sources, not redrawn.

Plain Bokeh models in a Panel pane: HoloViews' per-element set-up took 1.4–2 s for these
six charts on any range (README, design), Bokeh models take ~0.2 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from bokeh.core.properties import value
from bokeh.events import RangesUpdate
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, Range1d, Span  # type: ignore[attr-defined]
from bokeh.plotting import figure
from tsdownsample import MinMaxLTTBDownsampler

POINTS: Final = 2_000
"""Most points per line sent to the browser (about two per pixel of a wide chart)."""
HEIGHT: Final = 190
COLORS: Final = {"y": "#1f77b4", "x": "#ff7f0e", "kalman": "#2ca02c", "band": "#7f7f7f"}
ALERT_COLORS: Final = {
    "firing": "#d62728",
    "resolved": "#2ca02c",
    "pending": "#ff7f0e",
    "inactive": "#7f7f7f",  # a pending alert that cleared before firing
}
FIGURES: Final = ("prices", "spread", "zscore", "correlation", "beta", "volume")

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ChartOptions:
    """What the controls change in the charts (not the data)."""

    y: str = "y"
    x: str = "x"
    kalman: bool = False
    threshold: float = 2.0
    """|z| level drawn as threshold lines, spread bands (mean ± k·σ) and breach shading."""


@dataclass(frozen=True, slots=True)
class Line:
    """One drawn line: its figure, legend label, colour, dash and values."""

    figure: str
    label: str
    color: str
    values: Callable[[pd.DataFrame, ChartOptions], Floats]
    dash: str = "solid"
    steps: bool = False


def _column(name: str) -> Callable[[pd.DataFrame, ChartOptions], Floats]:
    def get(frame: pd.DataFrame, _: ChartOptions) -> Floats:
        values: Floats = frame[name].to_numpy(dtype=np.float64)
        return values

    return get


def _spread(frame: pd.DataFrame, o: ChartOptions) -> Floats:
    return _column("kalman_spread" if o.kalman else "spread")(frame, o)


def _z(frame: pd.DataFrame, o: ChartOptions) -> Floats:
    return _column("kalman_zscore" if o.kalman else "zscore")(frame, o)


def _band(sign: float) -> Callable[[pd.DataFrame, ChartOptions], Floats]:
    """mean + sign·k·σ of the spread shown.

    OLS: the rolling mean is spread − z·σ and σ the window's. Kalman: the spread is the
    one-step prediction error e, expected 0, and z = e/√S, so the band is ±k·√S with
    √S = e/z (undefined, so not drawn, where z is 0).
    """

    def band(frame: pd.DataFrame, o: ChartOptions) -> Floats:
        z = _z(frame, o)
        if o.kalman:
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.abs(np.where(z != 0, _spread(frame, o) / z, np.nan))
            kalman: Floats = sign * o.threshold * scale
            return kalman
        std = frame["spread_std"].to_numpy(dtype=np.float64)
        mean = _spread(frame, o) - z * std
        out: Floats = mean + sign * o.threshold * std
        return out

    return band


def lines(options: ChartOptions) -> list[Line]:
    """Return every line the charts draw, in a fixed order (options change labels and
    values, never the set of lines: renderers are made once, see ``Charts``)."""
    return [
        Line("prices", options.y, COLORS["y"], _column("y_close")),
        Line("prices", options.x, COLORS["x"], _column("x_close")),
        Line("spread", "spread", COLORS["y"], _spread),
        Line("spread", "mean", COLORS["band"], _band(0.0), dash="dashed"),
        Line("spread", f"+{options.threshold:g}σ", COLORS["band"], _band(1.0), dash="dotted"),
        Line("spread", f"−{options.threshold:g}σ", COLORS["band"], _band(-1.0), dash="dotted"),
        Line("zscore", "Kalman z" if options.kalman else "z-score", COLORS["y"], _z),
        Line("correlation", "correlation", COLORS["y"], _column("correlation")),
        Line("beta", "OLS β", COLORS["y"], _column("hedge_ratio")),
        Line("beta", "Kalman β", COLORS["kalman"], _column("kalman_beta")),
        Line("volume", options.y, COLORS["y"], _column("y_volume"), steps=True),
        Line("volume", options.x, COLORS["x"], _column("x_volume"), steps=True),
    ]


KALMAN_ONLY: Final = 9
"""Index in ``lines()`` of the line shown only with Kalman on (its β)."""


def downsample(ts: Ints, values: Floats, points: int = POINTS) -> tuple[Ints, Floats]:
    """Return at most ``points`` (ts, value) pairs of the finite values, shape-preserving
    (MinMax-LTTB); all of them when there are no more than ``points``."""
    finite = np.isfinite(values)
    if not finite.all():
        ts, values = ts[finite], values[finite]
    if len(values) <= points:
        return ts, values
    index = MinMaxLTTBDownsampler().downsample(ts, values, n_out=points)  # type: ignore[no-untyped-call]
    return ts[index], values[index]


def breaches(ts: Ints, z: Floats, k: float) -> tuple[Ints, Ints]:
    """Return the (start, end) times of the runs of bars with |z| ≥ k; a run ends at the
    next bar's time (its own time at the end of the range)."""
    with np.errstate(invalid="ignore"):
        hot = np.abs(z) >= k
    if not hot.any():
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    edges = np.diff(np.concatenate(([False], hot, [False])).astype(np.int8))
    first = np.flatnonzero(edges == 1)
    after = np.minimum(np.flatnonzero(edges == -1), len(ts) - 1)
    return ts[first], ts[after]


@dataclass(frozen=True, slots=True)
class Drawing:
    """What the charts send for one frame, options and visible range."""

    options: ChartOptions
    visible: tuple[float, float] | None
    lines: list[tuple[Ints, Floats]]
    """Per line of ``lines(options)``: its downsampled (ts, value) points."""
    breaches: tuple[Ints, Ints]
    markers: dict[str, Any]
    scale: dict[str, float]
    """Each price line's divisor (its first close in the range), for streamed bars."""


def drawing(
    frame: pd.DataFrame,
    alerts: pd.DataFrame,
    options: ChartOptions,
    visible: tuple[float, float] | None,
    *,
    lines_too: bool = True,
) -> Drawing:
    """Compute what the charts send (pure numpy: runs in a worker thread)."""
    ts = frame["ts"].to_numpy(dtype=np.int64)
    window = slice(None)
    if visible is not None and len(ts):
        lo, hi = visible
        margin = (hi - lo) * 0.1
        i, j = np.searchsorted(ts, [lo - margin, hi + margin])
        window = slice(max(int(i) - 1, 0), min(int(j) + 1, len(ts)))
    drawn: list[tuple[Ints, Floats]] = []
    scale: dict[str, float] = {}
    for line in lines(options):
        if line.figure == "prices":
            close = line.values(frame, options)
            scale[line.label] = first_finite(close)
            values = close / scale[line.label]
        else:
            values = line.values(frame, options)
        if lines_too:
            drawn.append(downsample(ts[window], np.asarray(values[window], dtype=np.float64)))
    z = _z(frame, options) if len(frame) else np.empty(0)
    return Drawing(
        options=options,
        visible=visible,
        lines=drawn,
        breaches=merge_spans(*breaches(ts, z, options.threshold), span_of(ts)),
        markers=markers(alerts),
        scale=scale,
    )


def first_finite(values: Floats) -> float:
    """Return the first finite non-zero value (1.0 when there is none)."""
    finite = values[np.isfinite(values) & (values != 0)]
    return float(finite[0]) if finite.size else 1.0


def span_of(ts: Ints) -> float:
    return float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0


def merge_spans(x0: Ints, x1: Ints, span: float, most: int = POINTS) -> tuple[Ints, Ints]:
    """Merge breach spans closer than ``span / most`` (at most ~``most`` shaded strips)."""
    if len(x0) <= most or span <= 0:
        return x0, x1
    gap = span / most
    keep = np.concatenate(([True], (x0[1:] - x1[:-1]) > gap))
    starts = x0[keep]
    ends = x1[np.concatenate((np.flatnonzero(keep)[1:] - 1, [len(x1) - 1]))]
    return starts, ends


def markers(alerts: pd.DataFrame) -> dict[str, Any]:
    """Return the alert markers' columns (time, z value, kind, rule, message, colour)."""
    if alerts.empty:
        return {"time": [], "value": [], "kind": [], "rule": [], "message": [], "color": []}
    return {
        "time": alerts["at"].to_numpy(dtype=np.int64),
        "value": alerts["value"].to_numpy(dtype=np.float64),
        "kind": alerts["kind"].astype(str).to_list(),
        "rule": alerts["rule"].astype(str).to_list(),
        "message": alerts["message"].astype(str).to_list(),
        "color": [ALERT_COLORS.get(str(kind), "#9467bd") for kind in alerts["kind"]],
    }


class Charts:
    """The linked figures of one page session; ``show`` a frame, ``zoom``, ``append``."""

    def __init__(self, options: ChartOptions | None = None) -> None:
        self.options = options or ChartOptions()
        self._frame = pd.DataFrame()
        self._tail: list[pd.DataFrame] = []
        """Bars appended in live mode, joined to the frame only when it is read (a join per
        bar would copy a million-row frame every second)."""
        self.rows = 0
        """Bars shown (the frame's and the tail's)."""
        self.last_ts: int | None = None
        """The last shown bar's time."""
        self._last_z = math.nan
        self.alerts = pd.DataFrame()
        self.visible: tuple[float, float] | None = None
        self.on_zoom: Callable[[float, float], None] | None = None
        """Called with the visible range when a zoom or pan ends (the page recomputes)."""
        self._scale: dict[str, float] = {}
        self.x_range = Range1d(start=0, end=1)
        self.figures: dict[str, Any] = {}
        for name in FIGURES:
            fig = figure(
                height=HEIGHT,
                sizing_mode="stretch_width",
                x_axis_type="datetime",
                x_range=self.x_range,
                title=name,
                tools="xpan,xwheel_zoom,box_zoom,reset,save",
                active_scroll="xwheel_zoom",
                output_backend="canvas",
                name=f"pw-chart-{name}",
            )
            fig.xaxis.axis_label = "time (UTC)"
            fig.on_event(RangesUpdate, self._ranges_updated)  # type: ignore[arg-type]
            self.figures[name] = fig
        self._sources: list[ColumnDataSource] = []
        self._lines: list[Line] = []
        self._thresholds = [
            Span(dimension="width", line_color="#d62728", line_dash="dashed", line_width=1)
            for _ in range(2)
        ]
        for span in self._thresholds:
            self.figures["zscore"].add_layout(span)
        self._breaches = ColumnDataSource({"x0": [], "x1": []})
        self.figures["zscore"].vstrip(
            x0="x0", x1="x1", source=self._breaches, fill_color="#d62728", fill_alpha=0.12,
            line_alpha=0, legend_label="|z| ≥ k",
        )  # fmt: skip
        self._markers = ColumnDataSource(
            {"time": [], "value": [], "kind": [], "rule": [], "message": [], "color": []}
        )
        markers = self.figures["zscore"].scatter(
            "time", "value", source=self._markers, color="color", size=10, marker="triangle",
            legend_label="alerts",
        )  # fmt: skip
        self.figures["zscore"].add_tools(
            HoverTool(
                renderers=[markers],
                tooltips=[("alert", "@rule @kind"), ("z", "@value{0.000}"), ("", "@message")],
            )
        )
        self._make_lines()
        self._relabel()
        self.layout = column(*self.figures.values(), sizing_mode="stretch_width")

    # --- what is drawn ---------------------------------------------------------------

    def _make_lines(self) -> None:
        """Make the line renderers, once: changing a figure's renderers after the page is
        shown makes Bokeh walk the whole document per change (seconds for six charts)."""
        self._lines = lines(self.options)
        self._sources = []
        self._renderers: list[Any] = []
        first: dict[str, Any] = {}
        count: dict[str, int] = {}
        for line in self._lines:
            source = ColumnDataSource({"t": [], "v": []})
            fig = self.figures[line.figure]
            draw = fig.step if line.steps else fig.line
            extra = {"mode": "center"} if line.steps else {}
            index = count[line.figure] = count.get(line.figure, -1) + 1
            renderer = draw(
                "t", "v", source=source, color=line.color, line_dash=line.dash,
                legend_label=line.label, name=f"pw-{line.figure}-{index}", **extra,
            )  # fmt: skip
            first.setdefault(line.figure, renderer)
            self._sources.append(source)
            self._renderers.append(renderer)
        for name, renderer in first.items():
            self.figures[name].add_tools(
                HoverTool(
                    renderers=[renderer],
                    tooltips=[("time", "@t{%F %T}"), (name, "@v{0.0000}")],
                    formatters={"@t": "datetime"},
                    mode="vline",
                )
            )
        self._legend = {
            id(renderer): item
            for fig in self.figures.values()
            for item in fig.legend[0].items
            for renderer in item.renderers
        }
        for fig in self.figures.values():
            fig.legend.location = "top_left"
            fig.legend.click_policy = "hide"
            fig.legend.background_fill_alpha = 0.6

    def _relabel(self) -> None:
        """Apply the options' labels and the Kalman line's visibility."""
        self._lines = lines(self.options)
        for i, (line, renderer) in enumerate(zip(self._lines, self._renderers, strict=True)):
            item = self._legend.get(id(renderer))
            if item is not None and item.label != value(line.label):
                item.label = value(line.label)
            if i == KALMAN_ONLY:
                renderer.visible = self.options.kalman
                if item is not None:
                    item.visible = self.options.kalman

    # --- what is sent: computed off the loop (``compute``), applied on it (``apply``) ---

    def compute(
        self,
        frame: pd.DataFrame,
        alerts: pd.DataFrame,
        options: ChartOptions,
        visible: tuple[float, float] | None = None,
    ) -> Drawing:
        """Return what the charts send for ``frame`` (pure: call it from a worker thread)."""
        return drawing(frame, alerts, options, visible)

    def apply(self, frame: pd.DataFrame, alerts: pd.DataFrame, drawn: Drawing) -> None:
        """Show ``drawn`` (made by ``compute`` for ``frame``); on the loop, under the lock."""
        if drawn.options != self.options:
            self.options = drawn.options
            self._relabel()
        self.frame, self.alerts, self.visible = frame, alerts, drawn.visible
        ts = frame["ts"].to_numpy(dtype=np.int64)
        self._scale = drawn.scale
        if drawn.visible is None and len(ts):
            lo, hi = float(ts[0]), float(ts[-1])
            if lo == hi:
                lo, hi = lo - 500, hi + 500
            # reset_*: the Reset tool's span (BokehJS keeps the first view's otherwise)
            self.x_range.update(start=lo, end=hi, reset_start=lo, reset_end=hi, bounds=None)
        for source, (t, v) in zip(self._sources, drawn.lines, strict=True):
            source.data = {"t": t, "v": v}
        self._annotate(drawn)

    def show(
        self, frame: pd.DataFrame, alerts: pd.DataFrame, options: ChartOptions | None = None
    ) -> None:
        """Compute and apply at once (small frames, tests)."""
        self.apply(frame, alerts, self.compute(frame, alerts, options or self.options))

    @property
    def frame(self) -> pd.DataFrame:
        """Every shown bar (the appended ones joined now, once)."""
        if self._tail:
            self._frame = pd.concat([self._frame, *self._tail], ignore_index=True)
            self._tail = []
        return self._frame

    @frame.setter
    def frame(self, frame: pd.DataFrame) -> None:
        self._frame, self._tail, self.rows = frame, [], len(frame)
        self.last_ts = int(frame["ts"].iloc[-1]) if len(frame) else None
        self._last_z = float(_z(frame, self.options)[-1]) if len(frame) else math.nan

    def parts(self) -> list[pd.DataFrame]:
        """The shown bars as frames to join (the frame and the appended ones)."""
        return [self._frame, *self._tail]

    @property
    def first_ts(self) -> int | None:
        """The first shown bar's time."""
        return int(self._frame["ts"].iloc[0]) if len(self._frame) else None

    def append(self, new: pd.DataFrame, alerts: pd.DataFrame | None = None) -> None:
        """Add bars after the shown ones, and their alerts: streamed onto the sources
        (nothing redrawn, nothing recomputed over the shown bars)."""
        if alerts is not None and not alerts.empty:
            self.alerts = pd.concat([self.alerts, alerts], ignore_index=True)
            self._markers.stream(markers(alerts))
        if new.empty:
            return
        if self.rows == 0:
            self.show(new, self.alerts)
            return
        ts = new["ts"].to_numpy(dtype=np.int64)
        for line, source in zip(self._lines, self._sources, strict=True):
            values = line.values(new, self.options)
            if line.figure == "prices":
                values = values / self._scale.get(line.label, 1.0)
            keep = np.isfinite(values)
            source.stream({"t": ts[keep], "v": values[keep]})
        z = _z(new, self.options)
        x0, x1 = breaches(ts, z, self.options.threshold)
        last, going_on = self.last_ts, abs(self._last_z) >= self.options.threshold
        if len(x0) and x0[0] == ts[0] and last is not None and going_on:
            x0 = x0.copy()
            x0[0] = last  # a breach going on: no gap at the join
        if len(x0):
            self._breaches.stream({"x0": x0, "x1": x1})
        self._tail.append(new)
        self.rows += len(new)
        self.last_ts, self._last_z = int(ts[-1]), float(z[-1])
        start, end = float(self.x_range.start), float(self.x_range.end)  # type: ignore[arg-type]
        if self.visible is None or end >= float(ts[0]) - 1:
            # Following the latest bars: keep the window's width, move it forward.
            width = end - start
            self.x_range.update(start=float(ts[-1]) - width, end=float(ts[-1]))

    def _annotate(self, drawn: Drawing) -> None:
        k = self.options.threshold
        self._thresholds[0].location = k
        self._thresholds[1].location = -k
        self._breaches.data = {"x0": drawn.breaches[0], "x1": drawn.breaches[1]}
        self._markers.data = drawn.markers

    def _ranges_updated(self, event: RangesUpdate) -> None:
        if event.x0 is not None and event.x1 is not None and self.on_zoom is not None:
            self.on_zoom(float(event.x0), float(event.x1))

    def point_counts(self) -> dict[str, int]:
        """Points sent per line (label → count), for tests and benchmarks."""
        return {
            f"{line.figure}:{line.label}": len(source.data["t"])
            for line, source in zip(self._lines, self._sources, strict=True)
        }
