"""MQTT topics and JSON payloads: pure functions of pairwatch's events (no transport here).

Every topic starts with the configured prefix (``pairwatch/v1``); docs/mqtt.md lists them
with their QoS and retain flags and a JSON Schema of each payload. Payloads are compact
JSON: a value that is not a finite number is ``null``, and every time is given twice, as
epoch milliseconds (``ts``, ``at``) and as ISO 8601 UTC text (``time``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from pairwatch.config.pairs import PairSettings
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot
from pairwatch.series import SeriesKey

ONLINE: Final = "online"
OFFLINE: Final = "offline"
NOTICE_TOPIC: Final = "_notice"
"""Notices go to ``<prefix>/alerts/_notice``: rule names start with a letter or digit."""

HA_METRICS: Final[Mapping[str, tuple[str, str]]] = {
    "zscore": ("z-score", "mdi:sigma"),
    "hedge_ratio": ("hedge ratio", "mdi:scale-balance"),
    "correlation": ("correlation", "mdi:link-variant"),
}
"""Metrics announced to Home Assistant: metric → (sensor name, icon)."""

_OBJECT_ID_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")
_TOPIC_FORBIDDEN = re.compile(r"[#+\x00]")
_MAX_TOPIC_BYTES = 65_535
_encode = msgspec.json.Encoder().encode  # NaN and ±inf are written as null


def status_topic(prefix: str) -> str:
    """Return the retained online/offline topic (also the last will)."""
    return f"{prefix}/status"


def analytics_topic(prefix: str, y: str, x: str, timeframe: str, window: int) -> str:
    """Return the retained snapshot topic of one pair series: ``…/analytics/Y-X/tf/window``."""
    return f"{prefix}/analytics/{y}-{x}/{timeframe}/{window}"


def symbol_topic(prefix: str, symbol: str, timeframe: str, window: int) -> str:
    """Return the retained snapshot topic of one symbol series: ``…/symbols/S/tf/window``."""
    return f"{prefix}/symbols/{symbol}/{timeframe}/{window}"


def bar_topic(prefix: str, symbol: str, timeframe: str) -> str:
    """Return the topic of a symbol's closed bars: ``…/bars/SYMBOL/tf``."""
    return f"{prefix}/bars/{symbol}/{timeframe}"


def check_topic(topic: str) -> str:
    """Return ``topic`` if it can be published to; raise ``ValueError`` saying why not."""
    if not topic or _TOPIC_FORBIDDEN.search(topic):
        raise ValueError(f"Invalid MQTT topic {topic!r}: empty, or has '#', '+' or NUL")
    if len(topic.encode()) > _MAX_TOPIC_BYTES:
        raise ValueError(f"Invalid MQTT topic: longer than {_MAX_TOPIC_BYTES} bytes")
    return topic


def alert_topic(prefix: str, payload: Mapping[str, Any], route: Mapping[str, str]) -> str:
    """Return where an outbox payload goes: the route's topic, else ``…/alerts/<rule>``.

    Notices (no rule) go to ``…/alerts/_notice``. Raises ``ValueError`` for a route topic
    that cannot be published to (a wildcard, empty).
    """
    override = route.get("topic")
    if override is not None:
        return check_topic(override)
    if payload.get("type") == "alert":
        return check_topic(f"{prefix}/alerts/{payload['event']['rule']}")
    return f"{prefix}/alerts/{NOTICE_TOPIC}"


@functools.lru_cache(maxsize=4096)  # the snapshots of one bar share their time
def iso_utc(ms: int) -> str:
    """Return epoch milliseconds as ISO 8601 UTC text: ``2023-11-14T22:13:20.000Z``."""
    seconds, millis = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def pair_payload(snapshot: PairSnapshot) -> bytes:
    """Return the JSON of a pair snapshot (every metric; NaN as null)."""
    adf_at = snapshot.adf_at
    return _encode(
        {
            "pair": f"{snapshot.y}/{snapshot.x}",
            "y": snapshot.y,
            "x": snapshot.x,
            "timeframe": snapshot.timeframe,
            "window": snapshot.window,
            "ts": snapshot.ts,
            "time": iso_utc(snapshot.ts),
            "metrics": snapshot.metrics,
            "adf_at": adf_at,
            "adf_time": None if adf_at is None else iso_utc(adf_at),
        }
    )


