"""A PNG chart of one pair: prices, spread and z-score, drawn with matplotlib's Agg.

CPU-bound (tens to hundreds of milliseconds): the daemon calls ``render_chart`` in a
worker thread, never on the event loop. It uses matplotlib's object API (no pyplot, no
global figure state); renders are serialised by a lock as matplotlib is not thread-safe.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

_LOCK = threading.Lock()
_Y_COLOUR, _X_COLOUR, _LINE_COLOUR = "#1f77b4", "#ff7f0e", "#444444"


@dataclass(frozen=True, slots=True)
class ChartData:
    """The series of one chart, aligned on ``ts`` (bar open times, epoch ms)."""

    title: str
    y_name: str
    x_name: str
    ts: npt.NDArray[np.int64]
    y: npt.NDArray[np.float64]
    """Close prices of the dependent leg."""
    x: npt.NDArray[np.float64]
    spread: npt.NDArray[np.float64]
    zscore: npt.NDArray[np.float64]
    z_levels: tuple[float, ...] = (2.0, -2.0)
    """Horizontal lines on the z-score panel (e.g. the rules' thresholds)."""

    def __post_init__(self) -> None:
        n = len(self.ts)
        for name in ("y", "x", "spread", "zscore"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"chart series {name!r} has {len(getattr(self, name))} points, ts has {n}"
                )
        if any(not math.isfinite(level) for level in self.z_levels):
            raise ValueError(f"z levels must be finite, got {self.z_levels}")


def render_chart(data: ChartData, *, width: int = 1000, height: int = 750, dpi: int = 100) -> bytes:
    """Return the chart of ``data`` as PNG bytes (``width`` × ``height`` pixels)."""
    with _LOCK:
        figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(figure)
        prices, spread, z = figure.subplots(
            3, 1, sharex=True, gridspec_kw={"height_ratios": (2, 1, 1)}
        )
        figure.suptitle(data.title)
        if len(data.ts) == 0:
            for axes in (prices, spread, z):
                axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        else:
            _draw(data, prices, spread, z)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()


def _draw(data: ChartData, prices: Axes, spread: Axes, z: Axes) -> None:
    when = data.ts.astype("datetime64[ms]")
    prices.plot(when, data.y, color=_Y_COLOUR, linewidth=1.0, label=data.y_name)
    prices.set_ylabel(data.y_name, color=_Y_COLOUR)
    other = prices.twinx()
    other.plot(when, data.x, color=_X_COLOUR, linewidth=1.0, label=data.x_name)
    other.set_ylabel(data.x_name, color=_X_COLOUR)
    prices.grid(True, alpha=0.3)

    spread.plot(when, data.spread, color=_LINE_COLOUR, linewidth=1.0)
    finite = data.spread[np.isfinite(data.spread)]
    if finite.size:
        spread.axhline(float(finite.mean()), color=_LINE_COLOUR, linewidth=0.8, linestyle=":")
    spread.set_ylabel("spread")
    spread.grid(True, alpha=0.3)

    z.plot(when, data.zscore, color="#2ca02c", linewidth=1.0)
    z.axhline(0.0, color=_LINE_COLOUR, linewidth=0.8)
    for level in data.z_levels:
        z.axhline(level, color="#d62728", linewidth=0.8, linestyle="--")
    z.set_ylabel("z-score")
    z.grid(True, alpha=0.3)

    z.set_xlabel("UTC")
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]  # matplotlib.dates is untyped
    z.xaxis.set_major_locator(locator)
    z.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
