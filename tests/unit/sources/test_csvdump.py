"""Tests for the Binance public-data dump reader (pairwatch.daemon.sources.csvdump)."""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.analytics.tradebatch import TradeBatch
from pairwatch.daemon.sources.csvdump import (
    MAX_TS_MS,
    MIN_TS_MS,
    DumpKind,
    TimeUnit,
    describe_dump,
    read_dump,
)
from pairwatch.errors import PairwatchError

DATA = Path(__file__).parents[2] / "data" / "csvdump"
FIXTURES = sorted(p for p in DATA.glob("*/*") if p.suffix in {".csv", ".zip"})
AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"


# --- helpers -------------------------------------------------------------------------


def read_all(path: Path, **kwargs: Any) -> TradeBatch:
    """Read a dump and join its batches into one."""
    batches = list(read_dump(path, **kwargs))
    assert all(len(b) > 0 for b in batches)
    return join(batches, symbol=batches[0].symbol if batches else "")


def join(batches: list[TradeBatch], *, symbol: str) -> TradeBatch:
    """Concatenate batches of one symbol."""
    assert {b.symbol for b in batches} <= {symbol}

    def cat(name: str, dtype: type) -> np.ndarray:
        parts = [getattr(b, name) for b in batches]
        return np.concatenate(parts) if parts else np.empty(0, dtype)

    return TradeBatch(
        symbol,
        cat("trade_id", np.int64),
        cat("ts_event", np.int64),
        cat("price", np.float64),
        cat("qty", np.float64),
        cat("buyer_is_maker", np.bool_),
        cat("count", np.int64),
    )


def assert_same(actual: TradeBatch, expected: TradeBatch) -> None:
    """Assert two batches hold exactly the same rows, with the output dtypes."""
    assert actual.symbol == expected.symbol
    for name, dtype in [
        ("trade_id", np.int64),
        ("ts_event", np.int64),
        ("price", np.float64),
        ("qty", np.float64),
        ("buyer_is_maker", np.bool_),
        ("count", np.int64),
    ]:
        got = getattr(actual, name)
        assert got.dtype == dtype, name
        np.testing.assert_array_equal(got, getattr(expected, name), err_msg=name)


def dump_text(path: Path) -> str:
    """Return the CSV text of a plain or zipped dump."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return archive.read(archive.namelist()[0]).decode()
    return path.read_text()


def oracle(path: Path, symbol: str = "BTCUSDT") -> TradeBatch:
    """Decode a fixture row by row with the csv module: the reference the reader must match."""
    rows = list(csv.reader(io.StringIO(dump_text(path))))
    if not rows[0][0].isdigit():
        rows = rows[1:]
    agg = "aggTrades" in path.name
    time_col = 5 if agg else 4
    micros = path.parent.name == "spot_us"
    return TradeBatch(
        symbol,
        np.array([int(r[0]) for r in rows], np.int64),
        np.array([int(r[time_col]) // (1000 if micros else 1) for r in rows], np.int64),
        np.array([float(r[1]) for r in rows], np.float64),
        np.array([float(r[2]) for r in rows], np.float64),
        np.array([r[time_col + 1].lower() == "true" for r in rows], np.bool_),
        np.array([int(r[4]) - int(r[3]) + 1 if agg else 1 for r in rows], np.int64),
    )


def fixture(folder: str, kind: str, suffix: str) -> Path:
    """Return the path of one fixture."""
    return DATA / folder / f"BTCUSDT-{kind}-2024-08-08{suffix}"


def write_zip(path: Path, text: str, member: str | None = None) -> Path:
    """Write ``text`` as the one CSV member of a zip, named like the zip unless given."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member or path.with_suffix(".csv").name, text)
    return path


# --- every layout against its source rows --------------------------------------------


