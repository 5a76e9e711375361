"""MQTT topics and payloads: pure functions, checked against the JSON Schemas of docs/mqtt.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pairwatch.config.pairs import PairSettings
from pairwatch.daemon.alert_rows import alert_event_payload, notice_payload
from pairwatch.events import AlertEvent, Bar, PairSnapshot, SymbolSnapshot
from pairwatch.notifiers.mqtt_format import (
    Series,
    alert_payload,
    alert_topic,
    analytics_topic,
    bar_payload,
    bar_topic,
    check_topic,
    configured_series,
    discovery_config,
    discovery_messages,
    discovery_topic,
    discovery_topics,
    iso_utc,
    pair_payload,
    selected_pairs,
    snapshot_topics,
    status_topic,
    symbol_payload,
    symbol_topic,
)

T0 = 1_700_000_000_123
DOC = Path(__file__).resolve().parents[3] / "docs" / "mqtt.md"


def schemas() -> dict[str, dict[str, Any]]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- schema: (\w+) -->\s*```json\n(.*?)```", text, re.DOTALL)
    return {name: json.loads(body) for name, body in found}


def check(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Return where ``value`` breaks ``schema`` (the JSON Schema subset docs/mqtt.md uses)."""
    problems: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        is_a = {
            "object": isinstance(value, dict), "array": isinstance(value, list),
            "string": isinstance(value, str), "boolean": isinstance(value, bool),
            "null": value is None,
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
        }  # fmt: skip
        if not any(is_a[k] for k in kinds):
            return [f"{path}: {value!r} is not {kinds}"]
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        problems.append(f"{path}: {value!r} < {schema['minimum']}")
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    if (
        schema.get("format") == "date-time"
        and isinstance(value, str)
        and not re.fullmatch(iso, value)
    ):
        problems.append(f"{path}: {value!r} is not an ISO 8601 UTC time")
    if isinstance(value, dict):
        problems += [f"{path}: no {k!r}" for k in schema.get("required", ()) if k not in value]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                problems += check(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                problems += check(item, extra, f"{path}.{key}")
            elif extra is False:
                problems.append(f"{path}: unexpected {key!r}")
    return problems


def documented(value: dict[str, Any], schema: dict[str, Any], path: str = "$") -> list[str]:
    """Return the fields of ``value`` that the schema does not list (nested objects too)."""
    properties = schema.get("properties")
    if properties is None:
        return []
    missing = [f"{path}.{key}" for key in value if key not in properties]
    for key, item in value.items():
        if isinstance(item, dict) and key in properties:
            missing += documented(item, properties[key], f"{path}.{key}")
    return missing


def snapshot(**metrics: float) -> PairSnapshot:
    return PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 30, T0, metrics, adf_at=T0 - 60_000)


def event(**changes: Any) -> AlertEvent:
    fields: dict[str, Any] = {
        "rule": "z_high", "target": "ETHUSDT/BTCUSDT", "timeframe": "1m", "window": 30,
        "kind": "firing", "at": T0, "severity": "warning", "metric": "zscore", "value": 2.41,
        "threshold": 2.0, "message": "z = 2.41", "labels": {"desk": "crypto"}, "notify": True,
        "values": {"zscore": 2.41, "hedge_ratio": math.nan},
    }  # fmt: skip
    return AlertEvent(**(fields | changes))


def bar(vwap: float = 10.2) -> Bar:
    return Bar("ETHUSDT", "1m", T0, 10.0, 11.0, 9.0, 10.5, 2.0, 21.0, vwap, 7, 1.0, filled=False)


def test_topics_follow_the_documented_layout() -> None:
    assert status_topic("pairwatch/v1") == "pairwatch/v1/status"
    assert (
        analytics_topic("pairwatch/v1", "ETHUSDT", "BTCUSDT", "1m", 30)
        == "pairwatch/v1/analytics/ETHUSDT-BTCUSDT/1m/30"
    )
    assert symbol_topic("p", "ETHUSDT", "5m", 100) == "p/symbols/ETHUSDT/5m/100"
    assert bar_topic("p", "BTCUSDT", "1s") == "p/bars/BTCUSDT/1s"


def test_alerts_go_to_the_rule_topic_notices_to_notice_and_a_route_topic_wins() -> None:
    alert = alert_event_payload(event())
    assert alert_topic("p", alert, {}) == "p/alerts/z_high"
    assert alert_topic("p", notice_payload("t", "x"), {}) == "p/alerts/_notice"
    assert alert_topic("p", alert, {"topic": "desk/alerts/ethbtc"}) == "desk/alerts/ethbtc"