def symbol_payload(snapshot: SymbolSnapshot) -> bytes:
    """Return the JSON of a symbol snapshot (NaN as null)."""
    return _encode(
        {
            "symbol": snapshot.symbol,
            "timeframe": snapshot.timeframe,
            "window": snapshot.window,
            "ts": snapshot.ts,
            "time": iso_utc(snapshot.ts),
            "metrics": snapshot.metrics,
        }
    )


def bar_payload(bar: Bar) -> bytes:
    """Return the JSON of a closed bar (``ts`` is its open time; NaN vwap as null)."""
    return _encode(
        {
            "symbol": bar.symbol,
            "timeframe": bar.timeframe,
            "ts": bar.ts,
            "time": iso_utc(bar.ts),
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
            "quote_volume": bar.quote_volume,
            "vwap": bar.vwap,
            "trades": bar.trades,
            "taker_buy_volume": bar.taker_buy_volume,
            "filled": bar.filled,
        }
    )


def alert_payload(payload: Mapping[str, Any], key: str, created_at: int) -> bytes:
    """Return the JSON of an outbox payload (alert or notice) with its idempotency key.

    An alert keeps the outbox's event and adds ``time`` (its ``at`` as ISO text, and
    ``since_time`` for ``since``); a notice gets ``at``/``time`` from when it was stored.
    """
    if payload.get("type") == "alert":
        event = dict(payload["event"])
        event["time"] = iso_utc(int(event["at"]))
        if "since" in event:
            since = event["since"]
            event["since_time"] = None if since is None else iso_utc(int(since))
        return _encode({"type": "alert", "key": key, "event": event})
    return _encode(
        {
            "type": "notice",
            "key": key,
            "title": payload.get("title", ""),
            "text": payload.get("text", ""),
            "severity": payload.get("severity", "warning"),
            "at": created_at,
            "time": iso_utc(created_at),
        }
    )


@dataclass(frozen=True, slots=True, order=True)
class Series(SeriesKey):
    """One analysed pair series as an analytics topic holds it, with its Home Assistant ids."""

    def object_id(self, metric: str) -> str:
        """Return the Home Assistant object id of one of its metrics."""
        raw = f"pairwatch_{self.y}_{self.x}_{self.timeframe}_{self.window}_{metric}"
        return _OBJECT_ID_FORBIDDEN.sub("_", raw.lower())

    def to_json(self) -> list[str | int]:
        """Return it as a JSON-ready list ``[y, x, timeframe, window]`` (for the daemon to keep)."""
        return [self.y, self.x, self.timeframe, self.window]

    @classmethod
    def from_json(cls, value: Sequence[str | int]) -> Series:
        """Return the series of a ``to_json`` list."""
        y, x, timeframe, window = value
        return cls(str(y), str(x), str(timeframe), int(window))


def selected_pairs(names: Iterable[str]) -> frozenset[tuple[str, str]] | None:
    """Return ``mqtt.pairs`` as (y, x) tuples, or ``None`` (every pair) when empty."""
    selected = set()
    for name in names:
        y, sep, x = name.strip().upper().partition("/")
        if not sep or not y or not x:
            raise ValueError(f"a pair is written Y/X, e.g. ETHUSDT/BTCUSDT, got {name!r}")
        selected.add((y.strip(), x.strip()))
    return frozenset(selected) if selected else None


