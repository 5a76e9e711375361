"""The simulator against a plain ``websockets`` client on loopback: format, faults, policies."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from pairwatch.daemon.sources.frames import iter_trade_frames, merge_frames
from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions, run_simulator
from pairwatch.daemon.sources.simulator_faults import (
    Fault,
    FaultOptions,
    ReconnectPolicy,
    malformed_frames,
)

DATA = Path(__file__).resolve().parents[1] / "data"
SPOT_BTC = DATA / "hftbacktest_spot_btcusdt_20240808_head2000.gz"
SPOT_ETH = DATA / "hftbacktest_spot_ethusdt_20240808_head2000.gz"
CRYPTOFEED = DATA / "cryptofeed_BINANCE-ee25be_head300.0"
BTC_SPOT_FIRST_ID = 3_735_683_259
KEYS = {
    ("spot", "trade"): ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
    ("usdm", "trade"): ["e", "E", "T", "s", "t", "p", "q", "X", "m"],
    ("spot", "aggTrade"): ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"],
    ("usdm", "aggTrade"): ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"],
}
Message = str | bytes


def client(url: str, **kwargs: Any) -> connect:
    """Connect without a receive-queue limit: a client that stops reading while the server
    floods it at max speed must still read through to the server's close reply."""
    return connect(url, max_queue=None, **kwargs)


def options(**changes: Any) -> SimulatorOptions:
    """Max-speed synthetic options unless told otherwise."""
    return SimulatorOptions(**{"speed": None, **changes})


def faults(*items: Fault, **changes: Any) -> FaultOptions:
    return FaultOptions(faults=items, **changes)


async def recv_n(ws: ClientConnection, n: int) -> list[Message]:
    async with asyncio.timeout(10):
        return [await ws.recv() for _ in range(n)]


async def recv_until_closed(ws: ClientConnection) -> tuple[list[Message], ConnectionClosed]:
    """Receive until the server closes; return the messages and the close exception."""
    messages: list[Message] = []
    async with asyncio.timeout(10):
        while True:
            try:
                messages.append(await ws.recv())
            except ConnectionClosed as exc:
                return messages, exc