@pytest.mark.parametrize("topic", ["", "desk/#", "desk/+/x", "a\x00b", "x" * 65_536])
def test_a_topic_that_cannot_be_published_to_is_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="Invalid MQTT topic"):
        check_topic(topic)


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "1970-01-01T00:00:00.000Z"), (T0, "2023-11-14T22:13:20.123Z"),
     (1_763_003_580_000, "2025-11-13T03:13:00.000Z")],
)  # fmt: skip
def test_times_are_iso_utc_with_milliseconds(ms: int, text: str) -> None:
    assert iso_utc(ms) == text


def test_a_pair_snapshot_payload_has_every_metric_with_nan_as_null() -> None:
    payload = json.loads(pair_payload(snapshot(zscore=2.41, half_life=math.nan, spread=math.inf)))
    assert payload == {
        "pair": "ETHUSDT/BTCUSDT", "y": "ETHUSDT", "x": "BTCUSDT", "timeframe": "1m",
        "window": 30, "ts": T0, "time": "2023-11-14T22:13:20.123Z",
        "metrics": {"zscore": 2.41, "half_life": None, "spread": None},
        "adf_at": T0 - 60_000, "adf_time": "2023-11-14T22:12:20.123Z",
    }  # fmt: skip


def test_symbol_and_bar_payloads() -> None:
    symbol = SymbolSnapshot("ETHUSDT", "1m", 30, T0, {"volatility": 0.4, "vwap": math.nan})
    assert json.loads(symbol_payload(symbol))["metrics"] == {"volatility": 0.4, "vwap": None}
    payload = json.loads(bar_payload(bar(vwap=math.nan)))
    assert (payload["ts"], payload["vwap"], payload["trades"], payload["filled"]) == (
        T0, None, 7, False,
    )  # fmt: skip


def test_an_alert_payload_carries_the_key_and_the_event_with_its_time() -> None:
    e = event(seq=2)
    payload = json.loads(alert_payload(alert_event_payload(e), e.key, T0 + 5))
    assert payload["key"] == e.key == payload["event"]["key"]
    assert e.key.endswith("#2")
    assert payload["event"]["time"] == "2023-11-14T22:13:20.123Z"
    assert payload["event"]["values"] == {"zscore": 2.41}
    assert payload["event"]["seq"] == 2


def test_a_notice_payload_gets_the_time_it_was_stored() -> None:
    payload = json.loads(alert_payload(notice_payload("reload", "bad", "critical"), "n|1", T0))
    assert payload == {
        "type": "notice", "key": "n|1", "title": "reload", "text": "bad",
        "severity": "critical", "at": T0, "time": "2023-11-14T22:13:20.123Z",
    }  # fmt: skip


def test_payloads_match_the_documented_schemas_and_every_field_is_documented() -> None:
    found = schemas()
    assert sorted(found) == ["alert", "analytics", "bar", "notice", "symbol"]
    e = event()
    cases = {
        "analytics": pair_payload(snapshot(zscore=1.0, hedge_ratio=math.nan)),
        "symbol": symbol_payload(SymbolSnapshot("BTCUSDT", "1m", 30, T0, {"vwap": 1.0})),
        "bar": bar_payload(bar(vwap=math.nan)),
        "alert": alert_payload(alert_event_payload(e), e.key, T0),
        "notice": alert_payload(notice_payload("t", "x"), "k", T0),
    }
    for name, raw in cases.items():
        value = json.loads(raw)
        assert check(value, found[name]) == [], name
        assert documented(value, found[name]) == [], name
    thin = json.loads(alert_payload(alert_event_payload(event(value=math.nan)), e.key, T0))
    assert thin["event"]["value"] is None
    assert check(thin, found["alert"]) == []
    assert check({"type": "alert", "key": 1, "event": {}}, found["alert"]) != []


@given(st.dictionaries(st.sampled_from(["zscore", "spread", "half_life"]), st.floats()))
def test_any_metric_values_give_strict_json(metrics: dict[str, float]) -> None:
    payload = json.loads(pair_payload(snapshot(**metrics)), parse_constant=_refuse)
    for name, value in metrics.items():
        expected = value if math.isfinite(value) else None
        assert payload["metrics"][name] == expected