def configured_series(
    pairs: Sequence[PairSettings], timeframes: Sequence[str], only: Collection[str] = ()
) -> list[Series]:
    """Return every configured pair × timeframe × window, in settings order.

    ``timeframes`` are ``bars.timeframes`` (a pair without its own list uses them all);
    ``only`` is ``mqtt.pairs`` (empty: every pair).
    """
    chosen = selected_pairs(only)
    return [
        Series(pair.y, pair.x, timeframe, window)
        for pair in pairs
        if chosen is None or (pair.y, pair.x) in chosen
        for timeframe in (pair.timeframes or timeframes)
        for window in pair.windows
    ]


def discovery_topic(discovery_prefix: str, series: Series, metric: str) -> str:
    """Return the retained config topic of one Home Assistant sensor."""
    return f"{discovery_prefix}/sensor/{series.object_id(metric)}/config"


def discovery_topics(discovery_prefix: str, series: Iterable[Series]) -> set[str]:
    """Return the retained config topics of every sensor of ``series``."""
    return {discovery_topic(discovery_prefix, s, metric) for s in series for metric in HA_METRICS}


def snapshot_topics(prefix: str, series: Iterable[Series], only: Collection[str] = ()) -> set[str]:
    """Return the retained snapshot topics (pairs and symbols) published for ``series``.

    ``series`` is every configured pair series, also those ``only`` (``mqtt.pairs``) leaves
    out: a leg's symbol windows are those of all its pairs, as in the engine. With ``only``,
    the pair topics of those pairs and the symbol topics of their legs, as
    ``MqttPublisher.on_snapshots`` filters them.
    """
    chosen = selected_pairs(only)
    legs = None if chosen is None else {symbol for pair in chosen for symbol in pair}
    topics = set()
    for s in series:
        if chosen is None or (s.y, s.x) in chosen:
            topics.add(analytics_topic(prefix, s.y, s.x, s.timeframe, s.window))
        for symbol in (s.y, s.x):
            if legs is None or symbol in legs:
                topics.add(symbol_topic(prefix, symbol, s.timeframe, s.window))
    return topics


def discovery_config(series: Series, metric: str, prefix: str, version: str) -> bytes:
    """Return the Home Assistant discovery config of one sensor (one metric of a series)."""
    label, icon = HA_METRICS[metric]
    pair_id = _OBJECT_ID_FORBIDDEN.sub("_", f"pairwatch_{series.y}_{series.x}".lower())
    return _encode(
        {
            "name": f"{series.timeframe} w{series.window} {label}",
            "unique_id": series.object_id(metric),
            "state_topic": analytics_topic(
                prefix, series.y, series.x, series.timeframe, series.window
            ),
            "value_template": f"{{{{ value_json.metrics.{metric} }}}}",
            "availability_topic": status_topic(prefix),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "state_class": "measurement",
            "suggested_display_precision": 4,
            "icon": icon,
            "device": {
                "identifiers": [pair_id],
                "name": f"pairwatch {series.pair}",
                "manufacturer": "pairwatch",
                "model": "pair analytics",
                "sw_version": version,
            },
            "origin": {"name": "pairwatch", "sw_version": version},
        }
    )


def discovery_messages(
    current: Sequence[Series],
    previous: Sequence[Series],
    *,
    prefix: str,
    discovery_prefix: str,
    version: str,
) -> tuple[dict[str, bytes], list[str]]:
    """Return (config topic → payload for ``current``, topics to clear for the removed).

    A series in ``previous`` and not in ``current`` has its sensors removed: an empty
    retained payload on their config topics deletes them in Home Assistant.
    """
    configs = {
        discovery_topic(discovery_prefix, s, metric): discovery_config(s, metric, prefix, version)
        for s in current
        for metric in HA_METRICS
    }
    keep = set(current)
    removals = [
        discovery_topic(discovery_prefix, s, metric)
        for s in dict.fromkeys(previous)
        if s not in keep
        for metric in HA_METRICS
    ]
    return configs, removals
