"""The web page in headless Chromium: charts, statistics, controls, exports, login, empty states.

The database is filled by replaying the real recorded Binance trades (ETHUSDT and BTCUSDT
spot, 2024-08-08; tests/data/real) on 1s and 1m bars, windows 30 and 120, for the pair and
its reverse. The page is served by ``serve_web`` as the daemon serves it (its own loop, in
a thread).
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from playwright.async_api import Page

from integration.test_replay_analytics import SPOT, replay
from pairwatch.config.web_settings import WebSettings
from pairwatch.daemon.writer import Writer
from pairwatch.events import AlertEvent
from pairwatch.web.page import NO_DATA
from pairwatch.web.server import WebServer, serve_web
from support.browser import (
    artifact,
    chromium,
    line_values,
    painted_canvases,
    select,
    wait_drawn,
)
from support.secrets import WEB_PASSWORD

TIMEFRAMES = {"1s": 1_000, "1m": 60_000}
PAIR = "ETHUSDT/BTCUSDT"
REVERSE = "BTCUSDT/ETHUSDT"


def query(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both orders of the pair on 1s and 1m bars, windows 30 and 120, and two alerts."""
    path = tmp_path_factory.mktemp("web") / "pairs.sqlite3"
    result = replay(
        *SPOT, "--db", path, "--timeframe", "1s", "--timeframe", "1m",
        "--pair", PAIR, "--pair", REVERSE, "--window", "30", "--window", "120",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Two alert transitions on real bars of the 1s, window-30 series, through the writer.
    (ts, z), (ts2, z2) = query(
        path,
        "SELECT ts, zscore FROM analytics WHERE y = 'ETHUSDT' AND timeframe = '1s' "
        "AND window = 30 AND zscore IS NOT NULL ORDER BY abs(zscore) DESC LIMIT 2",
    )
    writer = Writer(path)
    writer.start()
    try:
        for at, value, kind in ((ts, z, "firing"), (ts2, z2, "resolved")):
            event = AlertEvent(
                rule="z-wide", target=PAIR, timeframe="1s", window=30, kind=kind,
                at=int(at) + 1_000, severity="warning", metric="zscore", value=float(value),
                threshold=2.0, message=f"z {value:.2f}", values={"zscore": float(value)},
                labels={}, notify=False,
            )  # fmt: skip
            writer.put_alerts([(event, False)])
        writer.flush().result(30)
    finally:
        writer.close(10)
    return path


@contextlib.asynccontextmanager
async def served(db: Path, **settings: object) -> AsyncIterator[WebServer]:
    web = WebSettings(port=0, **settings)  # type: ignore[arg-type]
    async with serve_web(web, db, timeframes=TIMEFRAMES) as server:
        yield server


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page at ``url``, with every uncaught page error and failed request collected."""
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1400, "height": 1800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        await page.goto(url)
        yield page, errors


def series_rows(db: Path, y: str, x: str, timeframe: str, window: int) -> list[tuple[object, ...]]:
    return query(
        db,
        "SELECT ts, zscore, hedge_ratio FROM analytics WHERE y = ? AND x = ? AND timeframe = ? "
        "AND window = ? ORDER BY ts",
        y, x, timeframe, window,
    )  # fmt: skip


async def test_the_page_draws_every_chart_and_the_statistics_of_the_stored_series(
    db: Path,
) -> None:
    rows = series_rows(db, "ETHUSDT", "BTCUSDT", "1s", 30)
    async with served(db) as server, opened(server.url) as (page, errors):
        # The first pair in name order is shown first; then the one with the alerts.
        await page.get_by_text(f"{REVERSE} · 1s · window 30").first.wait_for()
        await select(page, "pw-pair", PAIR)
        await page.get_by_text(f"{PAIR} · 1s · window 30").first.wait_for()
        # The default range is the last 24 h of the series: all 346 bars of the recording.
        assert await wait_drawn(page, len(rows)) == len(rows)
        shown = await page.locator(".pw-shown").inner_text()
        assert shown.startswith(f"{PAIR} · 1s · window 30: {len(rows)} bars")
        # The browser holds exactly the stored z-scores (fewer than 2,000: no downsampling).
        z = await line_values(page, "pw-zscore-0")
        stored = [(ts, v) for ts, v, _ in rows if v is not None]
        assert z["t"] == [float(ts) for ts, _ in stored]  # type: ignore[misc]
        np.testing.assert_allclose(z["v"], [v for _, v in stored], rtol=1e-12)
        beta = await line_values(page, "pw-beta-0")
        assert len(beta["v"]) == sum(b is not None for *_, b in rows)
        # The statistics card shows the latest snapshot.
        last_z, last_beta = rows[-1][1], rows[-1][2]
        card = await page.locator(".pw-stats").inner_text()
        assert f"{last_beta:.4g}" in card
        assert f"{last_z:.4g}" in card
        verdict = await page.locator(".pw-verdict").inner_text()
        assert "stationa" in verdict or "no stationarity test yet" in verdict
        # The two alerts: markers on the z chart and rows of the table.
        markers = await page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('pw-chart-zscore')"
            ".renderers.find(r => r.data_source && r.data_source.data.kind)"
            ".data_source.data.kind)"
        )
        assert sorted(markers) == ["firing", "resolved"]
        # Each marker sits on the z-score line: at its bar's open time, at that bar's z.
        points = await page.evaluate(
            "() => { const d = Bokeh.documents[0].get_model_by_name('pw-chart-zscore')"
            ".renderers.find(r => r.data_source && r.data_source.data.kind).data_source.data;"
            " return [Array.from(d.time), Array.from(d.value)]; }"
        )
        line = dict(zip(z["t"], z["v"], strict=True))
        for at, value in zip(*points, strict=True):
            assert line[at] == pytest.approx(value, rel=1e-12)
        table = await page.locator(".pw-alert-table").inner_text()
        assert "z-wide" in table
        # Six charts painted: every chart canvas has drawn pixels.
        painted = await painted_canvases(page)
        assert sum(n > 1_000 for n in painted) >= 6, painted
        await page.screenshot(path=artifact("web-page.png"), full_page=True)
        assert errors == []


async def test_changing_the_timeframe_window_and_pair_redraws_the_charts(db: Path) -> None:
    async with served(db) as server, opened(server.url) as (page, errors):
        await page.get_by_text(f"{REVERSE} · 1s · window 30").first.wait_for()
        await select(page, "pw-pair", PAIR)
        await page.get_by_text(f"{PAIR} · 1s · window 30").first.wait_for()
        minutes = series_rows(db, "ETHUSDT", "BTCUSDT", "1m", 30)
        await select(page, "pw-timeframe", "1m")
        await page.get_by_text(f"{PAIR} · 1m · window 30: {len(minutes)} bars").wait_for()
        z = await line_values(page, "pw-zscore-0")
        assert len(z["v"]) == sum(v is not None for _, v, _ in minutes)

        await select(page, "pw-window", "120")
        longer = series_rows(db, "ETHUSDT", "BTCUSDT", "1m", 120)
        await page.get_by_text(f"{PAIR} · 1m · window 120: {len(longer)} bars").wait_for()
        z = await line_values(page, "pw-zscore-0")
        assert len(z["v"]) == sum(v is not None for _, v, _ in longer)

        reverse = series_rows(db, "BTCUSDT", "ETHUSDT", "1m", 120)
        await select(page, "pw-pair", REVERSE)
        await page.get_by_text(f"{REVERSE} · 1m · window 120").first.wait_for()
        beta = await line_values(page, "pw-beta-0")
        np.testing.assert_allclose(beta["v"], [b for *_, b in reverse if b is not None])
        card = await page.locator(".pw-stats-card h3").inner_text()
        assert REVERSE in card
        assert errors == []


async def test_the_downloads_hold_exactly_the_rows_of_the_shown_range(
    db: Path, tmp_path: Path
) -> None:
    rows = series_rows(db, "ETHUSDT", "BTCUSDT", "1s", 30)
    async with served(db) as server, opened(server.url) as (page, errors):
        await select(page, "pw-pair", PAIR)
        await page.get_by_text(f"{PAIR} · 1s · window 30").first.wait_for()
        files = {}
        for kind in ("csv", "parquet"):
            async with page.expect_download() as info:
                await page.locator(f"a.pw-{kind}").click()
            download = await info.value
            target = tmp_path / download.suggested_filename
            await download.save_as(target)
            files[kind] = target
        assert files["csv"].name == "ETHUSDT-BTCUSDT-1s-w30.csv"
        csv = pd.read_csv(files["csv"])
        parquet = pq.read_table(files["parquet"]).to_pandas()
        assert csv["ts"].tolist() == [ts for ts, *_ in rows]
        assert parquet["ts"].tolist() == [ts for ts, *_ in rows]
        np.testing.assert_allclose(
            parquet["zscore"].to_numpy(dtype=float),
            [np.nan if z is None else z for _, z, _ in rows],
            equal_nan=True,
        )
        closes = dict(
            query(db, "SELECT ts, close FROM bars WHERE symbol = 'BTCUSDT' AND timeframe = '1s'")
        )
        np.testing.assert_allclose(
            csv["x_close"].to_numpy(dtype=float),
            [closes.get(ts, np.nan) for ts, *_ in rows],
            equal_nan=True,
        )
        assert errors == []


async def test_a_range_export_through_the_route_has_exactly_the_rows_in_the_range(
    db: Path,
) -> None:
    rows = series_rows(db, "ETHUSDT", "BTCUSDT", "1s", 30)
    start, end = int(rows[100][0]), int(rows[200][0])  # type: ignore[call-overload]
    async with served(db) as server, opened(server.url) as (page, _):
        response = await page.request.get(
            f"{server.url}export?y=ETHUSDT&x=BTCUSDT&timeframe=1s&window=30"
            f"&from={start}&to={end}&format=parquet"
        )
        assert response.status == 200
        table = pq.read_table(io.BytesIO(await response.body())).to_pandas()
        assert table["ts"].tolist() == [ts for ts, *_ in rows[100:200]]
        missing = await page.request.get(
            f"{server.url}export?y=DOGEUSDT&x=BTCUSDT&timeframe=1s&window=30"
        )
        assert missing.status == 404
        assert "DOGEUSDT" in await missing.text()
        bad = await page.request.get(f"{server.url}export?y=ETHUSDT")
        assert bad.status == 400


async def test_the_login_refuses_a_wrong_password_and_lets_the_right_one_in(db: Path) -> None:
    async with served(db, password=WEB_PASSWORD) as server, opened(server.url) as (page, _):
        # Not logged in: the page redirects to the login form; exports answer 401.
        await page.locator("input[name='password']").wait_for()
        export = await page.request.get(
            f"{server.url}export?y=ETHUSDT&x=BTCUSDT&timeframe=1s&window=30"
        )
        assert export.status == 401
        await page.fill("input[name='username']", "me")
        await page.fill("input[name='password']", "wrong")
        await page.locator("form button, form input[type='submit']").first.click()
        await page.locator("input[name='password']").wait_for()
        assert await page.locator(".pw-shown").count() == 0
        await page.fill("input[name='username']", "me")
        await page.fill("input[name='password']", WEB_PASSWORD)
        await page.locator("form button, form input[type='submit']").first.click()
        await wait_drawn(page)
        export = await page.request.get(
            f"{server.url}export?y=ETHUSDT&x=BTCUSDT&timeframe=1s&window=30"
        )
        assert export.status == 200


async def test_an_empty_database_shows_that_there_is_no_data_yet(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    _create(empty)
    async with served(empty) as server, opened(server.url) as (page, errors):
        await page.get_by_text("No data yet").wait_for()
        text = await page.get_by_text("No data yet").inner_text()
        first_sentence = NO_DATA.split(". ")[0]
        assert text.strip().startswith(first_sentence)
        assert "[[pairs]]" in text  # what makes data appear
        assert await page.locator(".pw-shown").count() == 0
        assert errors == []


def _create(path: Path) -> None:
    writer = Writer(path)
    writer.start()
    writer.close(10)


async def test_live_mode_streams_new_bars_and_alerts_onto_the_page_without_a_reload(
    db: Path, tmp_path: Path
) -> None:
    live_db = tmp_path / "live.sqlite3"
    with closing(sqlite3.connect(db)) as source, closing(sqlite3.connect(live_db)) as target:
        source.backup(target)
    rows = series_rows(live_db, "ETHUSDT", "BTCUSDT", "1s", 30)
    async with served(live_db) as server, opened(server.url) as (page, errors):
        await select(page, "pw-pair", PAIR)
        await page.get_by_text(f"{PAIR} · 1s · window 30: {len(rows)} bars").wait_for()
        before = await line_values(page, "pw-zscore-0")
        await page.evaluate("() => { window.pwMarker = 42 }")
        await page.locator(".pw-live button").click()
        # Three new bars stored after the page was drawn (as the daemon's writer would).
        last = int(rows[-1][0])  # type: ignore[call-overload]
        with closing(sqlite3.connect(live_db)) as conn, conn:
            for i, z in enumerate((0.5, 2.5, -1.25), start=1):
                conn.execute(
                    "INSERT INTO analytics (y, x, timeframe, window, ts, hedge_ratio, zscore, "
                    "spread, spread_std, updated_at) VALUES "
                    "('ETHUSDT', 'BTCUSDT', '1s', 30, ?, 1.5, ?, 0.1, 0.01, 0)",
                    (last + i * 1_000, z),
                )
        # And an alert on the second new bar (its ``at`` is the bar's close).
        writer = Writer(live_db)
        writer.start()
        try:
            event = AlertEvent(
                rule="z-live", target=PAIR, timeframe="1s", window=30, kind="firing",
                at=last + 3_000, severity="critical", metric="zscore", value=2.5,
                threshold=2.0, message="z 2.50 live", values={"zscore": 2.5}, labels={},
                notify=False,
            )  # fmt: skip
            writer.put_alerts([(event, False)])
            writer.flush().result(30)
        finally:
            writer.close(10)
        await page.get_by_text(f"{PAIR} · 1s · window 30: {len(rows) + 3} bars").wait_for()
        await page.locator(".pw-alerts").get_by_text("z 2.50 live").wait_for()
        points = await page.evaluate(
            "() => { const d = Bokeh.documents[0].get_model_by_name('pw-chart-zscore')"
            ".renderers.find(r => r.data_source && r.data_source.data.kind).data_source.data;"
            " return [Array.from(d.time), Array.from(d.value), Array.from(d.rule)]; }"
        )
        # The live alert's marker sits on its bar (at its open) at that bar's z.
        assert sorted(points[2]) == ["z-live", "z-wide", "z-wide"]
        live = points[2].index("z-live")
        assert (points[0][live], points[1][live]) == (float(last + 2_000), 2.5)
        after = await line_values(page, "pw-zscore-0")
        # Streamed: the old points unchanged, the three new ones appended.
        assert after["t"][: len(before["t"])] == before["t"]
        assert after["v"][len(before["v"]) :] == [0.5, 2.5, -1.25]
        assert after["t"][len(before["t"]) :] == [float(last + i * 1_000) for i in (1, 2, 3)]
        assert await page.evaluate("() => window.pwMarker") == 42  # no page reload
        assert errors == []


async def test_a_pair_whose_legs_share_no_bar_says_so(db: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.sqlite3"
    with closing(sqlite3.connect(db)) as source, closing(sqlite3.connect(lone)) as target:
        source.backup(target)
    with closing(sqlite3.connect(lone)) as conn, conn:
        conn.execute("DELETE FROM analytics")
        # Metrics of a pair whose x leg has no stored bar at all.
        conn.execute(
            "INSERT INTO analytics (y, x, timeframe, window, ts, zscore, updated_at) "
            "SELECT 'ETHUSDT', 'DOGEUSDT', timeframe, 30, ts, 0.0, 0 FROM bars "
            "WHERE symbol = 'ETHUSDT' AND timeframe = '1s'"
        )
    async with served(lone) as server, opened(server.url) as (page, errors):
        await wait_drawn(page)
        await page.get_by_text("The legs have no bars in common").wait_for()
        prices = await line_values(page, "pw-prices-1")
        assert prices["v"] == []
        assert errors == []


async def test_a_range_without_bars_says_so_and_the_presets_bring_the_data_back(
    db: Path,
) -> None:
    rows = series_rows(db, "ETHUSDT", "BTCUSDT", "1s", 30)
    async with served(db) as server, opened(server.url) as (page, errors):
        await select(page, "pw-pair", PAIR)
        await page.get_by_text(f"{PAIR} · 1s · window 30: {len(rows)} bars").wait_for()
        # The date picker (flatpickr) takes a range as a user's two clicks would set it.
        await page.locator(".pw-custom input.flatpickr-input").evaluate(
            "el => { const fp = el._flatpickr; fp.open();"
            " fp.setDate(['2020-01-01 00:00:00', '2020-01-02 00:00:00'], true); fp.close(); }"
        )
        await page.get_by_text(f"{PAIR} · 1s · window 30: 0 bars").wait_for()
        await page.get_by_text("No data in this range").wait_for()
        z = await line_values(page, "pw-zscore-0")
        assert z["v"] == []
        await page.locator(".pw-range button", has_text="all").click()
        await page.get_by_text(f"{PAIR} · 1s · window 30: {len(rows)} bars").wait_for()
        assert errors == []