def test_fixtures_cover_every_layout() -> None:
    seen = {(describe_dump(p).market, describe_dump(p).kind) for p in FIXTURES}
    assert seen == {
        ("spot", DumpKind.TRADES),
        ("spot", DumpKind.AGG_TRADES),
        ("usdm", DumpKind.TRADES),
        ("usdm", DumpKind.AGG_TRADES),
    }
    assert {p.suffix for p in FIXTURES} == {".csv", ".zip"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_layout_reads_exactly_its_source_rows(path: Path) -> None:
    rejects: Counter[str] = Counter()
    batch = read_all(path, rejects=rejects)
    assert len(batch) == len(oracle(path)) > 100
    assert_same(batch, oracle(path))
    assert rejects == Counter()


@pytest.mark.parametrize(
    ("path", "kind", "columns", "has_header", "unit", "market"),
    [
        (fixture("spot", "trades", ".csv"), "trades", 7, False, "ms", "spot"),
        (fixture("spot", "aggTrades", ".zip"), "aggTrades", 8, False, "ms", "spot"),
        (fixture("spot_us", "trades", ".zip"), "trades", 7, False, "us", "spot"),
        (fixture("spot_us", "aggTrades", ".zip"), "aggTrades", 8, False, "us", "spot"),
        (fixture("usdm", "trades", ".csv"), "trades", 6, True, "ms", "usdm"),
        (fixture("usdm", "aggTrades", ".zip"), "aggTrades", 7, True, "ms", "usdm"),
        (fixture("usdm_noheader", "trades", ".csv"), "trades", 6, False, "ms", "usdm"),
        (fixture("usdm_noheader", "aggTrades", ".csv"), "aggTrades", 7, False, "ms", "usdm"),
    ],
)
def test_describe_dump_tells_the_layout(
    path: Path, kind: str, columns: int, has_header: bool, unit: str, market: str
) -> None:
    info = describe_dump(path)
    assert (info.symbol, info.kind, info.n_columns) == ("BTCUSDT", kind, columns)
    assert (info.has_header, info.time_unit, info.market) == (has_header, unit, market)


@pytest.mark.parametrize("kind", ["trades", "aggTrades"])
def test_spot_plain_zip_and_microsecond_files_give_the_same_trades(kind: str) -> None:
    plain = read_all(fixture("spot", kind, ".csv"))
    assert_same(read_all(fixture("spot", kind, ".zip")), plain)
    assert_same(read_all(fixture("spot_us", kind, ".zip")), plain)


def test_microseconds_are_floored_to_milliseconds() -> None:
    raw = [int(r.split(",")[4]) for r in dump_text(fixture("spot_us", "trades", ".zip")).split()]
    assert all(t > 10**14 for t in raw)
    assert any(t % 1000 >= 500 for t in raw)  # rounding would differ from flooring here
    batch = read_all(fixture("spot_us", "trades", ".zip"))
    np.testing.assert_array_equal(batch.ts_event, np.array(raw) // 1000)


@pytest.mark.parametrize("kind", ["trades", "aggTrades"])
def test_usdm_with_and_without_header_and_zipped_give_the_same_trades(kind: str) -> None:
    with_header = read_all(fixture("usdm", kind, ".csv"))
    assert with_header.trade_id[0] in (5266583935, 2300000000)
    assert_same(read_all(fixture("usdm_noheader", kind, ".csv")), with_header)
    assert_same(read_all(fixture("usdm", kind, ".zip")), with_header)


@pytest.mark.parametrize("folder", ["spot", "usdm"])
def test_aggtrades_account_for_every_trade(folder: str) -> None:
    trades = read_all(fixture(folder, "trades", ".csv"))
    aggs = read_all(fixture(folder, "aggTrades", ".csv"))
    assert int(aggs.count.sum()) == len(trades) == 300
    assert aggs.count.max() > 1
    assert aggs.qty.sum() == pytest.approx(trades.qty.sum(), rel=1e-12)
    assert set(aggs.ts_event) == set(trades.ts_event)
    np.testing.assert_array_equal(trades.count, np.ones(300, np.int64))


# --- symbol --------------------------------------------------------------------------


def test_symbol_comes_from_a_monthly_file_name(tmp_path: Path) -> None:
    path = tmp_path / "ETHUSDT-trades-2024-08.csv"
    shutil.copy(fixture("spot", "trades", ".csv"), path)
    assert read_all(path).symbol == "ETHUSDT"
    assert describe_dump(path).symbol == "ETHUSDT"


def test_symbol_argument_names_a_non_standard_file(tmp_path: Path) -> None:
    path = tmp_path / "btc spot trades.csv"
    shutil.copy(fixture("spot", "trades", ".csv"), path)
    assert_same(read_all(path, symbol="BTCUSDT"), oracle(fixture("spot", "trades", ".csv")))


def test_symbol_argument_wins_over_the_file_name() -> None:
    batch = read_all(fixture("usdm", "trades", ".csv"), symbol="BTCUSDT-PERP")
    assert batch.symbol == "BTCUSDT-PERP"
    assert len(batch) == 300


def test_non_standard_name_without_symbol_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    shutil.copy(fixture("spot", "trades", ".csv"), path)
    with pytest.raises(PairwatchError, match="symbol") as caught:
        read_dump(path)  # raised at once, before any batch is asked for
    assert str(path) in str(caught.value)


def test_zip_with_a_non_standard_name_takes_the_symbol_from_its_member(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "download (1).zip",
        dump_text(fixture("spot", "aggTrades", ".csv")),
        member="SOLUSDT-aggTrades-2024-08-08.csv",
    )
    info = describe_dump(path)
    assert (info.symbol, info.kind) == ("SOLUSDT", DumpKind.AGG_TRADES)
    assert len(read_all(path)) == 155


# --- telling the layout without a standard name ---------------------------------------


@pytest.mark.parametrize(
    ("source", "kind", "columns"),
    [
        (fixture("spot", "aggTrades", ".csv"), DumpKind.AGG_TRADES, 8),
        (fixture("spot", "trades", ".csv"), DumpKind.TRADES, 7),
        (fixture("usdm_noheader", "aggTrades", ".csv"), DumpKind.AGG_TRADES, 7),
        (fixture("usdm_noheader", "trades", ".csv"), DumpKind.TRADES, 6),
        (fixture("usdm", "aggTrades", ".csv"), DumpKind.AGG_TRADES, 7),
        (fixture("usdm", "trades", ".csv"), DumpKind.TRADES, 6),
    ],
)
def test_layout_of_a_renamed_file_is_told_by_header_columns_or_content(
    tmp_path: Path, source: Path, kind: DumpKind, columns: int
) -> None:
    path = tmp_path / "renamed.csv"
    shutil.copy(source, path)
    info = describe_dump(path, symbol="BTCUSDT")
    assert (info.kind, info.n_columns) == (kind, columns)
    assert_same(read_all(path, symbol="BTCUSDT"), oracle(source))


def test_seven_columns_that_fit_neither_layout_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("1,61000.1,0.5,30.5,x,y,z\n")
    with pytest.raises(PairwatchError, match=r"trades or an aggTrades") as caught:
        describe_dump(path, symbol="BTCUSDT")
    assert str(path) in str(caught.value)


def test_wrong_column_count_for_the_named_kind_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text("1,61000.1,0.5,2,2,1723161255342,true,true\n")  # aggTrades row
    with pytest.raises(PairwatchError, match=r"6 or 7 columns but this one has 8"):
        read_dump(path)


def test_header_contradicting_the_file_name_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    shutil.copy(fixture("usdm", "aggTrades", ".csv"), path)
    with pytest.raises(PairwatchError, match="file name says trades"):
        read_dump(path)


# --- validation ----------------------------------------------------------------------

GOOD_AGG = dump_text(fixture("usdm_noheader", "aggTrades", ".csv")).splitlines()[:6]

# (row, reason it is dropped); the good rows around them are kept in order.
BAD_AGG_ROWS = [
    ("2300000100,0.0,0.006,1,1,1723161256322,false", "bad_price"),
    ("2300000101,-61800.3,0.006,2,2,1723161256322,false", "bad_price"),
    ("2300000102,NaN,0.006,3,3,1723161256322,false", "bad_price"),
    ("2300000103,inf,0.006,4,4,1723161256322,false", "bad_price"),
    ("2300000104,61800.3,0,5,5,1723161256322,false", "bad_qty"),
    ("2300000105,61800.3,nan,6,6,1723161256322,true", "bad_qty"),
    ("2300000106,61800.3,-inf,7,7,1723161256322,true", "bad_qty"),
    ("2300000107,0,0,8,8,1723161256322,true", "bad_price"),  # counted once, first reason
    ("2300000108,61800.3,0.006,9,9,1723161256322322,true", "bad_time"),  # µs in a ms file
    ("2300000109,61800.3,0.006,10,10,0,true", "bad_time"),
    ("2300000110,61800.3,0.006,12,11,1723161256322,true", "bad_count"),
    ("2300000111,61800.3,0.006,13,13,1723161256322", "malformed_row"),  # too few fields
    ("2300000112,61800.3,0.006,14,14,1723161256322,true,true", "malformed_row"),  # too many
    ("2300000113,,0.006,15,15,1723161256322,true", "malformed_row"),  # empty field
]
UNPARSABLE_AGG_ROWS = [
    ("2300000114,61800.3x,0.006,16,16,1723161256322,true", "malformed_row"),
    ("2300000115,61800.3,0.006,17,17,1723161256322,maybe", "malformed_row"),
    ("2300000116,61800.3,0.006,18.5,18,1723161256322,true", "malformed_row"),
    ("abc,61800.3,0.006,19,19,1723161256322,true", "malformed_row"),
    ("+2300000117,61800.3,0.006,20,20,1723161256322,true", "malformed_row"),
    ("99999999999999999999,61800.3,0.006,21,21,1723161256322,true", "malformed_row"),
    ('2300000118,"61800.3,0.006,22,22,1723161256322,true', "malformed_row"),  # stray quote
    ('2300000119,"61800.3",0.006,23,23,1723161256322,true', "malformed_row"),  # never quoted
    ("\x00\x01,\x7f", "malformed_row"),
    (",,,,,,", "malformed_row"),
]


def interleave(bad: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """Return dump text with bad rows between good ones, and the good rows in order."""
    good = GOOD_AGG * 3
    lines = [AGG_HEADER]
    for index, (row, _) in enumerate(bad):
        lines += [good[index % len(good)], row]
    lines += good[len(bad) % len(good) :]
    kept = [line for line in lines[1:] if line not in {row for row, _ in bad}]
    return "\n".join(lines) + "\n", kept


@pytest.mark.parametrize(
    "bad",
    [BAD_AGG_ROWS, BAD_AGG_ROWS + UNPARSABLE_AGG_ROWS],
    ids=["fast-path", "unparsable-fields"],
)
@pytest.mark.parametrize("chunk_bytes", [16 << 20, 200, 1])
def test_bad_rows_are_counted_and_dropped(
    tmp_path: Path, bad: list[tuple[str, str]], chunk_bytes: int
) -> None:
    text, kept = interleave(bad)
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    path.write_text(text)
    expected_path = tmp_path / "expected" / path.name
    expected_path.parent.mkdir()
    expected_path.write_text("\n".join(kept) + "\n")
    rejects: Counter[str] = Counter({"bad_price": 1})  # counts are added to what is there
    batch = read_all(path, rejects=rejects, chunk_bytes=chunk_bytes)
    want = Counter(reason for _, reason in bad) + Counter({"bad_price": 1})
    assert rejects == want
    assert len(batch) == len(kept)
    assert_same(batch, oracle(expected_path))


junk_lines = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]),
    max_size=80,
) | st.sampled_from([row for row, _ in BAD_AGG_ROWS + UNPARSABLE_AGG_ROWS])


