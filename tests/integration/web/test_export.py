"""``pairwatch export`` and ``pairwatch.web.export`` on a database filled by a real replay.

The oracle is independent of the export code: pandas ``read_sql`` of the series' analytics
rows and of each leg's bars, left-merged on ts. Every column the export writes must equal
it exactly (NULL where it is NULL), in Parquet and in CSV.
"""

from __future__ import annotations

import io
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integration.test_replay_analytics import SPOT, replay
from pairwatch.__main__ import main
from pairwatch.daemon.store import open_store, table_columns
from pairwatch.web import export

PAIR = ("ETHUSDT", "BTCUSDT")
DOCS = Path(__file__).resolve().parents[3] / "docs" / "export.md"
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ETHUSDT/BTCUSDT replayed on 1s and 1m bars, windows 30 and 120."""
    path = tmp_path_factory.mktemp("export") / "pairs.sqlite3"
    result = replay(
        *SPOT, "--db", path, "--timeframe", "1s", "--timeframe", "1m",
        "--pair", "ETHUSDT/BTCUSDT", "--window", "30", "--window", "120",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def copy(db: Path, tmp_path: Path) -> Path:
    """A copy of the replayed database that a test may change."""
    path = tmp_path / "copy.sqlite3"
    shutil.copyfile(db, path)
    return path


def oracle(
    db: Path, timeframe: str, window: int, start: int | None = None, end: int | None = None
) -> pd.DataFrame:
    """The export's rows, from pandas alone: analytics left-merged with both legs' bars."""
    sql = "SELECT * FROM analytics WHERE y = ? AND x = ? AND timeframe = ? AND window = ?"
    params: list[Any] = [*PAIR, timeframe, window]
    if start is not None:
        sql, params = sql + " AND ts >= ?", [*params, start]
    if end is not None:
        sql, params = sql + " AND ts < ?", [*params, end]
    with sqlite3.connect(db) as conn:
        rows = pd.read_sql(sql, conn, params=params)
        legs = {
            leg: pd.read_sql(
                "SELECT * FROM bars WHERE symbol = ? AND timeframe = ?",
                conn,
                params=(symbol, timeframe),
            )
            for leg, symbol in zip(("y", "x"), PAIR, strict=True)
        }
    rows = rows.drop(columns=["y", "x", "timeframe", "window", "updated_at"])
    for leg, bars in legs.items():
        named = bars.drop(columns=["symbol", "timeframe", "updated_at"]).add_prefix(f"{leg}_")
        rows = rows.merge(named.rename(columns={f"{leg}_ts": "ts"}), on="ts", how="left")
    return rows.sort_values("ts").reset_index(drop=True)


def numbers(values: Any) -> np.ndarray:
    """A column as float64, NULL/NA as NaN (booleans as 0/1)."""
    return np.array([np.nan if v is None or v is pd.NA or v != v else float(v) for v in values])


def assert_equals_oracle(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert set(got.columns) - {"time"} == set(expected.columns)
    assert len(got) == len(expected)
    for name in expected.columns:
        np.testing.assert_array_equal(numbers(got[name]), numbers(expected[name]), name)


def read_parquet(path: Path | bytes) -> pd.DataFrame:
    source = pa.BufferReader(path) if isinstance(path, bytes) else path
    return pq.read_table(source).to_pandas(types_mapper=pd.ArrowDtype)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)  # pandas 3 parses doubles exactly by default


def run(*args: str | Path) -> int:
    return main(["export", *map(str, args)])


def stored_ts(db: Path, timeframe: str = "1s", window: int = 30) -> list[int]:
    with sqlite3.connect(db) as conn:
        sql = "SELECT ts FROM analytics WHERE y=? AND x=? AND timeframe=? AND window=? ORDER BY ts"
        return [r[0] for r in conn.execute(sql, (*PAIR, timeframe, window))]


def documented_columns() -> list[str]:
    """The column names of docs/export.md's table, ``x_open … x_closed`` expanded."""
    names = re.findall(r"^\| `([a-z_]+)`( … `[a-z_]+`)? \|", DOCS.read_text(), re.MULTILINE)
    columns: list[str] = []
    for name, ellipsis in names:
        if ellipsis:
            columns += [f"x_{field}" for field in export.BAR_FIELDS]
        elif name not in ("y", "x"):
            columns.append(name)
    return columns