async def settle(sim: Simulator, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        await sim.wait_until(predicate)


def all_closed(sim: Simulator, n: int) -> Callable[[], bool]:
    return lambda: len(sim.connections) >= n and all(c.closed for c in sim.connections[:n])


def data_of(message: Message) -> dict[str, Any]:
    assert isinstance(message, str)
    payload: dict[str, Any] = json.loads(message)["data"]
    return payload


def trade_ids(messages: list[Message]) -> list[int]:
    return [data_of(m)["t"] for m in messages]


async def test_spot_trade_frames_are_binance_combined_frames_with_consecutive_ids() -> None:
    async with Simulator(options()) as sim:
        async with client(sim.url + "/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
            messages = await recv_n(ws, 300)
        await settle(sim, all_closed(sim, 1))
    by_stream: dict[str, list[int]] = {}
    for message in messages:
        assert isinstance(message, str)
        frame = json.loads(message)
        assert list(frame) == ["stream", "data"]
        assert list(frame["data"]) == KEYS[("spot", "trade")]
        assert frame["stream"] == frame["data"]["s"].lower() + "@trade"
        by_stream.setdefault(frame["stream"], []).append(frame["data"]["t"])
    assert set(by_stream) == {"btcusdt@trade", "ethusdt@trade"}
    btc = by_stream["btcusdt@trade"]
    assert btc == list(range(BTC_SPOT_FIRST_ID, BTC_SPOT_FIRST_ID + len(btc)))
    record = sim.connections[0]
    assert record.path == "/stream"
    assert record.served == {"btcusdt@trade", "ethusdt@trade"}
    assert record.ids("btcusdt@trade")[: len(btc)] == btc
    assert record.close_cause == "peer"


@pytest.mark.parametrize(("market", "kind"), list(KEYS))
@pytest.mark.parametrize("path", ["/stream", "/market/stream"])
async def test_each_market_and_kind_has_binances_key_order_on_both_paths(
    market: str, kind: str, path: str
) -> None:
    async with Simulator(options(market=market, stream=kind)) as sim:
        streams = f"btcusdt@{kind}/ethusdt@{kind}"
        async with client(f"{sim.url}{path}?streams={streams}") as ws:
            messages = await recv_n(ws, 50)
    for message in messages:
        data = data_of(message)
        assert list(data) == KEYS[(market, kind)]
        assert data["e"] == kind


async def test_trade_and_aggtrade_streams_agree_when_both_are_published() -> None:
    async with Simulator(options(stream=("trade", "aggTrade"))) as sim:
        url = sim.stream_url(["btcusdt@trade", "btcusdt@aggTrade"])
        async with client(url) as ws:
            messages = await recv_n(ws, 400)
    fills: list[dict[str, Any]] = []
    checked = 0
    for message in messages:
        data = data_of(message)
        if data["e"] == "trade":
            fills.append(data)
            continue
        # Each aggTrade comes right after its fills: same price, time, side; ids f..l.
        assert [f["t"] for f in fills] == list(range(data["f"], data["l"] + 1))
        assert {(f["p"], f["T"], f["m"]) for f in fills} == {(data["p"], data["T"], data["m"])}
        fills = []
        checked += 1
    assert checked > 50


async def test_only_subscribed_streams_are_sent_and_unknown_names_are_ignored() -> None:
    names = ["btcusdt@trade", "foousdt@trade", "btcusdt@depth", "BTCUSDT@trade", "ethusdt@aggTrade"]
    async with Simulator(options()) as sim:
        async with client(sim.stream_url(names)) as ws:
            messages = await recv_n(ws, 100)
        await settle(sim, all_closed(sim, 1))
    assert {json.loads(m)["stream"] for m in messages} == {"btcusdt@trade"}
    assert sim.connections[0].served == {"btcusdt@trade"}
    assert sim.connections[0].requested == names


async def test_strict_mode_refuses_unknown_stream_names_with_400() -> None:
    async with Simulator(options(strict_streams=True)) as sim:
        with pytest.raises(InvalidStatus) as info:
            await client(sim.stream_url(["btcusdt@trade", "dogeusdt@trade"]))
    assert info.value.response.status_code == 400
    assert b"dogeusdt@trade" in info.value.response.body
    assert sim.handshakes.bad_request == 1
    assert sim.connections == []


@pytest.mark.parametrize("path", ["/ws/btcusdt@trade", "/", "/streams?streams=btcusdt@trade"])
async def test_unknown_paths_get_404(path: str) -> None:
    async with Simulator(options()) as sim:
        with pytest.raises(InvalidStatus) as info:
            await client(sim.url + path)
    assert info.value.response.status_code == 404
    assert sim.handshakes.not_found == 1
    assert sim.handshakes.accepted == 0


async def test_first_attempts_are_refused_with_503_then_accepted() -> None:
    async with Simulator(options(faults=faults(refuse_first=2))) as sim:
        url = sim.stream_url(["btcusdt@trade"])
        statuses = []
        for _ in range(2):
            with pytest.raises(InvalidStatus) as info:
                await client(url)
            statuses.append(info.value.response.status_code)
        async with client(url) as ws:
            first = await recv_n(ws, 1)
    assert statuses == [503, 503]
    assert trade_ids(first) == [BTC_SPOT_FIRST_ID]
    assert (sim.handshakes.refused, sim.handshakes.accepted) == (2, 1)


async def test_refusal_window_answers_503() -> None:
    async with Simulator(options(faults=faults(refuse_for_s=3600.0))) as sim:
        with pytest.raises(InvalidStatus) as info:
            await client(sim.stream_url(["btcusdt@trade"]))
    assert info.value.response.status_code == 503


async def test_drop_aborts_the_connection_after_n_messages() -> None:
    async with Simulator(options(faults=faults(Fault("drop", after=50)))) as sim:
        async with client(sim.stream_url(["btcusdt@trade"])) as ws:
            messages, closed = await recv_until_closed(ws)
        await settle(sim, all_closed(sim, 1))
    assert len(messages) == 50
    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is None  # no close frame: the TCP connection was aborted
    record = sim.connections[0]
    assert (record.messages, record.faults, record.close_cause) == (50, ["drop"], "drop")


async def test_clean_close_after_n_messages_has_the_given_code_and_reason() -> None:
    fault = Fault("close", after=20, code=4001, reason="maintenance")
    async with Simulator(options(faults=faults(fault))) as sim:
        async with client(sim.stream_url(["btcusdt@trade"])) as ws:
            messages, closed = await recv_until_closed(ws)
        await settle(sim, all_closed(sim, 1))
    assert len(messages) == 20
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "maintenance")
    assert sim.connections[0].close_cause == "close"


async def test_stall_keeps_the_socket_open_and_silent() -> None:
    async with Simulator(options(faults=faults(Fault("stall", after=20, stall_s=60.0)))) as sim:
        async with client(sim.stream_url(["btcusdt@trade"])) as ws:
            messages = await recv_n(ws, 20)
            # A pong proves the server is alive; any frame sent before it would already
            # be queued ahead of it (TCP keeps order), so nothing pending means silence.
            pong = await ws.ping()
            async with asyncio.timeout(10):
                await pong
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await ws.recv()
        await settle(sim, all_closed(sim, 1))
    assert trade_ids(messages) == list(range(BTC_SPOT_FIRST_ID, BTC_SPOT_FIRST_ID + 20))
    assert sim.connections[0].messages == 20
    assert sim.connections[0].faults == ["stall"]


async def test_short_stall_resumes_without_loss() -> None:
    opts = options(faults=faults(Fault("stall", after=20, stall_s=0.05)))
    async with Simulator(opts) as sim, client(sim.stream_url(["btcusdt@trade"])) as ws:
        messages = await recv_n(ws, 60)
    assert trade_ids(messages) == list(range(BTC_SPOT_FIRST_ID, BTC_SPOT_FIRST_ID + 60))
    assert sim.connections[0].faults == ["stall"]


async def test_malformed_frames_are_sent_between_valid_ones() -> None:
    corpus = malformed_frames("btcusdt@trade", "spot", BTC_SPOT_FIRST_ID + 9, 0)
    k = len(corpus)
    async with Simulator(options(faults=faults(Fault("malformed", after=10, count=k)))) as sim:
        async with client(sim.stream_url(["btcusdt@trade"])) as ws:
            messages = await recv_n(ws, 10 + k + 10)
        await settle(sim, all_closed(sim, 1))
    valid, bad = messages[:10] + messages[10 + k :], messages[10 : 10 + k]
    assert trade_ids(valid) == list(range(BTC_SPOT_FIRST_ID, BTC_SPOT_FIRST_ID + 20))
    labels = [label for label, _ in corpus]
    assert sim.connections[0].malformed == labels
    binary = [m for m in bad if isinstance(m, bytes)]
    assert len(binary) == 1
    assert binary[0] == dict(corpus)["binary_frame"]
    # Text corpus frames equal the corpus except for their (send-time) E/T values.
    strip = re.compile(r'"[ET]":\d+')
    for message, (_, expected) in zip(bad, corpus, strict=True):
        if isinstance(expected, str):
            assert isinstance(message, str)
            assert strip.sub("", message) == strip.sub("", expected)
    # Malformed frames are not trade messages: the recorded ids are the valid ones only.
    assert sim.connections[0].ids("btcusdt@trade")[:20] == trade_ids(valid)


async def test_server_shutdown_notice_then_going_away_close() -> None:
    async with Simulator(options(faults=faults(Fault("shutdown", after=30)))) as sim:
        async with client(sim.stream_url(["btcusdt@trade"])) as ws:
            messages, closed = await recv_until_closed(ws)
        await settle(sim, all_closed(sim, 1))
    assert len(messages) == 31
    notice = messages[-1]
    assert isinstance(notice, str)
    assert re.fullmatch(
        r'\{"stream":"!serverShutdown","data":\{"e":"serverShutdown","E":\d{13}\}\}', notice
    )
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "server shutdown")
    assert (sim.connections[0].notices, sim.connections[0].close_cause) == (1, "shutdown")


