"""The charts' pure parts: downsampling, breach runs, spans, what a drawing sends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairwatch.web.charts import (
    POINTS,
    ChartOptions,
    Charts,
    breaches,
    downsample,
    drawing,
    lines,
    merge_spans,
)

T0 = 1_723_161_255_000


def frame(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000
    z = rng.standard_normal(n) * 1.5
    std = np.full(n, 0.5)
    spread = rng.standard_normal(n).cumsum()
    out = pd.DataFrame(
        {
            "ts": ts,
            "hedge_ratio": rng.standard_normal(n),
            "intercept": 0.0,
            "spread": spread,
            "spread_std": std,
            "zscore": z,
            "correlation": rng.uniform(-1, 1, n),
            "kalman_beta": rng.standard_normal(n),
            "kalman_spread": spread * 2,
            "kalman_zscore": -z,
            "y_close": 100 + rng.standard_normal(n).cumsum(),
            "y_volume": rng.uniform(0, 5, n),
            "x_close": 50 + rng.standard_normal(n).cumsum(),
            "x_volume": rng.uniform(0, 5, n),
        }
    )
    out.insert(1, "time", ts.astype("datetime64[ms]"))
    return out


NO_ALERTS = pd.DataFrame(columns=["at", "value", "kind", "rule", "message"])


def test_short_series_are_sent_whole_without_their_nans() -> None:
    ts = np.arange(10, dtype=np.int64)
    v = np.array([1, np.nan, 3, 4, np.nan, 6, 7, 8, 9, 10], dtype=float)
    t, got = downsample(ts, v)
    assert t.tolist() == [0, 2, 3, 5, 6, 7, 8, 9]
    assert got.tolist() == [1, 3, 4, 6, 7, 8, 9, 10]


def test_long_series_keep_at_most_points_including_the_extremes_and_ends() -> None:
    n = 200_000
    ts = np.arange(n, dtype=np.int64)
    v = np.sin(ts / 5_000.0)
    v[123_456] = 50.0  # a spike must survive
    v[7] = -50.0
    t, got = downsample(ts, v)
    assert len(t) <= POINTS
    assert np.all(np.diff(t) > 0)
    assert t[0] == 0
    assert t[-1] == n - 1
    assert 50.0 in got
    assert -50.0 in got
    np.testing.assert_array_equal(got, v[t])


def test_breaches_are_the_runs_of_bars_at_or_beyond_the_threshold() -> None:
    ts = np.arange(10, dtype=np.int64) * 10
    z = np.array([0, 2.5, 3, 0, -2, -2.1, np.nan, 1, 2, 2])
    x0, x1 = breaches(ts, z, 2.0)
    # runs: bars 1-2 (end at bar 3's time), 4-5 (end at bar 6), 8-9 (to the last bar)
    assert x0.tolist() == [10, 40, 80]
    assert x1.tolist() == [30, 60, 90]
    assert breaches(ts, np.zeros(10), 2.0)[0].tolist() == []


def test_many_close_breaches_merge_into_at_most_about_points_strips() -> None:
    x0 = np.arange(0, 100_000, 10, dtype=np.int64)
    x1 = x0 + 5
    s0, s1 = merge_spans(x0, x1, span=100_000.0, most=100)
    assert len(s0) == 1  # gaps of 5 < 100,000 / 100
    assert (s0[0], s1[0]) == (0, 99_995)
    few0, _few1 = merge_spans(x0[:50], x1[:50], span=100_000.0, most=100)
    assert few0.tolist() == x0[:50].tolist()


def test_a_drawing_sends_every_line_downsampled_and_prices_normalised() -> None:
    f = frame(50_000)
    options = ChartOptions("ETHUSDT", "BTCUSDT", kalman=False, threshold=2.0)
    drawn = drawing(f, NO_ALERTS, options, None)
    assert len(drawn.lines) == len(lines(options))
    assert all(len(t) <= POINTS for t, _ in drawn.lines)
    (_t_y, y), (_t_x, x) = drawn.lines[0], drawn.lines[1]
    assert y[0] == pytest.approx(1.0)
    assert x[0] == pytest.approx(1.0)
    assert drawn.scale == {"ETHUSDT": f["y_close"][0], "BTCUSDT": f["x_close"][0]}
    # The spread bands: mean ± k·σ with mean = spread − z·σ.
    labels = [line.label for line in lines(options)]
    _, upper = drawn.lines[labels.index("+2σ")]
    mean = f["spread"] - f["zscore"] * 0.5
    assert set(np.round(upper, 9)) <= set(np.round(mean + 1.0, 9))


def test_kalman_switches_the_spread_and_z_lines_and_a_visible_range_narrows_them() -> None:
    f = frame(50_000)
    on = drawing(f, NO_ALERTS, ChartOptions("Y", "X", kalman=True), None)
    z_index = [line.figure for line in lines(ChartOptions())].index("zscore")
    t, z = on.lines[z_index]
    np.testing.assert_array_equal(z, -f["zscore"].to_numpy()[(t - T0) // 1_000])
    lo, hi = float(T0 + 10_000_000), float(T0 + 11_000_000)  # 1,000 bars visible
    zoomed = drawing(f, NO_ALERTS, ChartOptions("Y", "X"), (lo, hi))
    t, _ = zoomed.lines[z_index]
    margin = (hi - lo) * 0.1
    assert t[0] >= lo - margin - 1_000
    assert t[-1] <= hi + margin + 1_000
    assert len(t) == 1_202  # every bar from lo − margin − 1 bar to hi + margin: whole


def test_alert_markers_carry_their_colour_by_kind() -> None:
    alerts = pd.DataFrame(
        {"at": [T0, T0 + 5_000], "value": [2.5, 0.2], "kind": ["firing", "resolved"],
         "rule": ["z", "z"], "message": ["up", "down"]}
    )  # fmt: skip
    drawn = drawing(frame(10), alerts, ChartOptions(), None)
    assert drawn.markers["kind"] == ["firing", "resolved"]
    assert drawn.markers["color"] == ["#d62728", "#2ca02c"]
    assert drawn.markers["time"].tolist() == [T0, T0 + 5_000]


def test_appended_bars_are_streamed_onto_the_sources() -> None:
    charts = Charts(ChartOptions("Y", "X"))
    f = frame(100)
    charts.show(f.iloc[:90].reset_index(drop=True), NO_ALERTS, ChartOptions("Y", "X"))
    before = charts.point_counts()
    charts.append(f.iloc[90:].reset_index(drop=True))
    after = charts.point_counts()
    assert {k: after[k] - before[k] for k in after} == dict.fromkeys(after, 10)
    prices = charts._sources[0].data["v"]
    assert prices[-1] == pytest.approx(f["y_close"].iloc[99] / f["y_close"].iloc[0])


def test_appended_bars_are_joined_to_the_frame_only_when_it_is_read() -> None:
    charts = Charts(ChartOptions("Y", "X"))
    f = frame(100)
    charts.show(f.iloc[:80].reset_index(drop=True), NO_ALERTS, ChartOptions("Y", "X"))
    for lo in range(80, 100, 5):
        charts.append(f.iloc[lo : lo + 5].reset_index(drop=True))
    assert [len(part) for part in charts.parts()] == [80, 5, 5, 5, 5]  # not joined per bar
    assert (charts.rows, charts.first_ts, charts.last_ts) == (100, T0, T0 + 99_000)
    pd.testing.assert_frame_equal(charts.frame, f)
    assert [len(part) for part in charts.parts()] == [100]  # joined once, on reading


def test_a_breach_going_on_at_the_join_is_one_strip() -> None:
    charts = Charts(ChartOptions("Y", "X", threshold=2.0))
    f = frame(10)
    f["zscore"] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 0.0]
    charts.show(f.iloc[:7].reset_index(drop=True), NO_ALERTS, ChartOptions("Y", "X"))
    assert charts._breaches.data["x0"].tolist() == [T0 + 6_000]
    charts.append(f.iloc[7:].reset_index(drop=True))
    x0, x1 = charts._breaches.data["x0"], charts._breaches.data["x1"]
    # The shown strip [6 s, 6 s] and the streamed one [6 s, 9 s]: no gap at the join.
    assert list(x0) == [T0 + 6_000, T0 + 6_000]
    assert list(x1) == [T0 + 6_000, T0 + 9_000]


def test_alerts_of_a_live_poll_are_streamed_as_markers_even_without_new_bars() -> None:
    charts = Charts(ChartOptions("Y", "X"))
    charts.show(frame(10), NO_ALERTS, ChartOptions("Y", "X"))
    alert = pd.DataFrame(
        {"at": [T0 + 4_000], "value": [2.5], "kind": ["firing"], "rule": ["z"],
         "message": ["up"]}
    )  # fmt: skip
    charts.append(frame(0), alert)
    assert list(charts._markers.data["time"]) == [T0 + 4_000]
    assert list(charts._markers.data["rule"]) == ["z"]
    assert charts.rows == 10
    assert charts.alerts["rule"].tolist() == ["z"]


def test_with_kalman_the_bands_are_zero_and_plus_minus_k_root_s() -> None:
    f = frame(500)
    f["kalman_spread"] = np.linspace(-1.0, 1.0, 500)
    f["kalman_zscore"] = f["kalman_spread"] / 0.25  # √S = 0.25 throughout
    f.loc[10, "kalman_zscore"] = 0.0  # √S unknown: that point is not drawn
    options = ChartOptions("Y", "X", kalman=True, threshold=2.0)
    labels = [line.label for line in lines(options)]
    drawn = drawing(f, NO_ALERTS, options, None)
    _, mean = drawn.lines[labels.index("mean")]
    t, upper = drawn.lines[labels.index("+2σ")]
    _, lower = drawn.lines[labels.index("−2σ")]
    assert set(mean) == {0.0}
    np.testing.assert_allclose(upper, 0.5)
    np.testing.assert_allclose(lower, -0.5)
    assert len(t) == 499
    assert T0 + 10_000 not in t