# The files hold exactly the database's rows --------------------------------------------


def test_parquet_export_equals_the_database_rows(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.parquet"
    assert run("--db", db, "--pair", "ethusdt/btcusdt", "--timeframe", "1s", "--window", 30,
               "--format", "parquet", "--out", out) == 0  # fmt: skip
    got = read_parquet(out)
    expected = oracle(db, "1s", 30)
    assert len(expected) > 300
    assert expected["zscore"].isna().sum() >= 29  # warm-up: NULL metrics are exported as null
    assert_equals_oracle(got, expected)
    schema = pq.read_schema(out)
    assert schema.field("time").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("ts").type == pa.int64()
    assert schema.field("y_trades").type == pa.int64()
    assert schema.field("thin").type == pa.bool_()
    assert (got["time"].astype("int64") == got["ts"]).all()
    assert schema.metadata[export.METADATA_KEY] == (
        b'{"y": "ETHUSDT", "x": "BTCUSDT", "timeframe": "1s", "window": 30}'
    )
    assert not (tmp_path / "all.parquet.part").exists()


def test_without_the_fast_reader_the_export_is_the_same(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's sqlite3 (the fallback when libsqlite3 cannot be loaded) gives the same file.
    monkeypatch.setattr(export.fastread, "available", lambda: False)
    out = tmp_path / "slow.parquet"
    assert run("--db", db, "--pair", "ethusdt/btcusdt", "--timeframe", "1s", "--window", 30,
               "--format", "parquet", "--out", out) == 0  # fmt: skip
    assert_equals_oracle(read_parquet(out), oracle(db, "1s", 30))


def test_csv_export_equals_the_database_rows_with_iso_utc_times(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m", "--window", 120,
               "--format", "csv", "--out", out) == 0  # fmt: skip
    got = read_csv(out)
    assert_equals_oracle(got, oracle(db, "1m", 120))
    assert all(ISO_MS.fullmatch(t) for t in got["time"])
    times = pd.to_datetime(got["time"], utc=True)
    assert (times == pd.to_datetime(got["ts"], unit="ms", utc=True)).all()
    text = out.read_text()
    assert '"' not in text
    assert ",," in text  # NULL metrics of the warm-up are empty fields


def test_csv_and_parquet_hold_the_same_values(db: Path, tmp_path: Path) -> None:
    common = ("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", 120)
    assert run(*common, "--format", "csv", "--out", tmp_path / "a.csv") == 0
    assert run(*common, "--format", "parquet", "--out", tmp_path / "a.parquet") == 0
    csv, parquet = read_csv(tmp_path / "a.csv"), read_parquet(tmp_path / "a.parquet")
    assert list(csv.columns) == list(parquet.columns)
    for name in csv.columns.drop("time"):
        np.testing.assert_array_equal(numbers(csv[name]), numbers(parquet[name]), name)


def test_columns_are_in_the_documented_order(db: Path) -> None:
    with closing(open_store(db, readonly=True)) as conn:
        schema = export.export_schema(conn)
        metrics = [
            c for c in table_columns(conn, "analytics")
            if c not in ("y", "x", "timeframe", "window", "ts", "adf_at", "thin", "updated_at")
        ]  # fmt: skip
    bars = [f"{leg}_{name}" for leg in "yx" for name in export.BAR_FIELDS]
    assert schema.names == ["ts", "time", *bars, "thin", "adf_at", *metrics]
    assert schema.names == documented_columns()


def test_a_metric_column_added_later_is_exported_last(copy: Path, tmp_path: Path) -> None:
    with sqlite3.connect(copy) as conn:
        conn.execute("ALTER TABLE analytics ADD COLUMN later_metric REAL")
        conn.execute("UPDATE analytics SET later_metric = ts / 1000.0 WHERE window = 30")
    out = tmp_path / "later.parquet"
    assert run("--db", copy, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", 30,
               "--format", "parquet", "--out", out) == 0  # fmt: skip
    got = read_parquet(out)
    assert got.columns[-1] == "later_metric"
    assert_equals_oracle(got, oracle(copy, "1s", 30))


def test_a_missing_bar_leaves_its_leg_empty_and_keeps_the_row(copy: Path, tmp_path: Path) -> None:
    ts = stored_ts(copy)
    gone = ts[40:45]
    with sqlite3.connect(copy) as conn:
        marks = ",".join("?" * len(gone))
        conn.execute(f"DELETE FROM bars WHERE symbol = 'BTCUSDT' AND timeframe = '1s' "
                     f"AND ts IN ({marks})", gone)  # fmt: skip
    out = tmp_path / "left.parquet"
    assert run("--db", copy, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", 30,
               "--format", "parquet", "--out", out) == 0  # fmt: skip
    got = read_parquet(out)
    assert got["ts"].tolist() == ts
    missing = got[got["ts"].isin(gone)]
    assert missing["x_close"].isna().all()
    assert missing["x_closed"].isna().all()
    assert missing["y_close"].notna().all()
    assert_equals_oracle(got, oracle(copy, "1s", 30))


# Ranges -------------------------------------------------------------------------------


def test_from_is_inclusive_and_to_exclusive(db: Path, tmp_path: Path) -> None:
    ts = stored_ts(db)
    start, end = ts[100], ts[150]
    out = tmp_path / "range.parquet"
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", 30,
               "--from", start, "--to", end, "--format", "parquet", "--out", out) == 0  # fmt: skip
    got = read_parquet(out)
    assert got["ts"].tolist() == ts[100:150]
    assert_equals_oracle(got, oracle(db, "1s", 30, start, end))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-08-09T00:00:00Z", "2024-08-09T00:01:00+00:00"),
        ("2024-08-09T00:00", "2024-08-09 00:01:00.000"),  # naive means UTC
        ("2024-08-09T02:00+02:00", "2024-08-08T19:01-05:00"),
        ("1723161600000", "1723161660000"),
    ],
)
def test_iso_times_and_epoch_ms_select_the_same_rows(
    db: Path, tmp_path: Path, start: str, end: str
) -> None:
    out = tmp_path / "t.csv"
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", 30,
               "--from", start, "--to", end, "--format", "csv", "--out", out) == 0  # fmt: skip
    got = read_csv(out)
    assert got["ts"].tolist() == [t for t in stored_ts(db) if 1723161600000 <= t < 1723161660000]