async def test_overlapping_connections_get_the_same_frames_during_a_shutdown_grace() -> None:
    fault = Fault("shutdown", after=20, grace_s=1.0, connection=1)
    opts = SimulatorOptions(symbols=("BTCUSDT",), rate=300.0, faults=faults(fault))
    async with Simulator(opts) as sim:
        url = sim.stream_url(["btcusdt@trade"])
        async with client(url) as old:
            before = await recv_n(old, 21)
            assert "serverShutdown" in str(before[-1])
            async with client(url) as new:
                old_rest, closed = await recv_until_closed(old)
                new_frames = await recv_n(new, len(old_rest))
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert len(old_rest) > 10
    # The new connection joined the present: its frames are the old one's tail, byte for byte.
    start = old_rest.index(new_frames[0])
    assert old_rest[start:] == new_frames[: len(old_rest) - start]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # second connection's first 10 ids, relative to the first id; drop after 25
        (ReconnectPolicy("continue"), list(range(25, 35))),
        (ReconnectPolicy("live"), list(range(25, 35))),  # max speed: nothing happened
        (ReconnectPolicy("overlap", 5), list(range(20, 30))),
        (ReconnectPolicy("skip", 5), list(range(30, 40))),
    ],
)
async def test_reconnect_policies_at_max_speed(
    policy: ReconnectPolicy, expected: list[int]
) -> None:
    opts = options(symbols=("BTCUSDT",), faults=faults(Fault("drop", after=25), reconnect=policy))
    async with Simulator(opts) as sim:
        url = sim.stream_url(["btcusdt@trade"])
        async with client(url) as ws:
            first, _ = await recv_until_closed(ws)
        async with client(url) as ws:
            second = await recv_n(ws, 10)
        await settle(sim, all_closed(sim, 2))
    assert trade_ids(first) == [BTC_SPOT_FIRST_ID + i for i in range(25)]
    assert trade_ids(second) == [BTC_SPOT_FIRST_ID + i for i in expected]
    if policy.mode == "overlap":
        assert second[:5] == first[-5:]
    if policy.mode == "skip":
        assert sim.connections[1].skipped == 5
    sent = sim.sent_ids("btcusdt@trade")
    assert sent[:35] == trade_ids(first) + trade_ids(second)


