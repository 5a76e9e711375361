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
ALERT_COLORS: Final = {"firing": "#d62728", "resolved": "#2ca02c", "pending": "#ff7f0e"}
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


def normalised(close: Floats) -> Floats:
    """Return ``close`` divided by its first finite value (unchanged when there is none)."""
    finite = close[np.isfinite(close)]
    if finite.size == 0 or finite[0] == 0:
        return close
    scaled: Floats = close / finite[0]
    return scaled


def _spread(frame: pd.DataFrame, o: ChartOptions) -> Floats:
    return _column("kalman_spread" if o.kalman else "spread")(frame, o)


def _z(frame: pd.DataFrame, o: ChartOptions) -> Floats:
    return _column("kalman_zscore" if o.kalman else "zscore")(frame, o)


def _band(sign: float) -> Callable[[pd.DataFrame, ChartOptions], Floats]:
    """mean + sign·k·σ, where the rolling mean is spread − z·σ."""

    def band(frame: pd.DataFrame, o: ChartOptions) -> Floats:
        std = frame["spread_std"].to_numpy(dtype=np.float64)
        mean = _spread(frame, o) - _z(frame, o) * std
        out: Floats = mean + sign * o.threshold * std
        return out

    return band


def lines(options: ChartOptions) -> list[Line]:
    """Return every line the charts draw, in a fixed order (options change labels and
    values, never the set of lines: renderers are made once, see ``Charts``)."""
    return [
        Line("prices", options.y, COLORS["y"], lambda f, _: normalised(_column("y_close")(f, _))),
        Line("prices", options.x, COLORS["x"], lambda f, _: normalised(_column("x_close")(f, _))),
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


class Charts:
    """The linked figures of one page session; ``show`` a frame, ``zoom``, ``append``."""

    def __init__(self, options: ChartOptions | None = None) -> None:
        self.options = options or ChartOptions()
        self.ts: Ints = np.empty(0, dtype=np.int64)
        self.frame = pd.DataFrame()
        self.alerts = pd.DataFrame()
        self.visible: tuple[float, float] | None = None
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

    def show(
        self, frame: pd.DataFrame, alerts: pd.DataFrame, options: ChartOptions | None = None
    ) -> None:
        """Show a new frame (``data.load_frame``) and alert markers, over its whole range."""
        if options is not None and options != self.options:
            self.options = options
            self._relabel()
        self.frame = frame
        self.alerts = alerts
        self.ts = frame["ts"].to_numpy(dtype=np.int64)
        self.visible = None
        if len(self.ts):
            lo, hi = float(self.ts[0]), float(self.ts[-1])
            if lo == hi:
                lo, hi = lo - 500, hi + 500
            self.x_range.update(start=lo, end=hi, bounds=None)
        self._fill()

    def restyle(self, options: ChartOptions) -> None:
        """Apply new options (threshold, Kalman) to the frame shown."""
        self.show(self.frame, self.alerts, options)

    def zoom(self, start: float, end: float) -> None:
        """Send the lines' points for the visible range ``[start, end]`` (epoch ms)."""
        self.visible = (start, end)
        self._fill()

    def append(self, new: pd.DataFrame) -> None:
        """Add bars after the shown ones: streamed onto the sources (nothing redrawn)."""
        if new.empty:
            return
        if self.frame.empty:
            self.show(new, self.alerts)
            return
        self.frame = pd.concat([self.frame, new], ignore_index=True)
        ts = new["ts"].to_numpy(dtype=np.int64)
        self.ts = np.concatenate([self.ts, ts])
        for line, source in zip(self._lines, self._sources, strict=True):
            if line.figure == "prices":
                # Normalised by the range's first close: recompute on the whole frame.
                values = line.values(self.frame, self.options)[-len(ts) :]
            else:
                values = line.values(new, self.options)
            keep = np.isfinite(values)
            source.stream({"t": ts[keep], "v": values[keep]})
        start, end = float(self.x_range.start), float(self.x_range.end)  # type: ignore[arg-type]
        if self.visible is None or end >= float(ts[0]) - 1:
            # Following the latest bars: keep the window's width, move it forward.
            width = end - start
            self.x_range.update(start=float(self.ts[-1]) - width, end=float(self.ts[-1]))
        self._fill_annotations()

    def _fill(self) -> None:
        ts = self.ts
        if self.visible is not None and len(ts):
            lo, hi = self.visible
            margin = (hi - lo) * 0.1
            i, j = np.searchsorted(ts, [lo - margin, hi + margin])
            window = slice(max(i - 1, 0), min(j + 1, len(ts)))
        else:
            window = slice(None)
        part = self.frame.iloc[window] if len(self.frame) else self.frame
        part_ts = ts[window]
        for line, source in zip(self._lines, self._sources, strict=True):
            values = line.values(self.frame, self.options)[window] if line.figure == "prices" \
                else (line.values(part, self.options) if len(part) else np.empty(0))  # fmt: skip
            t, v = downsample(part_ts, np.asarray(values, dtype=np.float64))
            source.data = {"t": t, "v": v}
        self._fill_annotations()

    def _fill_annotations(self) -> None:
        k = self.options.threshold
        self._thresholds[0].location = k
        self._thresholds[1].location = -k
        if len(self.frame):
            x0, x1 = breaches(self.ts, _z(self.frame, self.options), k)
        else:
            x0 = x1 = np.empty(0, dtype=np.int64)
        self._breaches.data = {"x0": x0, "x1": x1}
        a = self.alerts
        if a.empty:
            self._markers.data = {key: [] for key in self._markers.data}
        else:
            self._markers.data = {
                "time": a["at"].to_numpy(dtype=np.int64),
                "value": a["value"].to_numpy(dtype=np.float64),
                "kind": a["kind"].astype(str).to_list(),
                "rule": a["rule"].astype(str).to_list(),
                "message": a["message"].astype(str).to_list(),
                "color": [ALERT_COLORS.get(str(kind), "#9467bd") for kind in a["kind"]],
            }

    def _ranges_updated(self, event: RangesUpdate) -> None:
        if event.x0 is not None and event.x1 is not None:
            self.zoom(float(event.x0), float(event.x1))

    def point_counts(self) -> dict[str, int]:
        """Points sent per line (label → count), for tests and benchmarks."""
        return {
            f"{line.figure}:{line.label}": len(source.data["t"])
            for line, source in zip(self._lines, self._sources, strict=True)
        }
