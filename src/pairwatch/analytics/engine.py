"""The pair engine: closed bars in, pair and symbol snapshots out (the live path).

Alignment. A pair × timeframe advances on every ts at which *both* legs closed a bar.
Bars of one symbol arrive in time order, but the legs may arrive in any interleaving (one
feed is ahead, or a bar is closed by the clock later), so each leg's bars wait in a short
queue until the other leg's bar of the same ts arrives. A bar whose ts the other leg has
already passed is dropped (that leg had no bar there: a missing leg never counts), while
carry-forward bars (``filled``) are bars like any other and do count.

Liquidity filter. With ``min_trades`` > 0, an aligned bar where either leg traded fewer
times is *thin*: the kernels skip it (their windows hold liquid bars only) and the engine
emits a snapshot flagged ``thin`` with no metrics, so the skip is visible downstream.

Every pair × timeframe × window lives in one row of a ``PairBank`` shared by all pairs with
the same window and settings, so one numba call advances every pair that has a new bar.
The Engle–Granger inputs (the last ``adf_lookback`` aligned transformed prices) are kept
per pair × timeframe; ``adf_inputs`` and ``set_adf`` let a scheduler refresh the tests
elsewhere (a worker thread) and the latest values ride along on every snapshot.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pairwatch.analytics.adf import adf, coint_with_residuals
from pairwatch.analytics.pair_bank import PAIR_METRICS, PairBank
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS, SymbolBank
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot

ADF_METRICS = ("adf_stat", "adf_pvalue", "adf_lag", "coint_pvalue")
"""Engle–Granger metrics, refreshed on a schedule and carried by every snapshot."""

SNAPSHOT_METRICS = PAIR_METRICS + ADF_METRICS
"""Every metric of a (non-thin) ``PairSnapshot``, in column order."""

MAX_PENDING = 4096
"""Bars of one leg kept waiting for the other leg; older ones are dropped (unaligned)."""

_NO_ADF = dict.fromkeys(ADF_METRICS, math.nan)


@dataclass(frozen=True, slots=True)
class PairSpec:
    """One pair × timeframe to analyse (plain data: the daemon builds it from settings)."""

    y: str
    x: str
    timeframe: str
    bar_ms: int
    windows: tuple[int, ...]
    log_prices: bool = True
    intercept: bool = True
    delta: float = 1e-5
    obs_var: float = 1e-3
    min_trades: int = 0
    adf_lookback: int = 500
    adf_refresh_ms: int = 60_000

    @property
    def pair(self) -> str:
        """Return ``Y/X``."""
        return f"{self.y}/{self.x}"


@dataclass(frozen=True, slots=True)
class AdfValues:
    """The latest Engle–Granger results of one pair × timeframe."""

    metrics: dict[str, float]
    computed_at: int
    """Epoch ms when they were computed (the wall clock, or the bar time in a replay)."""


@dataclass(frozen=True, slots=True)
class KalmanState:
    """The Kalman filter of one pair series after the bar at ``ts`` (saved for restarts)."""

    y: str
    x: str
    timeframe: str
    window: int
    ts: int
    state: tuple[float, ...]
    """β, α, P00, P01, P11 and the number of bars seen."""


@dataclass(slots=True)
class _Track:
    """One pair × timeframe: pending bars of each leg, bank rows, ADF history."""

    spec: PairSpec
    rows: list[tuple[PairBank, int]]
    pending_y: deque[Bar] = field(default_factory=lambda: deque(maxlen=MAX_PENDING))
    pending_x: deque[Bar] = field(default_factory=lambda: deque(maxlen=MAX_PENDING))
    hist_x: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    hist_y: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    hist_count: int = 0
    adf: AdfValues | None = None
    last_ts: int | None = None
    """The ts of the last aligned bar the kernels took."""
    saved_ts: int | None = None
    """``last_ts`` when the Kalman states were last handed out by ``kalman_states``."""
    aligned: int = 0
    thin: int = 0
    unaligned: int = 0


@dataclass(slots=True)
class _Update:
    track: _Track
    ts: int
    x: float
    y: float


class PairEngine:
    """Pairs and symbol metrics for a fixed set of pair × timeframe specs."""

    def __init__(self, specs: Sequence[PairSpec]) -> None:
        keys = [(s.y, s.x, s.timeframe) for s in specs]
        if len(set(keys)) != len(keys):
            raise ValueError("a pair × timeframe is listed twice")
        for spec in specs:
            if not spec.windows or len(set(spec.windows)) != len(spec.windows):
                raise ValueError(f"{spec.pair} {spec.timeframe}: windows must be unique")
        banks: dict[tuple[int, bool, bool, float, float], list[tuple[_Track, int]]] = {}
        self._tracks: list[_Track] = []
        self._by_leg: dict[tuple[str, str], list[tuple[_Track, bool]]] = {}
        for spec in specs:
            track = _Track(spec, rows=[])
            track.hist_x = np.zeros(spec.adf_lookback)
            track.hist_y = np.zeros(spec.adf_lookback)
            self._tracks.append(track)
            for window in spec.windows:
                key = (window, spec.intercept, spec.log_prices, spec.delta, spec.obs_var)
                banks.setdefault(key, []).append((track, window))
            self._by_leg.setdefault((spec.y, spec.timeframe), []).append((track, True))
            self._by_leg.setdefault((spec.x, spec.timeframe), []).append((track, False))
        for (window, intercept, log, delta, obs_var), members in banks.items():
            bank = PairBank(
                len(members), window, intercept=intercept, log_prices=log, delta=delta,
                obs_var=obs_var,
            )  # fmt: skip
            for row, (track, _) in enumerate(members):
                track.rows.append((bank, row))
        # Symbol metrics: per symbol × timeframe, every window of the pairs it is a leg of;
        # series sharing a window and bar length share one bank.
        windows: dict[tuple[str, str], tuple[int, set[int]]] = {}
        for spec in specs:
            for symbol in (spec.y, spec.x):
                entry = windows.setdefault((symbol, spec.timeframe), (spec.bar_ms, set()))
                entry[1].update(spec.windows)
        series: dict[tuple[int, int], list[tuple[str, str]]] = {}
        for leg, (bar_ms, ws) in windows.items():
            for w in sorted(ws):
                series.setdefault((w, bar_ms), []).append(leg)
        self._symbols: dict[tuple[str, str], list[tuple[SymbolBank, int]]] = {}
        for (w, bar_ms), legs in series.items():
            symbol_bank = SymbolBank(len(legs), w, bar_ms)
            for row, leg in enumerate(legs):
                self._symbols.setdefault(leg, []).append((symbol_bank, row))

    @property
    def specs(self) -> list[PairSpec]:
        """Return the pair × timeframe specs, in track order (the ids of ``adf_inputs``)."""
        return [t.spec for t in self._tracks]

    def counters(self) -> dict[str, int]:
        """Return totals over all pairs: aligned, thin and unaligned (dropped) bars."""
        return {
            "aligned": sum(t.aligned for t in self._tracks),
            "thin": sum(t.thin for t in self._tracks),
            "unaligned": sum(t.unaligned for t in self._tracks),
        }

    def on_bars(self, bars: Iterable[Bar]) -> tuple[list[PairSnapshot], list[SymbolSnapshot]]:
        """Take closed bars (any symbols, each symbol in time order); return new snapshots."""
        updates: list[_Update] = []
        pair_out: list[PairSnapshot] = []
        symbol_updates: dict[int, tuple[SymbolBank, list[int], list[Bar]]] = {}
        for bar in bars:
            if not bar.closed:
                continue
            key = (bar.symbol, bar.timeframe)
            for symbol_bank, row in self._symbols.get(key, ()):
                group = symbol_updates.setdefault(id(symbol_bank), (symbol_bank, [], []))
                group[1].append(row)
                group[2].append(bar)
            for track, is_y in self._by_leg.get(key, ()):
                queue = track.pending_y if is_y else track.pending_x
                if len(queue) == MAX_PENDING:
                    track.unaligned += 1  # the oldest waiting bar falls out: never aligned
                queue.append(bar)
                self._match(track, updates, pair_out)
        symbol_out = [s for group in symbol_updates.values() for s in _symbol_snapshots(*group)]
        if updates:
            thin = bool(pair_out)
            pair_out.extend(self._advance(updates))
            if thin:  # thin snapshots were emitted while matching: restore time order
                pair_out.sort(key=lambda s: s.ts)
        return pair_out, symbol_out

    def adf_inputs(
        self, track_ids: Iterable[int] | None = None
    ) -> list[tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
        """Return copies of the full ADF histories (id, x, y, oldest first) of the tracks."""
        ids = range(len(self._tracks)) if track_ids is None else track_ids
        out = []
        for i in ids:
            t = self._tracks[i]
            n = t.spec.adf_lookback
            if t.hist_count < n:
                continue
            pos = t.hist_count % n
            out.append((i, np.roll(t.hist_x, -pos), np.roll(t.hist_y, -pos)))
        return out

    def set_adf(self, track_id: int, values: AdfValues) -> None:
        """Attach refreshed Engle–Granger results to a track (ride on its next snapshots)."""
        self._tracks[track_id].adf = values

    def adf_values(self, track_id: int) -> AdfValues | None:
        """Return the latest Engle–Granger results of a track."""
        return self._tracks[track_id].adf

    def kalman_states(self, *, changed_only: bool = False) -> list[KalmanState]:
        """Return the filter state of every pair series that took a bar (or a new one)."""
        out: list[KalmanState] = []
        for track in self._tracks:
            if track.last_ts is None or (changed_only and track.saved_ts == track.last_ts):
                continue
            track.saved_ts = track.last_ts
            spec = track.spec
            out.extend(
                KalmanState(
                    spec.y,
                    spec.x,
                    spec.timeframe,
                    bank.window,
                    track.last_ts,
                    bank.kalman_state(row),
                )
                for bank, row in track.rows
            )
        return out

    def restore_kalman(self, state: KalmanState) -> bool:
        """Restore one series' filter state; return False if no configured series matches."""
        for track in self._tracks:
            spec = track.spec
            if (spec.y, spec.x, spec.timeframe) == (state.y, state.x, state.timeframe):
                for bank, row in track.rows:
                    if bank.window == state.window:
                        bank.set_kalman_state(row, state.state)
                        return True
        return False

    def _match(self, track: _Track, updates: list[_Update], out: list[PairSnapshot]) -> None:
        ys, xs = track.pending_y, track.pending_x
        while ys and xs:
            yb, xb = ys[0], xs[0]
            if yb.ts < xb.ts:
                ys.popleft()
                track.unaligned += 1
            elif xb.ts < yb.ts:
                xs.popleft()
                track.unaligned += 1
            else:
                ys.popleft()
                xs.popleft()
                spec = track.spec
                if yb.trades < spec.min_trades or xb.trades < spec.min_trades:
                    track.thin += 1
                    out.extend(
                        PairSnapshot(spec.y, spec.x, spec.timeframe, w, yb.ts, {}, thin=True)
                        for w in spec.windows
                    )
                    continue
                track.aligned += 1
                track.last_ts = yb.ts
                updates.append(_Update(track, yb.ts, xb.close, yb.close))
                self._remember(track, xb.close, yb.close)

    @staticmethod
    def _remember(track: _Track, x: float, y: float) -> None:
        n = track.spec.adf_lookback
        pos = track.hist_count % n
        if track.spec.log_prices:
            x, y = math.log(x), math.log(y)
        track.hist_x[pos] = x
        track.hist_y[pos] = y
        track.hist_count += 1

    def _advance(self, updates: list[_Update]) -> list[PairSnapshot]:
        # Group by bank, keeping each pair's updates in time order within its bank.
        groups: dict[int, tuple[PairBank, list[int], list[_Update]]] = {}
        for u in updates:
            for bank, row in u.track.rows:
                group = groups.setdefault(id(bank), (bank, [], []))
                group[1].append(row)
                group[2].append(u)
        snapshots: list[PairSnapshot] = []
        for bank, rows, members in groups.values():
            values = bank.update(
                np.array(rows, dtype=np.int64),
                np.array([u.x for u in members]),
                np.array([u.y for u in members]),
            ).tolist()
            for u, row_values in zip(members, values, strict=True):
                spec = u.track.spec
                metrics = dict(zip(PAIR_METRICS, row_values, strict=True))
                adf_values = u.track.adf
                if adf_values is None:
                    metrics.update(_NO_ADF)
                    at = None
                else:
                    metrics.update(adf_values.metrics)
                    at = adf_values.computed_at
                snapshots.append(
                    PairSnapshot(spec.y, spec.x, spec.timeframe, bank.window, u.ts, metrics, at)
                )
        return snapshots