async def test_live_policy_in_paced_mode_loses_what_traded_while_disconnected() -> None:
    opts = SimulatorOptions(
        symbols=("BTCUSDT",), rate=500.0, faults=faults(Fault("close", after=10))
    )
    async with Simulator(opts) as sim:
        url = sim.stream_url(["btcusdt@trade"])
        async with client(url) as ws:
            first, _ = await recv_until_closed(ws)
        await settle(sim, all_closed(sim, 1))
        # The market keeps ticking with nobody connected.
        resume = sim.connections[0].messages
        await settle(sim, lambda: sim.log_end >= resume + 20)
        async with client(url) as ws:
            second = await recv_n(ws, 5)
    last, nxt = trade_ids(first)[-1], trade_ids(second)[0]
    assert nxt - last - 1 >= 19
    assert trade_ids(second) == list(range(nxt, nxt + 5))


async def test_every_n_drop_with_continue_loses_and_repeats_nothing() -> None:
    fault = Fault("drop", after=30, every=30)
    opts = options(
        symbols=("BTCUSDT",), faults=faults(fault, reconnect=ReconnectPolicy("continue"))
    )
    async with Simulator(opts) as sim:
        url = sim.stream_url(["btcusdt@trade"])
        received: list[Message] = []
        for _ in range(3):
            async with client(url) as ws:
                messages, _ = await recv_until_closed(ws)
                received += messages
        await settle(sim, all_closed(sim, 3))
    assert [c.messages for c in sim.connections] == [30, 30, 30]
    assert trade_ids(received) == list(range(BTC_SPOT_FIRST_ID, BTC_SPOT_FIRST_ID + 90))
    assert sim.sent_ids("btcusdt@trade") == trade_ids(received)


async def test_fault_restricted_to_the_second_connection() -> None:
    fault = Fault("close", after=5, connection=2)
    async with Simulator(options(faults=faults(fault))) as sim:
        url = sim.stream_url(["btcusdt@trade"])
        async with client(url) as ws:
            first = await recv_n(ws, 10)
        async with client(url) as ws:
            second, closed = await recv_until_closed(ws)
        await settle(sim, all_closed(sim, 2))
    assert len(first) == 10
    assert len(second) == 5
    assert [c.faults for c in sim.connections] == [[], ["close"]]
    assert closed.rcvd is not None


async def test_connections_older_than_the_limit_are_closed() -> None:
    opts = SimulatorOptions(rate=50.0, faults=faults(max_connection_s=0.2))
    async with Simulator(opts) as sim:
        async with client(sim.stream_url(["btcusdt@trade"])) as ws:
            _, closed = await recv_until_closed(ws)
        await settle(sim, all_closed(sim, 1))
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "connection too old")
    assert sim.connections[0].close_cause == "max_age"


