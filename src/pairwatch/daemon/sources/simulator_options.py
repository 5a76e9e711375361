"""Options of the simulator (see :mod:`.simulator` for what they do together)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs

from pairwatch.daemon.sources.simulator_faults import FaultOptions
from pairwatch.daemon.sources.simulator_feed import EventClock
from pairwatch.daemon.sources.simulator_wire import STREAM_KINDS, Market, StreamKind
from pairwatch.daemon.sources.synthetic import MarketModel, default_symbol_spec
from pairwatch.errors import ConfigError

logger = logging.getLogger(__name__)

STREAM_PATHS = {"spot": "/stream", "usdm": "/market/stream"}


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Everything that configures a :class:`Simulator` (defaults: synthetic spot, real time).

    Invalid values raise :class:`~pairwatch.errors.ConfigError` listing every problem.
    """

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; read it back from ``Simulator.url``."""
    market: Market = "spot"
    stream: StreamKind | tuple[StreamKind, ...] = "trade"
    """Stream kind(s) the synthetic market publishes, e.g. ("trade", "aggTrade") for both."""
    mode: Literal["synthetic", "recorded"] = "synthetic"
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    rate: float = 20.0
    """Synthetic taker orders per simulated second, all symbols together."""
    speed: float | None = 1.0
    """Time scale: 1.0 real time, 10.0 ten times faster, None as fast as possible."""
    seed: int = 0
    start_ms: int | None = None
    """Synthetic clock origin (epoch ms); default: wall clock when the market starts."""
    event_clock: EventClock = "wall"
    """Synthetic ``T``/``E``: ``wall`` keeps them at the real time of sending (at max speed,
    the time each block is made), so clients' clock-skew checks pass at any speed;
    ``simulated`` uses the market's own clock (``start_ms`` + simulated seconds)."""
    model: MarketModel | None = None
    """Full synthetic model; overrides ``symbols``, ``rate`` and ``seed`` when given."""
    files: tuple[str, ...] = ()
    faults: FaultOptions = field(default_factory=FaultOptions)
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 60.0
    strict_streams: bool = False
    close_when_done: bool = False
    """Recorded mode: close connections (1000) after the last frame instead of idling."""
    record_ids: bool = True
    """Keep the ids sent per connection (see ``record_limit``; off for benchmarks)."""
    record_limit: int = 1_000_000
    """Stop recording a connection's ids after this many (bounds memory of long runs)."""
    retention: int = 100_000
    """Frames kept behind the slowest cursor and the resume point (for overlap/continue)."""
    on_send: Callable[[int, int], None] | None = None
    """Called after each batch with (messages sent on that connection, time.time_ns())."""
    ssl: ssl.SSLContext | None = None
    """Serve ``wss://`` with this server context (tests of the client's TLS)."""

    def __post_init__(self) -> None:
        problems = []
        if self.market not in STREAM_PATHS:
            problems.append(f"market must be 'spot' or 'usdm', got {self.market!r}")
        if self.mode not in ("synthetic", "recorded"):
            problems.append(f"mode must be 'synthetic' or 'recorded', got {self.mode!r}")
        if self.mode == "recorded" and not self.files:
            problems.append("recorded mode needs files")
        if self.speed is not None and not self.speed > 0:
            problems.append("speed must be > 0 (or None for max speed)")
        if not self.rate > 0:
            problems.append("rate must be > 0")
        if not 0 <= self.port <= 65535:
            problems.append("port must be 0..65535")
        if self.retention < 0:
            problems.append("retention must be >= 0")
        if self.record_limit < 0:
            problems.append("record_limit must be >= 0")
        if self.mode == "recorded":
            missing = [f for f in self.files if not Path(f).is_file()]
            if missing:
                problems.append(f"recorded files not found: {', '.join(missing)}")
        elif self.model is None:
            try:
                self.market_model()
            except ValueError as exc:
                problems.append(str(exc))
        if self.event_clock not in ("wall", "simulated"):
            problems.append(f"event_clock must be 'wall' or 'simulated', got {self.event_clock!r}")
        if not self.kinds or any(k not in STREAM_KINDS for k in self.kinds):
            problems.append(f"stream must be among {STREAM_KINDS}, got {self.stream!r}")
        if problems:
            raise ConfigError([f"simulator: {p}" for p in problems])

    @property
    def kinds(self) -> tuple[StreamKind, ...]:
        """Return the published stream kinds as a tuple."""
        return (self.stream,) if isinstance(self.stream, str) else self.stream

    def market_model(self) -> MarketModel:
        """Return the synthetic model these options describe."""
        if self.model is not None:
            return self.model
        specs = tuple(default_symbol_spec(s, self.market) for s in self.symbols)
        return MarketModel(symbols=specs, rate=self.rate, seed=self.seed)


@dataclass(slots=True)
class HandshakeStats:
    """Counts of opening handshakes by outcome."""

    attempts: int = 0
    accepted: int = 0
    not_found: int = 0
    refused: int = 0
    bad_request: int = 0


def parse_streams(path: str) -> tuple[str, list[str]]:
    """Split a request path into (path, stream names from ``streams=``)."""
    route, _, query = path.partition("?")
    values = parse_qs(query, keep_blank_values=True).get("streams", [])
    names = [name for value in values for name in value.split("/") if name]
    return route, names
