"""The analytics stage: closed bars → ``PairEngine`` → store, latest-snapshot cache, ADF refresh.

It is a bar sink of the pipeline and runs inline on the event loop: one numba call per
bank of pairs per batch of closed bars. At start-up it replays the newest stored closed
bars through the engine (so z-scores continue across a restart instead of warming up
again) and compiles every kernel. The Engle–Granger tests are refreshed on a schedule:
the histories are copied on the loop (microseconds) and the tests run in a worker, whose
results are attached on the loop and ride along on every following snapshot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pairwatch.analytics.engine import (
    ADF_METRICS,
    AdfValues,
    KalmanState,
    PairEngine,
    PairSpec,
    engle_granger,
)
from pairwatch.config.pairs import PairSettings
from pairwatch.config.settings import Settings
from pairwatch.daemon import store_reads
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot

logger = logging.getLogger(__name__)

GIL_PAUSE_S = 0.0002
"""The ADF worker sleeps this long after each test: long enough for a waiting event loop to
take the GIL (a bare ``sleep(0)`` often wins it straight back), short enough not to matter."""

SnapshotKey = tuple[str, str, int]
"""(pair ``Y/X``, timeframe, window)."""


class SnapshotWriter(Protocol):
    """The part of the store writer the analytics stage uses."""

    def put_pair_snapshots(self, snapshots: Sequence[PairSnapshot]) -> None: ...
    def put_symbol_snapshots(self, snapshots: Sequence[SymbolSnapshot]) -> None: ...
    def put_kalman_states(self, states: Sequence[KalmanState]) -> None: ...


SnapshotListener = Callable[[Sequence[PairSnapshot], Sequence[SymbolSnapshot]], None]


def spec_of(pair: PairSettings, timeframe: str, bar_ms: int) -> PairSpec:
    """Return the engine's spec of one configured pair on one timeframe."""
    return PairSpec(
        y=pair.y,
        x=pair.x,
        timeframe=timeframe,
        bar_ms=bar_ms,
        windows=tuple(pair.windows),
        log_prices=pair.transform == "log",
        intercept=pair.intercept,
        delta=pair.kalman.delta,
        obs_var=pair.kalman.obs_var,
        min_trades=pair.min_trades,
        adf_lookback=pair.adf_lookback,
        adf_refresh_ms=int(pair.adf_refresh.total_seconds() * 1000),
    )


def pair_specs(settings: Settings) -> list[PairSpec]:
    """Return one spec per configured pair × timeframe."""
    lengths = dict(settings.bars.timeframe_lengths)
    return [
        spec_of(pair, timeframe, lengths[timeframe])
        for pair in settings.pairs
        for timeframe in (pair.timeframes or lengths)
    ]


def adf_schedule(specs: Sequence[PairSpec]) -> dict[int, list[int]]:
    """Return refresh interval (ms) → ids (positions in ``specs``) of the tracks refreshed."""
    groups: dict[int, list[int]] = {}
    for track, spec in enumerate(specs):
        groups.setdefault(spec.adf_refresh_ms, []).append(track)
    return groups


def compute_adf(
    inputs: Sequence[tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]]],
) -> list[tuple[int, dict[str, float]]]:
    """Run the Engle–Granger tests of several tracks (in a worker: no loop access).

    Each test holds the GIL for about a millisecond of small numpy calls; left alone, the
    worker would keep it for a whole switch interval (5 ms) whenever the event loop wants
    it. Pausing briefly after every test hands it over, so the loop never waits longer
    than about one test.
    """
    results = []
    for track, x, y in inputs:
        try:
            metrics = engle_granger(x, y)
        except Exception:  # one pair's surprise must not cost the others their refresh
            logger.exception("the ADF test of track %d failed; its values are NaN", track)
            metrics = dict.fromkeys(ADF_METRICS, math.nan)
        results.append((track, metrics))
        time.sleep(GIL_PAUSE_S)  # release the GIL: let the event loop run between tests
    return results