@settings(max_examples=60, deadline=None)
@given(
    junk=st.lists(st.tuples(st.integers(0, len(GOOD_AGG)), junk_lines), max_size=8),
    chunk_bytes=st.sampled_from([1, 100, 16 << 20]),
)
def test_junk_lines_never_stop_the_good_rows(junk: list[tuple[int, str]], chunk_bytes: int) -> None:
    lines = list(GOOD_AGG)
    for position, line in sorted(junk, reverse=True):
        lines.insert(position, line)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "BTCUSDT-aggTrades-2024-08-08.csv"
        path.write_text(AGG_HEADER + "\n" + "\n".join(lines) + "\n")
        expected = Path(tmp) / "expected" / path.name
        expected.parent.mkdir()
        expected.write_text("\n".join(GOOD_AGG) + "\n")
        rejects: Counter[str] = Counter()
        batch = read_all(path, chunk_bytes=chunk_bytes, rejects=rejects)
        want = oracle(expected)
    columns = ("trade_id", "ts_event", "price", "qty", "count")
    got = list(zip(*(getattr(batch, c) for c in columns), strict=True))
    good = list(zip(*(getattr(want, c) for c in columns), strict=True))
    remaining = iter(got)
    assert all(row in remaining for row in good)  # the good rows, in order
    assert len(got) + rejects.total() <= len(lines)


