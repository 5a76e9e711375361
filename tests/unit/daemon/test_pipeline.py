"""The live pipeline stage with a recording writer at the store seam."""

from __future__ import annotations

import json
from collections.abc import Sequence

from pairwatch.daemon.health import Health
from pairwatch.daemon.pipeline import Pipeline
from pairwatch.events import Bar, Gap, Trade


class RecordingWriter:
    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.ticks: list[Trade] = []
        self.gaps: list[Gap] = []
        self.checkpoints: list[tuple[list[Bar], str, str, list[tuple[str, int, int]]]] = []

    def put_bars(self, bars: Sequence[Bar]) -> None:
        self.bars.extend(bars)

    def put_ticks(self, trades: Sequence[Trade]) -> None:
        self.ticks.extend(trades)

    def put_gaps(self, gaps: Sequence[Gap]) -> None:
        self.gaps.extend(gaps)

    def checkpoint(
        self, bars: Sequence[Bar], market: str, stream: str, states: Sequence[tuple[str, int, int]]
    ) -> None:
        self.checkpoints.append((list(bars), market, stream, list(states)))


def frame(symbol: str, trade_id: int, ts: int, price: str = "100.5", qty: str = "2") -> str:
    data = {
        "e": "trade", "E": ts, "s": symbol, "t": trade_id, "p": price, "q": qty, "T": ts,
        "m": False, "M": True,
    }  # fmt: skip
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


def make(**kwargs: object) -> tuple[Pipeline, RecordingWriter, Health]:
    writer = RecordingWriter()
    health = Health()
    pipeline = Pipeline(
        symbols=["BTCUSDT", "ETHUSDT"],
        timeframes=[("1s", 1_000), ("1m", 60_000)],
        market="spot",
        stream="trade",
        writer=writer,
        health=health,
        **kwargs,  # type: ignore[arg-type]
    )
    return pipeline, writer, health


def test_frames_become_bars_and_bad_frames_are_counted() -> None:
    pipeline, writer, health = make()
    for i, ts in enumerate([1_000, 1_200, 2_100]):
        assert pipeline.on_frame(frame("BTCUSDT", 10 + i, ts), ts + 5) is False
    pipeline.on_frame("{garbage", 0)
    pipeline.on_frame(b"\x00\x01binary", 0)
    pipeline.on_frame(frame("BTCUSDT", 11, 1_300), 0)  # duplicate id
    assert health.frames == 6
    assert health.accepted == 3
    assert health.rejected == {"malformed_json": 1, "binary_frame": 1, "duplicate": 1}
    assert [(b.timeframe, b.ts, b.volume, b.trades) for b in writer.bars] == [("1s", 1_000, 4.0, 2)]
    assert health.lag.percentiles()[2] == 5.0


def test_gaps_are_recorded_with_the_missing_ids() -> None:
    pipeline, writer, health = make()
    pipeline.on_frame(frame("ETHUSDT", 100, 1_000), 1_001)
    pipeline.on_frame(frame("ETHUSDT", 104, 1_100), 1_101)
    assert writer.gaps == [Gap("ETHUSDT", 101, 103, 1_101, "trade")]
    assert (health.gaps, health.missed_ids) == (1, 3)


def test_server_shutdown_asks_for_a_reconnect() -> None:
    pipeline, _, health = make()
    shutdown = '{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1}}'
    assert pipeline.on_frame(shutdown, 0) is True
    assert health.rejected == {}


def test_checkpoint_saves_open_bars_and_last_ids_together() -> None:
    pipeline, writer, _ = make(store_ticks=True)
    pipeline.on_frame(frame("BTCUSDT", 7, 5_500), 5_501)
    pipeline.checkpoint()
    ((bars, market, stream, states),) = writer.checkpoints
    assert (market, stream, states) == ("spot", "trade", [("BTCUSDT", 7, 5_500)])
    assert [(b.timeframe, b.ts, b.closed) for b in bars] == [("1s", 5_000, False), ("1m", 0, False)]
    assert [t.trade_id for t in writer.ticks] == [7]


def test_resume_after_restart_dedups_and_continues_the_open_bar() -> None:
    first, first_writer, _ = make()
    first.on_frame(frame("BTCUSDT", 7, 5_500, qty="1"), 5_501)
    first.checkpoint()
    (open_bars, _, _, states) = first_writer.checkpoints[0]

    second, writer, health = make(last_ids={s: (i, t) for s, i, t in states})
    second.resume(open_bars)
    second.on_frame(frame("BTCUSDT", 7, 5_500, qty="1"), 5_500)  # resent after restart
    second.on_frame(frame("BTCUSDT", 8, 5_700, qty="3"), 5_700)
    second.advance(6_000, 0)
    assert health.rejected == {"duplicate": 1}
    assert [(b.timeframe, b.ts, b.volume, b.trades) for b in writer.bars] == [("1s", 5_000, 4.0, 2)]


def test_advance_closes_idle_bars_with_fills_for_quiet_symbols() -> None:
    pipeline, writer, health = make()
    pipeline.on_frame(frame("BTCUSDT", 1, 1_000), 1_000)
    pipeline.advance(5_500, 2_000)
    assert [(b.ts, b.filled) for b in writer.bars] == [(1_000, False), (2_000, True)]
    assert health.bars_closed == 2
    pipeline.on_frame(frame("BTCUSDT", 2, 2_900), 5_600)  # falls in a bar already closed
    assert health.rejected == {"late": 1}


def test_a_lagging_feed_is_not_closed_under_its_feet() -> None:
    """Lag (or a fast local clock) shifts the watermark: trades in open bars still count."""
    pipeline, writer, health = make()
    pipeline.on_frame(frame("ETHUSDT", 1, 1_000), 4_000)  # 3 s behind the local clock
    pipeline.advance(4_500, 2_000)
    assert writer.bars == []
    pipeline.on_frame(frame("ETHUSDT", 2, 1_500), 4_600)
    pipeline.on_frame(frame("ETHUSDT", 3, 2_100), 5_200)
    assert health.rejected == {}
    assert [(b.ts, b.trades) for b in writer.bars] == [(1_000, 2)]