def _refuse(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")


def test_configured_series_expand_pairs_timeframes_and_windows_in_settings_order() -> None:
    pairs = [
        PairSettings(y="ETHUSDT", x="BTCUSDT", windows=(30, 100)),
        PairSettings(y="SOLUSDT", x="BTCUSDT", timeframes=("5m",), windows=(50,)),
    ]
    assert configured_series(pairs, ["1m", "5m"]) == [
        Series("ETHUSDT", "BTCUSDT", "1m", 30), Series("ETHUSDT", "BTCUSDT", "1m", 100),
        Series("ETHUSDT", "BTCUSDT", "5m", 30), Series("ETHUSDT", "BTCUSDT", "5m", 100),
        Series("SOLUSDT", "BTCUSDT", "5m", 50),
    ]  # fmt: skip
    assert configured_series(pairs, ["1m"], only=[" solusdt/btcusdt "]) == [
        Series("SOLUSDT", "BTCUSDT", "5m", 50)
    ]


def test_selected_pairs_are_normalised_and_empty_means_every_pair() -> None:
    assert selected_pairs([]) is None
    assert selected_pairs(["ethusdt/btcusdt", "ETHUSDT/BTCUSDT"]) == {("ETHUSDT", "BTCUSDT")}
    with pytest.raises(ValueError, match="Y/X"):
        selected_pairs(["ETHUSDT-BTCUSDT"])


def test_series_round_trip_through_json() -> None:
    series = Series("ETHUSDT", "BTCUSDT", "1m", 30)
    assert Series.from_json(json.loads(json.dumps(series.to_json()))) == series


def test_a_discovery_config_points_at_the_analytics_topic_and_the_status() -> None:
    series = Series("ETHUSDT", "BTCUSDT", "1m", 30)
    assert (
        discovery_topic("homeassistant", series, "hedge_ratio")
        == "homeassistant/sensor/pairwatch_ethusdt_btcusdt_1m_30_hedge_ratio/config"
    )
    config = json.loads(discovery_config(series, "zscore", "pairwatch/v1", "9.9"))
    assert config["state_topic"] == "pairwatch/v1/analytics/ETHUSDT-BTCUSDT/1m/30"
    assert config["value_template"] == "{{ value_json.metrics.zscore }}"
    assert config["availability_topic"] == "pairwatch/v1/status"
    assert config["unique_id"] == "pairwatch_ethusdt_btcusdt_1m_30_zscore"
    assert config["device"]["identifiers"] == ["pairwatch_ethusdt_btcusdt"]
    assert config["device"]["sw_version"] == "9.9"


def test_an_object_id_keeps_only_letters_digits_dash_and_underscore() -> None:
    assert Series("A1", "B2", "1m.x", 5).object_id("zscore") == "pairwatch_a1_b2_1m_x_5_zscore"


def test_discovery_removes_only_the_series_that_are_gone() -> None:
    kept, gone = Series("ETHUSDT", "BTCUSDT", "1m", 30), Series("SOLUSDT", "BTCUSDT", "1m", 30)
    configs, removals = discovery_messages(
        [kept], [kept, gone, gone], prefix="p", discovery_prefix="ha", version="1"
    )
    assert sorted(configs) == [
        f"ha/sensor/pairwatch_ethusdt_btcusdt_1m_30_{m}/config"
        for m in ("correlation", "hedge_ratio", "zscore")
    ]
    assert removals == [
        f"ha/sensor/pairwatch_solusdt_btcusdt_1m_30_{m}/config"
        for m in ("zscore", "hedge_ratio", "correlation")
    ]
    assert discovery_messages([], [], prefix="p", discovery_prefix="ha", version="1") == ({}, [])


@pytest.mark.parametrize(
    ("heading", "schema"),
    [("Pair snapshot", "analytics"), ("Symbol snapshot", "symbol"), ("Bar", "bar"),
     ("Alert", "alert"), ("Notice", "notice")],
)  # fmt: skip
def test_the_documented_examples_match_their_schemas(heading: str, schema: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### {heading}\b.*?```json\n(.*?)```", text, re.DOTALL | re.MULTILINE)
    assert match is not None
    example = json.loads(match.group(1))
    assert check(example, schemas()[schema]) == []
    assert documented(example, schemas()[schema]) == []


def test_snapshot_topics_are_those_of_the_pairs_and_their_legs_mqtt_pairs_keeps() -> None:
    series = [Series("ETHUSDT", "BTCUSDT", "1m", 30), Series("SOLUSDT", "BTCUSDT", "1m", 50)]
    assert sorted(snapshot_topics("p", series)) == [
        "p/analytics/ETHUSDT-BTCUSDT/1m/30", "p/analytics/SOLUSDT-BTCUSDT/1m/50",
        "p/symbols/BTCUSDT/1m/30", "p/symbols/BTCUSDT/1m/50", "p/symbols/ETHUSDT/1m/30",
        "p/symbols/SOLUSDT/1m/50",
    ]  # fmt: skip
    # A leg keeps the windows of every pair it is in, as the engine computes them.
    assert sorted(snapshot_topics("p", series, ["ethusdt/btcusdt"])) == [
        "p/analytics/ETHUSDT-BTCUSDT/1m/30", "p/symbols/BTCUSDT/1m/30",
        "p/symbols/BTCUSDT/1m/50", "p/symbols/ETHUSDT/1m/30",
    ]  # fmt: skip


def test_discovery_topics_name_every_sensor_of_every_series() -> None:
    series = [Series("ETHUSDT", "BTCUSDT", "1m", 30)]
    assert sorted(discovery_topics("ha", series)) == [
        f"ha/sensor/pairwatch_ethusdt_btcusdt_1m_30_{metric}/config"
        for metric in ("correlation", "hedge_ratio", "zscore")
    ]