class AnalyticsStage:
    """Keep the engine, the latest snapshots and the ADF refresh of one daemon."""

    def __init__(self, specs: Sequence[PairSpec], writer: SnapshotWriter) -> None:
        self.engine = PairEngine(specs)
        self._writer = writer
        self.latest: dict[SnapshotKey, PairSnapshot] = {}
        """Per pair × timeframe × window: the newest snapshot with metrics (not thin)."""
        self.latest_symbols: dict[tuple[str, str, int], SymbolSnapshot] = {}
        self._listeners: list[SnapshotListener] = []
        self.pair_snapshots = 0
        self.symbol_snapshots = 0
        self.adf_refreshes = 0
        self.adf_failures = 0
        self.errors = 0

    def add_listener(self, listener: SnapshotListener) -> None:
        """Hand every batch of new pair and symbol snapshots to ``listener`` (rules, MQTT…)."""
        self._listeners.append(listener)

    def on_bars(self, bars: Sequence[Bar]) -> None:
        """Take a batch of closed bars (a pipeline sink); store and publish the snapshots.

        It runs inside the feed's receive path, so nothing it raises may escape: a failure
        is logged with its traceback and counted, and the feed goes on.
        """
        try:
            pairs, symbols = self.engine.on_bars(bars)
        except Exception:
            self.errors += 1
            logger.exception("analytics failed on %d closed bars; they are skipped", len(bars))
            return
        self.symbol_snapshots += len(symbols)
        self._remember_symbols(symbols)
        if pairs:
            self.pair_snapshots += len(pairs)
            self._remember(pairs)
        if pairs or symbols:
            # Listeners first: the alerts they queue are then written ahead of these rows.
            for listener in self._listeners:
                try:
                    listener(pairs, symbols)
                except Exception:
                    self.errors += 1
                    logger.exception("a snapshot listener (%r) failed", listener)
        try:
            self._writer.put_symbol_snapshots(symbols)
            self._writer.put_pair_snapshots(pairs)
        except Exception:
            self.errors += 1
            logger.exception("storing %d snapshots failed", len(pairs) + len(symbols))

    def warm_up(self, bars: Iterable[Bar], kalman: Iterable[KalmanState] = ()) -> int:
        """Feed stored bars (oldest first per symbol) without storing; return the count.

        Their snapshots were stored when they were live; only the newest of each key is
        kept, in the cache, so the bot and the web page have values right away. The rolling
        windows are rebuilt from the bars; each Kalman filter is set to its saved state as
        the bars pass the bar it was saved after, so it continues exactly.
        """
        bars = sorted(bars, key=lambda b: b.ts)  # stable: each symbol keeps its order
        pending = sorted(kalman, key=lambda k: k.ts)
        for _, group in itertools.groupby(bars, key=lambda b: b.ts):
            chunk = list(group)
            while pending and pending[0].ts < chunk[0].ts:
                self._restore(pending.pop(0))
            pairs, symbols = self.engine.on_bars(chunk)
            self._remember(pairs)
            self._remember_symbols(symbols)
        for state in pending:
            self._restore(state)
        return len(bars)

    def checkpoint(self) -> None:
        """Save the Kalman states that took a bar since the last checkpoint."""
        try:
            self._writer.put_kalman_states(self.engine.kalman_states(changed_only=True))
        except Exception:
            self.errors += 1
            logger.exception("saving the Kalman filter states failed")

    def _restore(self, state: KalmanState) -> None:
        if not self.engine.restore_kalman(state):
            logger.info(
                "saved Kalman state of %s/%s %s window %d: no such pair configured now",
                state.y, state.x, state.timeframe, state.window,
            )  # fmt: skip

    def load_history(self, conn: sqlite3.Connection) -> list[Bar]:
        """Return the stored closed bars the engine needs to continue, in time order."""
        need: dict[tuple[str, str], int] = {}
        for spec in self.engine.specs:
            # Enough for the longest window, its return window and the ADF lookback.
            n = max(max(spec.windows) + 1, spec.adf_lookback)
            for symbol in (spec.y, spec.x):
                key = (symbol, spec.timeframe)
                need[key] = max(need.get(key, 0), n)
        bars = [
            bar
            for (symbol, timeframe), n in need.items()
            for bar in store_reads.load_recent_closed_bars(conn, symbol, timeframe, n)
        ]
        bars.sort(key=lambda b: b.ts)  # a stable sort keeps each symbol's own order
        return bars

    def counters(self) -> dict[str, int]:
        """Return the stage's counters (for status and feed stats)."""
        return {
            **self.engine.counters(),
            "pair_snapshots": self.pair_snapshots,
            "symbol_snapshots": self.symbol_snapshots,
            "adf_refreshes": self.adf_refreshes,
            "adf_failures": self.adf_failures,
            "errors": self.errors,
        }

    async def refresh_adf(
        self, tracks: Sequence[int], now: Callable[[], int], executor: Executor | None = None
    ) -> int:
        """Refresh the Engle–Granger tests of ``tracks`` in a worker; return how many ran."""
        inputs = self.engine.adf_inputs(tracks)
        if not inputs:
            return 0
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(executor, compute_adf, inputs)
        except Exception:  # a failing refresh must never take the daemon down
            self.adf_failures += 1
            logger.exception("the ADF refresh of %d pairs failed", len(inputs))
            return 0
        computed_at = now()
        for track, metrics in results:
            self.engine.set_adf(track, AdfValues(metrics, computed_at))
        self.adf_refreshes += len(results)
        return len(results)

    def _remember(self, snapshots: Iterable[PairSnapshot]) -> None:
        latest = self.latest
        for s in snapshots:
            if not s.thin:
                latest[(s.pair, s.timeframe, s.window)] = s

    def _remember_symbols(self, snapshots: Iterable[SymbolSnapshot]) -> None:
        latest = self.latest_symbols
        for s in snapshots:
            latest[(s.symbol, s.timeframe, s.window)] = s
