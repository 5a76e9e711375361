"""Generate a synthetic, cointegrated multi-symbol trade tape (pure numpy, deterministic per seed).

Model (log prices, simulated time ``t`` in seconds)::

    log p_base(t) = log P_base + F(t)
    log p_j(t)    = log P_j    + beta_j * F(t) + X_j(t)        (every other symbol j)

``F`` is a common Brownian random walk (``factor_vol`` per sqrt-second). ``X_j`` is an
Ornstein-Uhlenbeck spread with stationary standard deviation ``spread_vol`` and half-life
``half_life_s`` around a mean ``mu_j`` that jumps by ``+-shift_size * spread_vol`` at
regime shifts (first at ``first_shift_s``, then every ``shift_interval_s`` on average;
means stay within two jumps of zero).
So ``log p_j - beta_j * log p_base`` is stationary between shifts: a z-score rule on the
pair fires at each shift.

Trades arrive as a Poisson process of ``rate`` taker orders per simulated second spread
over the symbols by ``weight``. Each taker order is one aggTrade made of one or more fills
(trades) at the same price: sells hit the bid (``floor`` to the tick), buys lift the ask
(``ceil``). Prices and quantities are integers in ticks and lots so that wire formatting is
exact. Trade ids and aggTrade ids increase by one per symbol from realistic bases.

Use :class:`SyntheticMarket` ``.generate(n)`` repeatedly; blocks continue each other, and
each random quantity has its own generator, so the tape of a seed does not depend on the
block sizes (up to float rounding of ~1e-15, which never changed a tick in our tests).
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Ids near the real ones in the recorded 2024-08-08 files, so clients see realistic widths.
_KNOWN: dict[tuple[str, str], tuple[float, int, int]] = {
    # (market, symbol): (start price, first trade id, first aggTrade id)
    ("spot", "BTCUSDT"): (60000.0, 3_735_683_259, 3_105_222_480),
    ("spot", "ETHUSDT"): (3000.0, 1_520_538_925, 1_172_401_360),
    ("usdm", "BTCUSDT"): (60000.0, 5_266_583_935, 2_283_406_720),
    ("usdm", "ETHUSDT"): (3000.0, 4_308_068_523, 1_872_015_305),
}
_BETAS = {"BTCUSDT": 1.0, "ETHUSDT": 1.2}
_NOTIONALS = {"BTCUSDT": 2000.0, "ETHUSDT": 1500.0}
# Chunks of the OU solution span at most this many relaxation times, keeping the
# exp(+kappa*t) rescaling well inside float64 precision.
_MAX_KAPPA_SPAN = 4.0
_STREAMS = ("dt", "factor", "spread", "symbol", "side", "fills", "qty", "shift")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One synthetic instrument: price level, hedge beta, wire precision and id bases."""

    symbol: str
    start_price: float
    beta: float = 1.0
    price_decimals: int = 2
    qty_decimals: int = 5
    first_trade_id: int = 100_000_000
    first_agg_id: int = 50_000_000
    weight: float = 1.0
    notional: float = 1000.0
    """Median quote value of one fill, e.g. USDT."""

    def __post_init__(self) -> None:
        problems = []
        if not self.symbol.isalnum() or not self.symbol.isupper():
            problems.append(f"symbol {self.symbol!r} must be upper-case letters/digits")
        if not self.start_price > 0:
            problems.append(f"{self.symbol}: start_price must be > 0")
        for name in ("price_decimals", "qty_decimals"):
            value = getattr(self, name)
            if not 1 <= value <= 8:
                problems.append(f"{self.symbol}: {name} must be 1..8, got {value}")
        if not self.weight > 0 or not self.notional > 0:
            problems.append(f"{self.symbol}: weight and notional must be > 0")
        if self.first_trade_id < 0 or self.first_agg_id < 0:
            problems.append(f"{self.symbol}: ids must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))


def default_symbol_spec(symbol: str, market: str = "spot") -> SymbolSpec:
    """Return plausible defaults for a symbol (BTC ~60000, ETH ~3000, others 100)."""
    symbol = symbol.upper()
    known = _KNOWN.get((market, symbol))
    if known is not None:
        price, trade_id, agg_id = known
    else:
        # Stable per name, so a symbol keeps its ids across runs and seeds.
        crc = zlib.crc32(symbol.encode())
        price, trade_id, agg_id = (
            100.0,
            200_000_000 + crc % 700_000_000,
            90_000_000 + crc % 400_000_000,
        )
    return SymbolSpec(
        symbol=symbol,
        start_price=price,
        beta=_BETAS.get(symbol, 1.0),
        price_decimals=2,
        qty_decimals=5 if market == "spot" else 3,
        first_trade_id=trade_id,
        first_agg_id=agg_id,
        notional=_NOTIONALS.get(symbol, 1000.0),
    )


@dataclass(frozen=True, slots=True)
class MarketModel:
    """Parameters of the synthetic market; the first symbol is the pairs' base leg."""

    symbols: tuple[SymbolSpec, ...]
    rate: float = 20.0
    """Taker orders (aggTrades) per simulated second, all symbols together."""
    seed: int = 0
    factor_vol: float = 3e-4
    """Common log-price volatility per sqrt(second)."""
    spread_vol: float = 2e-3
    """Stationary standard deviation of each OU spread (log units)."""
    half_life_s: float = 20.0
    first_shift_s: float = 45.0
    shift_interval_s: float = 90.0
    """Mean gap between later regime shifts (exponential, at least a third of it)."""
    shift_size: float = 5.0
    """Jump of the spread mean, in stationary standard deviations (random sign)."""
    fills_mean: float = 1.4
    """Mean number of fills (trades) per aggTrade; 1.0 gives one fill each."""

    def __post_init__(self) -> None:
        problems = []
        if not self.symbols:
            problems.append("at least one symbol is required")
        names = [s.symbol for s in self.symbols]
        if len(set(names)) != len(names):
            problems.append(f"duplicate symbols in {names}")
        if not self.rate > 0:
            problems.append("rate must be > 0")
        if self.factor_vol < 0 or self.spread_vol < 0:
            problems.append("volatilities must be >= 0")
        if not self.half_life_s > 0 or not self.shift_interval_s > 0:
            problems.append("half_life_s and shift_interval_s must be > 0")
        if not self.fills_mean >= 1.0:
            problems.append("fills_mean must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def kappa(self) -> float:
        """Return the OU mean-reversion speed per second."""
        return math.log(2.0) / self.half_life_s


@dataclass(frozen=True, slots=True)
class TradeBlock:
    """A block of consecutive taker orders (events) and their fills, as arrays."""

    t_s: FloatArray
    """Simulated time of each event, seconds since the market started."""
    time_ms: Int64Array
    """Trade time ``T`` of each event, epoch ms."""
    symbol: Int64Array
    """Index into ``MarketModel.symbols``."""
    price_ticks: Int64Array
    qty_lots: Int64Array
    """Total quantity of the event (sum of its fills), in lots."""
    buyer_is_maker: BoolArray
    agg_id: Int64Array
    first_id: Int64Array
    last_id: Int64Array
    fill_event: Int64Array
    """For each fill: index of its event in this block (non-decreasing)."""
    fill_trade_id: Int64Array
    fill_qty_lots: Int64Array
    spread: FloatArray
    """OU state ``X`` of every symbol at each event, shape (events, symbols); 0 for the base."""
    spread_mean: FloatArray
    """Regime mean ``mu`` of every symbol at each event, same shape."""
    log_mid: FloatArray
    """Log mid price of every symbol at each event, same shape."""

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


@dataclass(slots=True)
class _State:
    t: float = 0.0
    factor: float = 0.0
    deviation: FloatArray = field(default_factory=lambda: np.zeros(0))
    mean: FloatArray = field(default_factory=lambda: np.zeros(0))
    next_shift: float = 0.0
    next_trade_id: Int64Array = field(default_factory=lambda: np.zeros(0, np.int64))
    next_agg_id: Int64Array = field(default_factory=lambda: np.zeros(0, np.int64))


class SyntheticMarket:
    """Stateful generator of the synthetic tape; ``generate`` continues where it stopped."""

    def __init__(self, model: MarketModel, start_ms: int) -> None:
        self.model = model
        self.start_ms = start_ms
        m = len(model.symbols)
        # One generator per drawn quantity: consuming each sequentially makes the tape
        # independent of how it is cut into blocks (paced and max-speed runs agree).
        seeds = np.random.SeedSequence(model.seed).spawn(len(_STREAMS))
        self._rng = {
            name: np.random.default_rng(s) for name, s in zip(_STREAMS, seeds, strict=True)
        }
        self._log_p0 = np.log(np.array([s.start_price for s in model.symbols]))
        self._beta = np.array([s.beta for s in model.symbols])
        self._has_spread = np.arange(m) > 0
        weights = np.array([s.weight for s in model.symbols])
        self._cum_weight = np.cumsum(weights / weights.sum())
        self._tick = 10.0 ** -np.array([s.price_decimals for s in model.symbols], dtype=np.float64)
        self._lot = 10.0 ** -np.array([s.qty_decimals for s in model.symbols], dtype=np.float64)
        self._notional = np.array([s.notional for s in model.symbols])
        self._state = _State(
            deviation=np.zeros(m),
            mean=np.zeros(m),
            next_shift=model.first_shift_s,
            next_trade_id=np.array([s.first_trade_id for s in model.symbols], np.int64),
            next_agg_id=np.array([s.first_agg_id for s in model.symbols], np.int64),
        )
        self.shift_times: list[float] = []
        """Simulated times (s) of the regime shifts generated so far."""

    @property
    def now_s(self) -> float:
        """Return the simulated time of the last generated event."""
        return self._state.t

    def generate(self, n: int) -> TradeBlock:
        """Generate the next ``n`` taker orders."""
        if n <= 0:
            raise ValueError("n must be > 0")
        model, st, rng = self.model, self._state, self._rng
        m = len(model.symbols)
        dt = rng["dt"].exponential(1.0 / model.rate, n)
        t = st.t + np.cumsum(dt)
        shocks = rng["factor"].standard_normal(n)
        factor = st.factor + np.cumsum(model.factor_vol * np.sqrt(dt) * shocks)
        eps = rng["spread"].standard_normal((n, m))
        deviation, mean = self._spreads(t, dt, eps)
        spread = (mean + deviation) * self._has_spread
        log_mid = self._log_p0 + np.outer(factor, self._beta) + spread

        symbol = np.searchsorted(self._cum_weight, rng["symbol"].random(n), side="right").astype(
            np.int64
        )
        symbol = np.minimum(symbol, m - 1)
        maker = rng["side"].random(n) < 0.5
        mid = np.exp(log_mid[np.arange(n), symbol])
        in_ticks = mid / self._tick[symbol]
        # Sells (buyer is maker) print on the bid, buys on the ask: one-tick quoted spread.
        price_ticks = np.where(maker, np.floor(in_ticks), np.ceil(in_ticks)).astype(np.int64)
        price_ticks = np.maximum(price_ticks, 1)

        fills = rng["fills"].geometric(1.0 / model.fills_mean, n).astype(np.int64)
        fill_event = np.repeat(np.arange(n, dtype=np.int64), fills)
        n_fills = int(fill_event.shape[0])
        fill_symbol = symbol[fill_event]
        quote = self._notional[fill_symbol] * np.exp(
            0.9 * rng["qty"].standard_normal(n_fills) - 0.4
        )
        lots = np.rint(quote / mid[fill_event] / self._lot[fill_symbol]).astype(np.int64)
        fill_qty = np.maximum(lots, 1)
        starts = np.concatenate(([0], np.cumsum(fills)[:-1])).astype(np.int64)
        qty_lots = np.add.reduceat(fill_qty, starts).astype(np.int64)

        fill_trade_id = np.empty(n_fills, np.int64)
        agg_id = np.empty(n, np.int64)
        for j in range(m):
            fmask = fill_symbol == j
            fill_trade_id[fmask] = st.next_trade_id[j] + np.arange(int(fmask.sum()), dtype=np.int64)
            st.next_trade_id[j] += int(fmask.sum())
            emask = symbol == j
            agg_id[emask] = st.next_agg_id[j] + np.arange(int(emask.sum()), dtype=np.int64)
            st.next_agg_id[j] += int(emask.sum())
        first_id = fill_trade_id[starts]
        last_id = first_id + fills - 1

        st.t = float(t[-1])
        st.factor = float(factor[-1])
        time_ms = self.start_ms + np.floor(t * 1000.0).astype(np.int64)
        return TradeBlock(
            t_s=t,
            time_ms=time_ms,
            symbol=symbol,
            price_ticks=price_ticks,
            qty_lots=qty_lots,
            buyer_is_maker=maker,
            agg_id=agg_id,
            first_id=first_id,
            last_id=last_id,
            fill_event=fill_event,
            fill_trade_id=fill_trade_id,
            fill_qty_lots=fill_qty,
            spread=spread,
            spread_mean=mean * self._has_spread,
            log_mid=log_mid,
        )

    def _spreads(
        self, t: FloatArray, dt: FloatArray, eps: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Return the OU deviations and regime means at the event times ``t``."""
        model, st = self.model, self._state
        n, m = eps.shape
        kappa, vol = model.kappa, model.spread_vol
        decay = np.exp(-kappa * dt)
        # Exact OU transition for uneven steps: D_k = a_k D_{k-1} + b_k eps_k.
        innovation = vol * np.sqrt(-np.expm1(-2.0 * kappa * dt))[:, None] * eps
        mean = np.empty((n, m))
        current = st.mean.copy()
        row = 0
        while row < n:
            # Regime shifts apply at the first event at or after the shift time.
            stop = int(np.searchsorted(t, st.next_shift, side="left"))
            if stop >= n:
                mean[row:] = current
                break
            mean[row:stop] = current
            step = model.shift_size * vol
            jump = self._rng["shift"].choice([-1.0, 1.0], m) * step * self._has_spread
            # Keep regime means within +-2 steps so prices do not wander off over hours.
            jump = np.where(np.abs(current + jump) > 2.0 * step + 1e-12, -jump, jump)
            self.shift_times.append(st.next_shift)
            current = current + jump
            # X is continuous, so its deviation from the new mean jumps by -jump.
            innovation[stop] -= decay[stop] * jump
            gap = self._rng["shift"].exponential(model.shift_interval_s * 2.0 / 3.0)
            st.next_shift += model.shift_interval_s / 3.0 + gap
            row = stop
        st.mean = current

        deviation = np.empty((n, m))
        previous = st.deviation
        start = 0
        elapsed = kappa * (t - (t[0] - dt[0]))
        while start < n:
            base = elapsed[start - 1] if start else 0.0
            stop = int(np.searchsorted(elapsed, base + _MAX_KAPPA_SPAN, side="right"))
            stop = max(stop, start + 1)
            # Solve the linear recursion in closed form: D_k = A_k (D_0 + sum u_j / A_j).
            growth = np.exp(-(elapsed[start:stop] - base))[:, None]
            chunk = growth * (previous + np.cumsum(innovation[start:stop] / growth, axis=0))
            deviation[start:stop] = chunk
            previous = chunk[-1]
            start = stop
        st.deviation = previous.copy()
        return deviation, mean