def test_a_date_alone_is_midnight_utc(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "day.csv"
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", 30,
               "--from", "2024-08-09", "--format", "csv", "--out", out) == 0  # fmt: skip
    assert read_csv(out)["ts"].tolist() == [t for t in stored_ts(db) if t >= 1723161600000]


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_an_empty_range_gives_the_columns_and_no_rows(db: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"empty.{fmt}"
    first = stored_ts(db)[0]
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", 30,
               "--from", first, "--to", first, "--format", fmt, "--out", out) == 0  # fmt: skip
    with closing(open_store(db, readonly=True)) as conn:
        names = export.export_schema(conn).names
    if fmt == "csv":
        assert out.read_text() == ",".join(names) + "\n"
    else:
        table = pq.read_table(out)
        assert table.num_rows == 0
        assert table.schema.names == names
        assert table.schema.field("time").type == pa.timestamp("ms", tz="UTC")


# The library --------------------------------------------------------------------------


def test_chunks_together_equal_one_read_and_count_rows_agrees(db: Path) -> None:
    ts = stored_ts(db)
    with closing(open_store(db, readonly=True)) as conn:
        small = list(export.export_rows(conn, *PAIR, "1s", 30, ts[5], ts[300], chunk=50))
        whole = list(export.export_rows(conn, *PAIR, "1s", 30, ts[5], ts[300]))
        count = export.count_rows(conn, *PAIR, "1s", 30, ts[5], ts[300])
    assert [b.num_rows for b in small] == [50] * 5 + [45]
    assert len(whole) == 1
    assert pa.Table.from_batches(small).equals(pa.Table.from_batches(whole))
    assert count == 295


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_streamed_bytes_equal_the_file(db: Path, tmp_path: Path, fmt: export.Format) -> None:
    with closing(open_store(db, readonly=True)) as conn:
        pieces = list(export.iter_bytes(export.export_rows(conn, *PAIR, "1s", 30, chunk=100), fmt))
        export.write_file(export.export_rows(conn, *PAIR, "1s", 30), tmp_path / "f", fmt)
        sink = io.BytesIO()
        rows = export.write_stream(export.export_rows(conn, *PAIR, "1s", 30), sink, fmt)
    assert len(pieces) >= 4
    assert rows == len(stored_ts(db))
    if fmt == "csv":
        assert b"".join(pieces) == sink.getvalue() == (tmp_path / "f").read_bytes()
    else:
        streamed = pq.read_table(pa.BufferReader(b"".join(pieces)))
        assert streamed.equals(pq.read_table(tmp_path / "f"))
        assert streamed.equals(pq.read_table(pa.BufferReader(sink.getvalue())))