def test_a_file_without_line_breaks_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text("1,61000.5,0.1,6100.05,1723161255342,true" + "0" * (2 << 20))
    with pytest.raises(PairwatchError, match="a line is longer than") as caught:
        list(read_dump(path, chunk_bytes=64 << 10))
    assert str(path) in str(caught.value)


def test_dropped_rows_are_logged_once_per_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text, kept = interleave(BAD_AGG_ROWS[:2])
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="pairwatch.daemon.sources.csvdump"):
        batch = read_all(path)  # no rejects counter: rows are dropped all the same
    assert len(batch) == len(kept)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"{path}: dropped 2 of {len(kept) + 2} rows (bad_price=2)"]


def test_non_increasing_ids_are_kept_in_file_order(tmp_path: Path) -> None:
    rows = dump_text(fixture("spot", "trades", ".csv")).splitlines()[:5]
    shuffled = [rows[3], rows[1], rows[1], rows[4], rows[0]]
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text("\n".join(shuffled) + "\n")
    batch = read_all(path)
    np.testing.assert_array_equal(batch.trade_id, [int(r.split(",")[0]) for r in shuffled])


# --- chunking and line handling --------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("chunk_bytes", [7, 100, 4096])
def test_small_chunks_give_the_same_rows_as_one_chunk(path: Path, chunk_bytes: int) -> None:
    whole = list(read_dump(path))
    assert len(whole) == 1
    chunks = list(read_dump(path, chunk_bytes=chunk_bytes))
    longest_line = max(len(line) for line in dump_text(path).splitlines()) + 1
    # Memory is bounded by the chunk: a batch holds at most one chunk and a partial line
    # (every fixture line is longer than 40 bytes).
    assert max(len(b) for b in chunks) <= (chunk_bytes + longest_line) // 40
    assert len(chunks) > 1
    assert_same(join(chunks, symbol="BTCUSDT"), whole[0])