async def test_server_sends_pings_and_answers_client_pings() -> None:
    got_ping = asyncio.Event()

    class PingSeen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("< PING"):
                got_ping.set()

    client_logger = logging.getLogger("test.simulator.client")
    client_logger.setLevel(logging.DEBUG)
    client_logger.propagate = False
    handler = PingSeen()
    client_logger.addHandler(handler)
    try:
        opts = SimulatorOptions(rate=5.0, ping_interval_s=0.05)
        async with (
            Simulator(opts) as sim,
            client(sim.stream_url(["btcusdt@trade"]), logger=client_logger) as ws,
            asyncio.timeout(10),
        ):
            await got_ping.wait()
            latency = await (await ws.ping())
    finally:
        client_logger.removeHandler(handler)
    assert got_ping.is_set()
    assert latency >= 0.0


async def test_recorded_files_are_replayed_unchanged_in_event_order() -> None:
    expected = [
        f.raw for f in merge_frames(iter_trade_frames(SPOT_BTC), iter_trade_frames(SPOT_ETH))
    ]
    opts = SimulatorOptions(
        mode="recorded", files=(str(SPOT_BTC), str(SPOT_ETH)), speed=None, close_when_done=True
    )
    async with Simulator(opts) as sim:
        async with client(sim.stream_url(["btcusdt@trade", "ethusdt@trade"])) as ws:
            messages, closed = await recv_until_closed(ws)
        await settle(sim, all_closed(sim, 1))
    assert messages == expected
    assert len(messages) == 297 + 279
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "end of data")
    assert sim.connections[0].reached_end
    assert sim.sent_ids("ethusdt@trade") == list(range(1520538925, 1520539203 + 1))


async def test_recorded_replay_sends_only_subscribed_trade_streams_when_paced() -> None:
    opts = SimulatorOptions(
        mode="recorded", files=(str(CRYPTOFEED),), speed=50.0, close_when_done=True
    )
    streams = ["ethusdt@aggTrade", "ethusdt@depth@100ms"]
    async with Simulator(opts) as sim, client(sim.stream_url(streams)) as ws:
        messages, _ = await recv_until_closed(ws)
    expected = [f.raw for f in iter_trade_frames(CRYPTOFEED, ["ethusdt@aggTrade"])]
    assert messages == expected
    assert len(messages) == 67


async def test_on_send_reports_cumulative_counts() -> None:
    calls: list[tuple[int, int]] = []
    opts = options(on_send=lambda count, t_ns: calls.append((count, t_ns)))
    async with Simulator(opts) as sim:
        async with client(sim.stream_url(["btcusdt@trade", "ethusdt@trade"])) as ws:
            await recv_n(ws, 5000)
        await settle(sim, all_closed(sim, 1))
    counts = [c for c, _ in calls]
    times = [t for _, t in calls]
    assert counts == sorted(counts)
    assert counts[-1] == sim.connections[0].messages >= 5000
    assert times == sorted(times)


async def test_subscribe_requests_get_binance_replies_and_start_streams() -> None:
    async with Simulator(options()) as sim, client(sim.url + "/stream") as ws:
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        listed = json.loads(await ws.recv())
        await ws.send(json.dumps({"method": "PING", "id": 2}))
        error = json.loads(await ws.recv())
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 3}))
        reply = await ws.recv()
        frames = await recv_n(ws, 20)
        served = set(sim.connections[0].served)
    assert listed == {"result": [], "id": 1}
    assert (error["code"], error["id"]) == (2, 2)
    assert reply == '{"result":null,"id":3}'
    assert {json.loads(m)["stream"] for m in frames} == {"ethusdt@trade"}
    assert trade_ids(frames) == list(range(1520538925, 1520538945))
    assert served == {"ethusdt@trade"}


async def test_run_simulator_reports_its_url_and_stops_on_request() -> None:
    stop, listening = asyncio.Event(), asyncio.Event()
    urls: list[str] = []

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    task = asyncio.create_task(run_simulator(options(), ready=ready, stop=stop))
    async with asyncio.timeout(10):
        await listening.wait()
        async with client(urls[0] + "/stream?streams=btcusdt@trade") as ws:
            first = await recv_n(ws, 3)
        stop.set()
        await task
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", urls[0])
    assert trade_ids(first) == [BTC_SPOT_FIRST_ID, BTC_SPOT_FIRST_ID + 1, BTC_SPOT_FIRST_ID + 2]