@dataclass(frozen=True)
class Key:
    y: str
    x: str
    timeframe: str
    window: int


def test_export_chunks_reads_on_its_own_connection(db: Path) -> None:
    data = b"".join(export.export_chunks(db, Key(*PAIR, "1m", 30), None, None, "parquet"))
    assert pq.read_table(pa.BufferReader(data)).num_rows == len(stored_ts(db, "1m", 30))
    chunks = export.export_chunks(db, Key(*PAIR, "1m", 31), None, None, "csv")
    with pytest.raises(export.ExportError, match=r"no window 31 .* windows: 30, 120"):
        next(chunks)


def failing_read(batches: Iterator[Any]) -> Iterator[Any]:
    """The first batches, then the database fails."""
    yield next(batches)
    yield next(batches)
    raise sqlite3.OperationalError("disk I/O error")


def failing_write(batches: Iterator[Any]) -> Iterator[Any]:
    """The first batches, then one the encoder refuses (another schema)."""
    yield next(batches)
    yield next(batches)
    yield pa.record_batch([pa.array(["not a number"])], names=["ts"])


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize(
    ("failing", "error"),
    [(failing_read, sqlite3.OperationalError), (failing_write, (ValueError, pa.ArrowException))],
)
def test_a_failed_export_leaves_no_part_file_and_the_old_file_intact(
    db: Path, tmp_path: Path, fmt: export.Format, failing: Any, error: Any
) -> None:
    out = tmp_path / f"old.{fmt}"
    out.write_bytes(b"the previous export")
    with closing(open_store(db, readonly=True)) as conn:
        batches = export.export_rows(conn, *PAIR, "1s", 30, chunk=20)
        with pytest.raises(error):
            export.write_file(failing(batches), out, fmt)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


# The command line ---------------------------------------------------------------------