def _symbol_snapshots(bank: SymbolBank, rows: list[int], bars: list[Bar]) -> list[SymbolSnapshot]:
    values = bank.update(
        np.array(rows, dtype=np.int64),
        [b.close for b in bars],
        [b.volume for b in bars],
        [b.quote_volume for b in bars],
        [float(b.trades) for b in bars],
    ).tolist()
    window = bank.window
    return [
        SymbolSnapshot(
            b.symbol, b.timeframe, window, b.ts, dict(zip(SYMBOL_METRICS, v, strict=True))
        )
        for b, v in zip(bars, values, strict=True)
    ]


def engle_granger(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> dict[str, float]:
    """Return the ADF metrics of a pair's lookback (transformed prices, oldest first).

    ``adf_*``: ``adfuller(e, regression="c", autolag="AIC")`` of the residuals e of the
    OLS of y on x with a constant over the lookback (the static spread); ``coint_pvalue``:
    ``coint(y, x)`` (Engle–Granger, MacKinnon p-value for two series). A lookback the tests
    cannot run on (y flat, too few rows for the lags) gives NaN values rather than an error;
    a flat x is y regressed on a constant, as in statsmodels.
    """
    try:
        eg, residuals = coint_with_residuals(y, x)  # one regression serves both tests
        spread = adf(residuals, regression="c")
    except (ValueError, np.linalg.LinAlgError):
        return dict(_NO_ADF)
    return {
        "adf_stat": spread.stat,
        "adf_pvalue": spread.pvalue,
        "adf_lag": float(spread.lag),
        "coint_pvalue": eg.pvalue,
    }


def warm_up() -> None:
    """Run every kernel once on a tiny input so the first live bar does not compile them."""
    engine = PairEngine([PairSpec("AA", "BB", "1s", 1000, (3,), adf_lookback=20, min_trades=0)])
    bars = [
        Bar(s, "1s", i * 1000, p, p, p, p, 1.0, p, p, 1, 0.0)
        for i in range(4)
        for s, p in (("AA", 100.0 + i * (i % 2)), ("BB", 50.0 + i))
    ]
    engine.on_bars(bars)
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.standard_normal(40))
    engle_granger(walk, walk + rng.standard_normal(40))
