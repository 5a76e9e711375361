"""``pairwatch rules test``: run rules over stored analytics and list what would have happened.

The stored ``analytics`` and ``symbol_analytics`` rows (from the daemon or a replay) are
turned back into snapshots, merged in time order and fed to the same ``RuleEngine`` the
daemon uses, so a backtest shows exactly the transitions live evaluation would have made.
Rules on health metrics alone have no history and are left out (and said so).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from pairwatch.analytics.rule_engine import RuleEngine
from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.config.rules import Rule, RulesFile
from pairwatch.config.settings import Settings
from pairwatch.daemon import store_reads
from pairwatch.events import AlertEvent, PairSnapshot, SymbolSnapshot

_META = ("ts", "thin", "adf_at")


@dataclass(slots=True)
class RuleSummary:
    """How one rule behaved over the backtest."""

    fires: int = 0
    firing_ms: int = 0
    """Total time firing (an alert still firing at the end counts until the last bar)."""

    @property
    def mean_firing_s(self) -> float:
        """Return the mean time an alert spent firing, in seconds (NaN: never fired)."""
        return self.firing_ms / self.fires / 1000 if self.fires else math.nan


@dataclass(slots=True)
class Backtest:
    """The transitions of a backtest and a summary per rule."""

    events: list[AlertEvent] = field(default_factory=list)
    summary: dict[str, RuleSummary] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Rules left out: they test health metrics only, which have no history."""
    evaluations: int = 0


def run_backtest(
    conn: sqlite3.Connection,
    rules: RulesFile,
    settings: Settings,
    *,
    from_ts: int | None = None,
    to_ts: int | None = None,
) -> Backtest:
    """Evaluate ``rules`` over the stored snapshots with ``from_ts <= ts < to_ts``."""
    result = Backtest()
    usable = [r for r in rules.rules if r.needs_series]
    result.skipped = [r.name for r in rules.rules if not r.needs_series]
    engine = RuleEngine(
        usable, pairs=[p.name for p in settings.pairs], symbols=list(settings.feed.symbols)
    )
    snapshots = sorted(
        _snapshots(conn, engine, usable, from_ts, to_ts),
        key=lambda s: s.ts + parse_timeframe(s.timeframe),
    )
    firing_since: dict[tuple[str, str], int] = {}
    last_at: dict[tuple[str, str], int] = {}  # per rule × target: its last evaluation
    for r in usable:  # the summary in the file's order
        result.summary[r.name] = RuleSummary()
    series_rules: dict[tuple[str, str | None, int | None], list[str]] = {}
    for r, t in engine.targets():
        series_rules.setdefault((t, r.timeframe, r.window), []).append(r.name)
    for snapshot in snapshots:
        result.evaluations += 1
        if isinstance(snapshot, PairSnapshot):
            events = engine.on_pair_snapshots([snapshot])
        else:
            events = engine.on_symbol_snapshots([snapshot])
        at = snapshot.ts + parse_timeframe(snapshot.timeframe)
        target = snapshot.pair if isinstance(snapshot, PairSnapshot) else snapshot.symbol
        for name in series_rules.get((target, snapshot.timeframe, snapshot.window), ()):
            last_at[(name, target)] = at
        for event in events:
            result.events.append(event)
            summary = result.summary.setdefault(event.rule, RuleSummary())
            key = (event.rule, event.target)
            if event.kind == "firing":
                summary.fires += 1
                firing_since[key] = event.at
            elif event.kind == "resolved" and key in firing_since:
                summary.firing_ms += event.at - firing_since.pop(key)
    for key, since in firing_since.items():  # still firing at the end of its own series
        result.summary[key[0]].firing_ms += last_at[key] - since
    return result


def _snapshots(
    conn: sqlite3.Connection,
    engine: RuleEngine,
    rules: Sequence[Rule],
    from_ts: int | None,
    to_ts: int | None,
) -> Iterator[PairSnapshot | SymbolSnapshot]:
    kinds = {r.name: r.kind for r in rules}
    series = {(kinds[r.name], target, r.timeframe, r.window) for r, target in engine.targets()}
    for kind, target, timeframe, window in sorted(series, key=str):
        assert timeframe is not None
        assert window is not None
        if kind == "pair":
            y, _, x = target.partition("/")
            cols = store_reads.load_pair_analytics(conn, y, x, timeframe, window, from_ts, to_ts)
        else:
            cols = store_reads.load_symbol_analytics(
                conn, target, timeframe, window, from_ts, to_ts
            )
        metrics = [name for name in cols if name not in _META]
        values = np.column_stack([cols[m] for m in metrics]) if metrics else None
        for i, ts in enumerate(cols["ts"].tolist()):
            row = {} if values is None else dict(zip(metrics, values[i].tolist(), strict=True))
            if kind == "pair":
                thin = bool(cols["thin"][i])
                yield PairSnapshot(y, x, timeframe, window, int(ts), {} if thin else row,
                                   thin=thin)  # fmt: skip
            else:
                yield SymbolSnapshot(target, timeframe, window, int(ts), row)


def format_table(result: Backtest, *, limit: int | None = None) -> str:
    """Return the transitions as an aligned text table, then the summary per rule."""
    rows = [("time (UTC)", "rule", "target", "kind", "value", "message")]
    shown = [e for e in result.events if e.kind not in ("pending", "inactive")]
    for e in shown[:limit] if limit is not None else shown:
        when = datetime.fromtimestamp(e.at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append((when, e.rule, e.target, e.kind, f"{e.value:.4g}", e.message))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
             for r in rows]  # fmt: skip
    if limit is not None and len(shown) > limit:
        lines.append(f"… {len(shown) - limit} more transitions")
    lines.append("")
    lines.append(f"{'rule':<24}  {'fired':>5}  {'mean time firing':>16}")
    for name, s in result.summary.items():
        mean = "-" if not s.fires else f"{s.mean_firing_s:,.0f} s"
        lines.append(f"{name:<24}  {s.fires:>5}  {mean:>16}")
    lines.extend(f"{name}: not tested (health metrics have no history)" for name in result.skipped)
    return "\n".join(lines)