@pytest.mark.parametrize(
    "source", [fixture("usdm", "trades", ".csv"), fixture("spot", "aggTrades", ".csv")]
)
@pytest.mark.parametrize("chunk_bytes", [5, 50, 16 << 20])
def test_crlf_bom_and_missing_final_newline_are_read(
    tmp_path: Path, source: Path, chunk_bytes: int
) -> None:
    text = "\ufeff" + dump_text(source).rstrip("\n").replace("\n", "\r\n")
    path = tmp_path / source.name
    path.write_bytes(text.encode())
    assert describe_dump(path).has_header == (source.parent.name == "usdm")
    rejects: Counter[str] = Counter()
    assert_same(read_all(path, chunk_bytes=chunk_bytes, rejects=rejects), oracle(source))
    assert rejects == Counter()


def test_header_only_file_gives_no_batches(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    path.write_text(AGG_HEADER + "\n")
    assert list(read_dump(path, chunk_bytes=8)) == []
    assert describe_dump(path).has_header


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    path.write_text("")
    with pytest.raises(PairwatchError, match="empty"):
        read_dump(path)


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    with pytest.raises(PairwatchError, match="cannot open") as caught:
        read_dump(path)
    assert str(path) in str(caught.value)


def test_zip_with_two_members_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "1,2,3\n")
        archive.writestr("b.csv", "1,2,3\n")
    expected = "expected one CSV in the zip, found a.csv, b.csv"
    with pytest.raises(PairwatchError, match=re.escape(expected)):
        read_dump(path)


