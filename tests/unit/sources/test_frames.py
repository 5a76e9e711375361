"""Recorded frame readers on the real data slices in tests/data (see tests/data/README.md)."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from pairwatch.daemon.sources.frames import (
    FrameFileError,
    RecordedFrame,
    event_order_key,
    iter_frames,
    iter_trade_frames,
    merge_frames,
    parse_frame,
)

DATA = Path(__file__).resolve().parents[2] / "data"
SPOT_BTC = DATA / "hftbacktest_spot_btcusdt_20240808_head2000.gz"
SPOT_ETH = DATA / "hftbacktest_spot_ethusdt_20240808_head2000.gz"
USDM_BTC = DATA / "hftbacktest_usdm_btcusdt_20240808_head2000.gz"
USDM_ETH = DATA / "hftbacktest_usdm_ethusdt_20240808_head2000.gz"
CRYPTOFEED = DATA / "cryptofeed_BINANCE-ee25be_head300.0"

# file, stream, trades, first id, last id, first T, last T (tests/data/README.md)
SLICES = [
    (SPOT_BTC, "btcusdt@trade", 297, 3735683259, 3735683555, 1723161255342, 1723161273729),
    (SPOT_ETH, "ethusdt@trade", 279, 1520538925, 1520539203, 1723161255611, 1723161274563),
    (USDM_BTC, "btcusdt@trade", 347, 5266583935, 5266584281, 1723161256322, 1723161265116),
    (USDM_ETH, "ethusdt@trade", 247, 4308068523, 4308068769, 1723161256560, 1723161265202),
    (CRYPTOFEED, "btcusdt@aggTrade", 73, 665076760, 665076832, 1617566591314, 1617566595702),
    (CRYPTOFEED, "ethusdt@aggTrade", 67, 291477091, 291477157, 1617566591985, 1617566595668),
    (CRYPTOFEED, "dotusdt@aggTrade", 19, 54605678, 54605696, 1617566591841, 1617566595383),
]


@pytest.mark.parametrize(
    ("path", "stream", "count", "first_id", "last_id", "first_t", "last_t"), SLICES
)
def test_trade_frames_of_each_slice_match_the_documented_ids(
    path: Path, stream: str, count: int, first_id: int, last_id: int, first_t: int, last_t: int
) -> None:
    frames = list(iter_trade_frames(path, [stream]))
    ids = [f.trade_id for f in frames]
    assert len(frames) == count
    assert ids[0] == first_id
    assert ids[-1] == last_id
    assert ids == list(range(first_id, last_id + 1))
    assert frames[0].trade_ms == first_t
    assert frames[-1].trade_ms == last_t
    assert {f.stream for f in frames} == {stream}


def test_every_stream_of_an_hftbacktest_slice_is_read_and_the_snapshot_skipped() -> None:
    counts = Counter(f.stream for f in iter_frames(SPOT_BTC))
    assert counts == {
        "btcusdt@bookTicker": 1515,
        "btcusdt@depth@100ms": 187,
        "btcusdt@trade": 297,
    }
    assert sum(counts.values()) == 2000 - 1  # the REST depth snapshot line


def test_every_stream_of_the_cryptofeed_slice_is_read_and_url_lines_skipped() -> None:
    counts = Counter(f.stream for f in iter_frames(CRYPTOFEED))
    assert counts["btcusdt@depth@100ms"] == 44
    assert counts["dotusdt@kline_1m"] == 2
    assert sum(counts.values()) == 300 - 1 - 3  # header line and 3 REST snapshots


def test_raw_is_the_recorded_json_text_and_receive_times_are_exact() -> None:
    with gzip.open(SPOT_BTC, "rt", encoding="utf-8") as f:
        first_line = f.readline().rstrip("\n")
    first = next(iter_frames(SPOT_BTC))
    recv, _, text = first_line.partition(" ")
    assert first.raw == text
    assert first.recv_ns == int(recv) == 1723161253937085768

    trade = next(iter_trade_frames(CRYPTOFEED))
    assert trade.recv_ns == 1617566592629139000  # "1617566592.629139:", no float rounding
    assert trade.raw == (
        '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT",'
        '"a":665076760,"p":"58001.03000000","q":"0.08620500","f":745522877,"l":745522877,'
        '"T":1617566591314,"m":true,"M":true}}'
    )
    assert trade.event_ms == 1617566591315
    assert trade.kind == "aggTrade"
    assert trade.is_trade


def test_non_trade_frames_have_no_trade_id_and_fall_back_to_t_for_event_time() -> None:
    book = parse_frame('{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","a":"1.0"}}')
    assert book is not None
    assert book.trade_id is None
    assert book.event_ms is None
    assert not book.is_trade
    futures_book = parse_frame('{"stream":"x@bookTicker","data":{"e":"bookTicker","T":5}}')
    assert futures_book is not None
    assert futures_book.event_ms == 5
    assert parse_frame('{"lastUpdateId":1,"bids":[],"asks":[]}') is None


@pytest.mark.parametrize("compress", [False, True])
def test_json_lines_files_plain_or_gzip_are_read(tmp_path: Path, *, compress: bool) -> None:
    frames = list(iter_trade_frames(SPOT_ETH))[:50]
    text = "".join(f.raw + "\n" for f in frames) + "\n"
    path = tmp_path / "frames.jsonl"
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    again = list(iter_frames(path))
    assert [f.raw for f in again] == [f.raw for f in frames]
    assert all(f.recv_ns is None for f in again)
    assert again[0] == RecordedFrame(
        None, "ethusdt@trade", frames[0].raw, frames[0].event_ms, frames[0].trade_ms, 1520538925
    )


@pytest.mark.parametrize(
    "bad_line",
    ["not a frame at all", '1723161253937085768 {"stream":', "12.5x: {}", "{oops"],
)
def test_unreadable_lines_are_errors_naming_file_and_line(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"stream":"a@trade","data":{"t":1}}\n' + bad_line + "\n")
    with pytest.raises(FrameFileError, match=r"bad\.jsonl:2: "):
        list(iter_frames(path))


def test_a_deeply_nested_line_is_counted_in_a_replay_not_fatal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hostile.jsonl"
    deep = '{"stream":"a@trade","data":{"x":' + "[" * 100_000 + "]" * 100_000 + "}}"
    path.write_bytes(
        b'{"stream":"a@trade","data":{"t":1}}\n' + deep.encode() + b"\n"
        + b'{"stream":"a@trade","data":{"s":"\xff\xfe"}}\n'
        + b'{"stream":"a@trade","data":{"t":2}}\n'
    )  # fmt: skip
    rejects: Counter[str] = Counter()
    got = list(iter_frames(path, rejects=rejects))
    # Bytes that are not UTF-8 are read as U+FFFD (the frame's checks judge the fields).
    assert [f.raw for f in got] == [
        '{"stream":"a@trade","data":{"t":1}}', '{"stream":"a@trade","data":{"s":"\ufffd\ufffd"}}',
        '{"stream":"a@trade","data":{"t":2}}',
    ]  # fmt: skip
    assert rejects == Counter({"malformed_line": 1})
    with pytest.raises(FrameFileError, match=r"hostile\.jsonl:2: "):
        list(iter_frames(path))


def test_merge_orders_several_files_by_event_time() -> None:
    btc = list(iter_trade_frames(SPOT_BTC))
    eth = list(iter_trade_frames(SPOT_ETH))
    merged = list(merge_frames(iter(btc), iter(eth)))
    assert len(merged) == len(btc) + len(eth) == 576
    keys = [event_order_key(f) for f in merged]
    assert keys == sorted(keys)
    # Each stream keeps its own order, so ids stay gap-free and increasing per stream.
    for stream, source in (("btcusdt@trade", btc), ("ethusdt@trade", eth)):
        assert [f for f in merged if f.stream == stream] == source
    # Ties on (E, T) keep the order of the sources: btc before eth.
    assert merged[0].stream == "btcusdt@trade"
    assert merged[0].event_ms == 1723161255343
