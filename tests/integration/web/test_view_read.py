"""What the page reads for a view and for each live poll, from a real SQLite file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pairwatch.daemon.writer import Writer
from pairwatch.events import AlertEvent
from pairwatch.series import SeriesKey
from pairwatch.web.view_read import read_news, read_view

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from export import START, TF, WINDOW, X, Y, build

KEY = SeriesKey(Y, X, TF, WINDOW)
ROWS = 300
TIMEFRAMES = {TF: 1_000}


def alert(rule: str, at: int, target: str = f"{Y}/{X}") -> AlertEvent:
    return AlertEvent(
        rule=rule, target=target, timeframe=TF, window=WINDOW, kind="firing", at=at,
        severity="warning", metric="zscore", value=2.5, threshold=2.0, message=rule,
        values={"zscore": 2.5}, labels={}, notify=False,
    )  # fmt: skip


def store(db: Path, *events: AlertEvent) -> None:
    writer = Writer(db)
    writer.start()
    try:
        writer.put_alerts([(event, False) for event in events])
        writer.flush().result(30)
    finally:
        writer.close(10)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "view.sqlite3"
    build(path, ROWS)
    store(path, alert("old", START + 10_000), alert("in", START + 250_000))
    return path


def test_a_view_reads_its_range_its_alerts_moved_to_their_bar_and_the_newest_id(
    db: Path,
) -> None:
    view = read_view(db, KEY, lambda last: (last - 99_000, None), TIMEFRAMES)
    assert view.span == (START + 200_000, None)
    assert (len(view.frame), int(view.frame["ts"].iloc[0])) == (100, START + 200_000)
    assert view.alerts["rule"].tolist() == ["in"]
    assert view.alerts["at"].tolist() == [START + 249_000]  # its bar's open
    assert sorted(view.table["rule"]) == ["in", "old"]
    assert view.alert_id == 2


def test_a_live_poll_reads_later_bars_and_only_new_alerts_of_the_shown_range(
    db: Path,
) -> None:
    last = START + 289_000
    quiet = read_news(db, KEY, TIMEFRAMES, after_ts=last + 1, end=None, start=START + 200_000,
                      after_id=2)  # fmt: skip
    assert quiet.frame["ts"].tolist() == [START + 290_000 + i * 1_000 for i in range(10)]
    assert (quiet.alerts.empty, quiet.table, quiet.alert_id) == (True, None, 2)
    # Stored after the view was read: one on a bar already shown, one before the range,
    # one of another series.
    store(db, alert("late", START + 281_000), alert("early", START + 5_000),
          alert("other", START + 285_000, target="SOLUSDT/BTCUSDT"))  # fmt: skip
    news = read_news(db, KEY, TIMEFRAMES, after_ts=last + 1, end=None, start=START + 200_000,
                     after_id=2)  # fmt: skip
    assert news.alerts["rule"].tolist() == ["late"]
    assert news.alerts["at"].tolist() == [START + 280_000]
    assert news.table is not None
    assert sorted(news.table["rule"]) == ["early", "in", "late", "old", "other"]
    assert news.alert_id == 5