def test_non_positive_chunk_size_is_refused() -> None:
    with pytest.raises(ValueError, match="chunk_bytes must be positive"):
        read_dump(fixture("spot", "trades", ".csv"), chunk_bytes=0)


def test_stopping_early_ends_the_stream() -> None:
    batches = read_dump(fixture("spot", "trades", ".zip"), chunk_bytes=500)
    first = next(batches)
    batches.close()  # type: ignore[attr-defined]
    assert first.trade_id[0] == 3735683259
    assert list(batches) == []


# --- property: random trades written in a layout read back the same --------------------


@dataclass(frozen=True)
class Row:
    """One trade as a dump writes it."""

    trade_id: int
    price: str
    qty: str
    ts_ms: int
    sub_ms: int
    maker: bool
    first_id: int
    n_trades: int


decimals = st.builds(
    lambda mantissa, scale: f"{Decimal(mantissa).scaleb(-scale):f}",
    st.integers(1, 10**13),
    st.integers(0, 8),
)
rows = st.builds(
    Row,
    trade_id=st.integers(0, 2**62),
    price=decimals,
    qty=decimals,
    ts_ms=st.integers(MIN_TS_MS, MAX_TS_MS - 1),
    sub_ms=st.integers(0, 999),
    maker=st.booleans(),
    first_id=st.integers(0, 2**61),
    n_trades=st.integers(1, 1000),
)


def encode(row: Row, *, agg: bool, spot: bool, micros: bool, true: str, false: str) -> str:
    """Write a row in one of the four layouts."""
    ts = row.ts_ms * 1000 + row.sub_ms if micros else row.ts_ms
    maker = true if row.maker else false
    if agg:
        last = row.first_id + row.n_trades - 1
        fields = [row.trade_id, row.price, row.qty, row.first_id, last, ts, maker]
    else:
        fields = [row.trade_id, row.price, row.qty, "1.5", ts, maker]
    return ",".join(str(f) for f in fields + ([true] if spot else []))


@settings(max_examples=80, deadline=None)
@given(
    trades=st.lists(rows, min_size=1, max_size=60),
    agg=st.booleans(),
    spot=st.booleans(),
    header=st.booleans(),
    micros=st.booleans(),
    booleans=st.sampled_from([("True", "False"), ("true", "false")]),
    zipped=st.booleans(),
    chunk_bytes=st.sampled_from([1, 64, 333, 16 << 20]),
)
def test_random_valid_trades_read_back_unchanged(
    trades: list[Row],
    agg: bool,
    spot: bool,
    header: bool,
    micros: bool,
    booleans: tuple[str, str],
    zipped: bool,
    chunk_bytes: int,
) -> None:
    kind = "aggTrades" if agg else "trades"
    lines = [
        encode(r, agg=agg, spot=spot, micros=micros, true=booleans[0], false=booleans[1])
        for r in trades
    ]
    if header:
        names = AGG_HEADER if agg else "id,price,qty,quote_qty,time,is_buyer_maker"
        lines.insert(0, names + (",is_best_match" if spot else ""))
    text = "\n".join(lines) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        name = f"XRPUSDT-{kind}-2025-01-01"
        if zipped:
            path = write_zip(Path(tmp) / f"{name}.zip", text)
        else:
            path = Path(tmp) / f"{name}.csv"
            path.write_text(text)
        info = describe_dump(path)
        rejects: Counter[str] = Counter()
        batch = read_all(path, chunk_bytes=chunk_bytes, rejects=rejects)
    assert info.time_unit is (TimeUnit.US if micros else TimeUnit.MS)
    assert (info.has_header, info.market) == (header, "spot" if spot else "usdm")
    assert rejects == Counter()
    expected = TradeBatch(
        "XRPUSDT",
        np.array([r.trade_id for r in trades], np.int64),
        np.array([r.ts_ms for r in trades], np.int64),
        np.array([float(r.price) for r in trades], np.float64),
        np.array([float(r.qty) for r in trades], np.float64),
        np.array([r.maker for r in trades], np.bool_),
        np.array([r.n_trades if agg else 1 for r in trades], np.int64),
    )
    assert_same(batch, expected)