def test_the_only_window_is_the_default_and_several_are_listed(
    copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(copy) as conn:
        conn.execute("DELETE FROM analytics WHERE timeframe = '1m' AND window = 120")
    out = tmp_path / "w.parquet"
    assert run("--db", copy, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m",
               "--format", "parquet", "--out", out) == 0  # fmt: skip
    assert "window 30" in capsys.readouterr().out
    assert_equals_oracle(read_parquet(out), oracle(copy, "1m", 30))
    assert run("--db", copy, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s",
               "--format", "parquet", "--out", tmp_path / "x.parquet") == 2  # fmt: skip
    assert "1s has several windows: choose one of 30, 120" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pair", "ETHUSDT/XRPUSDT", "--timeframe", "1s"),
         "no analytics for ETHUSDT/XRPUSDT; the database holds: ETHUSDT/BTCUSDT 1m (windows 30, "
         "120), 1s (windows 30, 120)"),
        (("--pair", "BTCUSDT/ETHUSDT", "--timeframe", "1s"), "no analytics for BTCUSDT/ETHUSDT"),
        (("--pair", "ETHUSDT/BTCUSDT", "--timeframe", "5m"),
         "no 5m analytics for ETHUSDT/BTCUSDT; it has: 1m (windows 30, 120), 1s (windows 30, 120)"),
        (("--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", "100"),
         "no window 100 for ETHUSDT/BTCUSDT 1s; windows: 30, 120"),
        (("--pair", "ETHUSDT", "--timeframe", "1s"), "--pair 'ETHUSDT': expected Y/X"),
        (("--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", "30", "--from", "today"),
         "--from 'today' is not an ISO 8601 time"),
        (("--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", "30",
          "--from", "2024-08-09T00:00:01Z", "--to", "2024-08-09"), "--from (2024-08-09T00:00:01Z) "
         "is after --to"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_and_say_what_exists(
    db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    out = tmp_path / "never.csv"
    assert run("--db", db, *args, "--format", "csv", "--out", out) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_needs_force(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exists.csv"
    out.write_text("keep me")
    common = ("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m", "--window", 30,
              "--format", "csv", "--out", out)  # fmt: skip
    assert run(*common) == 2
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert run(*common, "--force") == 0
    assert len(read_csv(out)) == len(stored_ts(db, "1m", 30))


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("missing/dir/x.csv", "does not exist"),
        (".", "is a directory"),
    ],
)
def test_an_impossible_out_exits_2(
    db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    out: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m", "--window", 30,
               "--format", "csv", "--out", out) == 2  # fmt: skip
    assert message in capsys.readouterr().err


def test_out_is_written_exactly_where_it_says(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m", "--window", 30,
               "--format", "csv", "--out", "../here.csv") == 0  # fmt: skip
    assert (tmp_path / "here.csv").is_file()
    assert f"to {tmp_path / 'here.csv'} (" in capsys.readouterr().out


def test_a_write_failure_exits_1_and_leaves_nothing(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "blocked.csv"
    (tmp_path / "blocked.csv.part").mkdir()  # the part file cannot be created
    assert run("--db", db, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m", "--window", 30,
               "--format", "csv", "--out", out) == 1  # fmt: skip
    assert f"cannot write {out}" in capsys.readouterr().err
    assert not out.exists()


def test_no_database_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--db", tmp_path / "none.sqlite3", "--pair", "ETHUSDT/BTCUSDT", "--timeframe",
               "1m", "--format", "csv", "--out", tmp_path / "x.csv") == 2  # fmt: skip
    assert "no such database file" in capsys.readouterr().err


def test_the_database_defaults_to_the_settings(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAIRWATCH_CONFIG", raising=False)
    config = tmp_path / "pairwatch.toml"
    config.write_text(f'data_dir = "{db.parent}"\n[storage]\nsqlite_path = "{db.name}"\n')
    out = tmp_path / "settings.csv"
    assert run("--config", config, "--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m",
               "--window", 30, "--format", "csv", "--out", out) == 0  # fmt: skip
    assert len(read_csv(out)) == len(stored_ts(db, "1m", 30))


def test_the_installed_command_exports_quietly_off_a_terminal(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "pairwatch", "export", "--db", str(db), "--pair",
         "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", "120", "--format", "parquet",
         "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = len(stored_ts(db, "1s", 120))
    assert result.stdout.startswith(f"exported {rows:,} rows of ETHUSDT/BTCUSDT 1s window 120 ")
    assert_equals_oracle(read_parquet(out), oracle(db, "1s", 120))
