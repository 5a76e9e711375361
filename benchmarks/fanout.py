"""Alert fan-out latency of the running daemon: bar close → MQTT subscriber, → Bot API request.

The real ``Daemon`` runs in this process at a steady load: ``--pairs`` pairs (default 100,
``Y00USDT/BTCUSDT`` …, window 30) on 1 s bars from a simulator sending ``--trades`` trades
per second (default 5,000) over ``--pairs`` + 1 symbols, with MQTT (analytics published as
by default) and Telegram configured. One rule per pair, ``zscore`` crossing 0 either way,
routed to ``[mqtt, telegram]``: it fires on the bar of a crossing and resolves on the next,
so both kinds of event are notified, tens per second.

- **Bar close** is when the analytics stage hands a pair's new snapshot to its listeners
  (the bars are closed and the metrics computed): a listener inserted first records
  ``time.monotonic()`` per (pair, bar).
- **MQTT publish**: the daemon's MQTT link hands the alert's PUBLISH to its client (the
  issue's "bar close → publish"); **MQTT ack**: the broker's PUBACK is back. Both stamped
  in the daemon's process by wrapping ``MqttLink.publish``.
- **MQTT**: a real mosquitto on a free loopback port, with and without ``set_tcp_nodelay
  true`` (``--broker``); an aiomqtt client subscribed to ``pairwatch/v1/alerts/#`` (QoS 1)
  stamps each alert on receipt. An alert is matched to its bar by ``event.target`` and
  ``event.at`` (the bar's close time, ``ts`` + 1 s).
- **Telegram**: the fake Bot API of the tests (``tests/support/botapi.py``) stamps each
  request; a ``sendMessage`` is matched to its bar by the target and the UTC time in its
  text. python-telegram-bot's ``AIORateLimiter`` applies (30 requests/s overall; a private
  chat, as here, has no per-chat limit). "First of a bar" is the earliest request of each
  bar: the latency without the queue of the bar's other notifications.
- The simulator and the receiving peers (Bot API, subscriber) run in child processes, so
  their work does not delay the daemon's loop or their stamps (``time.monotonic()`` is one
  clock for every process of the host). The daemon's event-loop lag is probed in-process
  (a 1 ms sleep, lateness of each wake-up).

- **Machine stalls**: a reference child process does nothing but the same 1 ms sleep probe;
  its wake-ups later than 5 ms are whole-machine pauses (two shared virtual cores), which
  no code of the daemon causes or can avoid. The "quiet" series keep the alerts during
  whose fan-out (bar close → receipt) the reference saw no such pause.

``--routes mqtt`` leaves Telegram out (its sends share the daemon's loop); ``--no-lag-probe``
leaves the probe out.

Bars closed during ``--warmup`` seconds (the window fills in 30) are not counted; those
closed in the next ``--duration`` seconds are, once every notification created by then is
delivered. Each broker setting runs ``--runs`` times; medians of runs are printed with
every run's value.

    .venv/bin/python benchmarks/fanout.py [--duration 60] [--runs 3] [--broker both]
        [--routes "mqtt, telegram"] [--no-lag-probe]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import loop_lag, machine, serve_simulator
from pairwatch.config.settings import Settings
from pairwatch.daemon.service import Daemon
from pairwatch.events import PairSnapshot, SymbolSnapshot
from pairwatch.notifiers.mqtt import MqttLink
from support.botapi import FakeBotApi
from support.mosquitto import Mosquitto

TOKEN = "123456:BENCH-token"
CHAT = "4242"
X = "BTCUSDT"
PREFIX = "pairwatch/v1"
REFERENCE_MS = 5.0
"""A reference-process wake-up later than this is a machine stall (see ``serve_reference``)."""
_TARGET_RE = re.compile(r"\b(Y\d+USDT/" + X + r")\b")
_UTC_RE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def symbols(pairs: int) -> list[str]:
    return [X, *(f"Y{i:02d}USDT" for i in range(pairs))]


def rules_yaml(ys: Sequence[str], routes: str = "mqtt, telegram") -> str:
    lines = ["rules:"]
    for y in ys:
        lines += [
            f"  - name: zc-{y}",
            f"    pair: {y}/{X}",
            "    timeframe: 1s",
            "    window: 30",
            "    when:",
            "      any:",
            "        - zscore crosses_above 0",
            "        - zscore crosses_below 0",
            f"    notify: [{routes}]",
        ]
    return "\n".join(lines) + "\n"


# --- the child processes ---------------------------------------------------------------------


async def serve_reference() -> list[tuple[float, float]]:
    """Child: a process that does nothing but the 1 ms sleep probe; on SIGTERM, return every
    wake-up later than ``REFERENCE_MS`` as (monotonic end, lateness ms). Its stalls are the
    machine's own (whole-VM pauses of shared cores), not the daemon's."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stalls: list[tuple[float, float]] = []
    print("READY -", flush=True)
    while not stop.is_set():
        start = time.monotonic()
        await asyncio.sleep(0.001)
        late = (time.monotonic() - start - 0.001) * 1000
        if late > REFERENCE_MS:
            stalls.append((time.monotonic(), late))
    return stalls


async def serve_peers(broker_port: int, out: Path) -> None:
    """Child: the fake Bot API and an MQTT subscriber; on SIGTERM, write what they got."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    received: list[tuple[float, str]] = []
    async with (
        FakeBotApi(TOKEN) as api,
        aiomqtt.Client("127.0.0.1", broker_port, identifier="fanout-sub") as client,
    ):
        await client.subscribe(f"{PREFIX}/alerts/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                received.append((time.monotonic(), bytes(payload).decode()))

        task = asyncio.create_task(collect())
        print(f"READY {api.base_url}", flush=True)
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sent = [(c.at, c.params.get("text", ""), c.status)
                for c in api.calls if c.method == "sendMessage"]  # fmt: skip
    await asyncio.to_thread(out.write_text, json.dumps({"mqtt": received, "telegram": sent}))


@contextlib.asynccontextmanager
async def child(*args: str) -> AsyncIterator[str]:
    """Run this script with ``args`` in a child process; yield what it says after READY."""
    process = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)


# --- one run ---------------------------------------------------------------------------------

Receipt = tuple[float, str, int]
"""(monotonic time received, pair ``Y/X``, bar close time in epoch ms)."""


@dataclass
class Run:
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    """Per series (``mqtt``, ``mqtt first``, ``telegram``, ``telegram first``): every sample."""
    published: list[Receipt] = field(default_factory=list)
    """Alerts handed to the MQTT client by the daemon (stamped in its process)."""
    acked: list[Receipt] = field(default_factory=list)
    """Alerts whose PUBACK came back."""
    events: int = 0
    """Alert events of the measured bars (as received over MQTT)."""
    per_bar: list[int] = field(default_factory=list)
    """Alert events of each measured bar (the simulator's regime shifts make bursts)."""
    unmatched: int = 0
    """Telegram messages that name no pair or time (none expected)."""
    lag_ms: list[float] = field(default_factory=list)
    trades_per_s: float = 0.0
    cpu_percent: float = 0.0
    """CPU time of this process (all threads: the daemon and the lag probe) per second."""
    machine_stalls: list[float] = field(default_factory=list)
    """The reference process's wake-ups later than ``REFERENCE_MS`` while measuring (ms)."""


def settings_for(
    tmp: Path, sim_url: str, api_url: str, broker: int, pairs: int, routes: str
) -> Settings:
    names = symbols(pairs)
    rules = tmp / "rules.yaml"
    rules.write_text(rules_yaml(names[1:], routes))
    return Settings(
        data_dir=tmp / "data",
        feed={"source": "simulator", "base_url": sim_url, "symbols": names},
        bars={"timeframes": ["1s"]},
        pairs=[{"y": y, "x": X, "windows": [30]} for y in names[1:]],
        alerts={"rules_file": rules},
        telegram={"token": TOKEN, "chat_ids": [CHAT], "api_base_url": api_url,
                  "poll_timeout": "1s"},
        mqtt={"host": "127.0.0.1", "port": broker, "client_id": "pairwatch-bench"},
    )  # fmt: skip


def epoch_ms(text: str) -> int | None:
    """Return the last ``YYYY-MM-DD HH:MM:SS UTC`` of a message as epoch ms."""
    found = _UTC_RE.findall(text)
    if not found:
        return None
    moment = datetime.strptime(found[-1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000


def latencies(
    receipts: Sequence[Receipt],
    closes: dict[tuple[str, int], float],
    start: float,
    end: float,
    stalls: Sequence[tuple[float, float]] = (),
) -> tuple[list[float], list[float], list[float]]:
    """Return the latencies (ms) of receipts of bars closed in [start, end], of the first
    receipt of each bar (against its own pair's close), and of the receipts during whose
    fan-out (close → receipt) the reference process saw no machine stall (``stalls``)."""
    every: list[float] = []
    quiet: list[float] = []
    first: dict[int, tuple[float, float]] = {}  # bar → (receipt, its pair's close)
    ends = np.array([t for t, _ in stalls])
    begins = np.array([t - late / 1000 for t, late in stalls])
    for at, pair, bar in receipts:
        closed = closes.get((pair, bar))
        if closed is None or not start <= closed <= end:
            continue
        every.append((at - closed) * 1000)
        if not np.any((ends > closed) & (begins < at)):
            quiet.append((at - closed) * 1000)
        if bar not in first or at < first[bar][0]:
            first[bar] = (at, closed)
    return every, [(at - closed) * 1000 for at, closed in first.values()], quiet


async def run_daemon(
    settings: Settings, args: argparse.Namespace, run: Run
) -> tuple[dict[tuple[str, int], float], float, float]:
    """Run the daemon through warm-up and measurement until the measured bars' alerts are
    delivered; return the bar closes and the measured interval (monotonic seconds)."""
    closes: dict[tuple[str, int], float] = {}

    def on_snapshots(pairs: Sequence[PairSnapshot], _: Sequence[SymbolSnapshot]) -> None:
        now = time.monotonic()
        for s in pairs:
            closes.setdefault((f"{s.y}/{s.x}", s.ts + 1000), now)

    original = MqttLink.publish

    async def publish(self: MqttLink, topic: str, payload: bytes | str, **kw: Any) -> None:
        alert = "/alerts/" in topic
        if alert:
            event = json.loads(payload)["event"]
            stamp = (event["target"], int(event["at"]))
            run.published.append((time.monotonic(), *stamp))
        await original(self, topic, payload, **kw)
        if alert:
            run.acked.append((time.monotonic(), *stamp))

    MqttLink.publish = publish  # type: ignore[method-assign]
    daemon = Daemon(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        ready = asyncio.create_task(daemon.ready.wait())
        await asyncio.wait({task, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert daemon.ready.is_set()
        assert daemon.analytics is not None
        assert daemon.alerts is not None
        daemon.analytics._listeners.insert(0, on_snapshots)  # first: before the rules
        await asyncio.sleep(args.warmup)
        done = asyncio.Event()
        lag = asyncio.create_task(loop_lag(run.lag_ms, done)) if args.lag_probe else None
        accepted, cpu = daemon.health.accepted, time.process_time()
        start = time.monotonic()
        await asyncio.sleep(args.duration)
        end = time.monotonic()
        run.cpu_percent = 100 * (time.process_time() - cpu) / (end - start)
        run.trades_per_s = (daemon.health.accepted - accepted) / (end - start)
        done.set()
        if lag is not None:
            await lag
        created = daemon.alerts.stage.notifications
        await asyncio.wait_for(
            daemon.alerts.dispatcher.wait_until(
                lambda counters: sum(c.delivered + c.failed for c in counters.values()) >= created
            ),
            120,
        )
        await asyncio.sleep(0.5)  # the last alerts through the broker to the subscriber
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        MqttLink.publish = original  # type: ignore[method-assign]
    return closes, start, end


async def one_run(broker: Mosquitto, tmp: Path, args: argparse.Namespace) -> Run:
    run = Run()
    peers_out = tmp / "peers.json"
    async with (
        child("--serve", "simulator", "--pairs", str(args.pairs),
              "--trades", str(args.trades)) as sim_url,
        child("--serve", "peers", "--port", str(broker.port), "--out", str(peers_out)) as api_url,
        child("--serve", "reference", "--out", str(tmp / "reference.json")),
    ):  # fmt: skip
        settings = settings_for(tmp, sim_url, api_url, broker.port, args.pairs, args.routes)
        closes, start, end = await run_daemon(settings, args, run)
    got = json.loads(peers_out.read_text())
    stalls = [(t, late) for t, late in json.loads((tmp / "reference.json").read_text())
              if start - 1 <= t <= end + 120]  # fmt: skip
    run.machine_stalls = [late for t, late in stalls if start <= t <= end]
    mqtt: list[Receipt] = []
    for at, payload in got["mqtt"]:
        body = json.loads(payload)
        if body.get("type") == "alert":
            mqtt.append((at, body["event"]["target"], int(body["event"]["at"])))
    telegram: list[Receipt] = []
    for at, text, status in got["telegram"]:
        pair, bar = _TARGET_RE.search(text), epoch_ms(text)
        if status == 200 and pair is not None and bar is not None:
            telegram.append((at, pair.group(1), bar))
        else:
            run.unmatched += status == 200
    series = (("mqtt publish", run.published), ("mqtt ack", run.acked), ("mqtt", mqtt),
              ("telegram", telegram))  # fmt: skip
    for name, receipts in series:
        if receipts:
            every, first, quiet = latencies(receipts, closes, start, end, stalls)
            run.latency_ms[name], run.latency_ms[f"{name} first"] = every, first
            run.latency_ms[f"{name} quiet"] = quiet
    run.events = len(run.latency_ms.get("mqtt", []))
    bars = Counter(bar for _, pair, bar in mqtt if start <= closes.get((pair, bar), -1) <= end)
    run.per_bar = list(bars.values())
    return run


# --- report ----------------------------------------------------------------------------------

SERIES = {
    "mqtt publish": "bar close → MQTT publish (daemon hands the PUBLISH to its client)",
    "mqtt publish quiet": "the same, alerts whose fan-out saw no machine stall",
    "mqtt ack": "bar close → MQTT PUBACK back in the daemon",
    "mqtt": "bar close → MQTT subscriber",
    "mqtt quiet": "the same, alerts whose fan-out saw no machine stall",
    "mqtt first": "bar close → MQTT subscriber, first alert of each bar",
    "telegram": "bar close → Bot API sendMessage",
    "telegram first": "bar close → Bot API sendMessage, first message of each bar",
}


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def line(name: str, values: Sequence[float], fmt: str = "{:.2f}") -> str:
    shown = ", ".join(fmt.format(v) for v in values)
    return f"  {name}: median {fmt.format(statistics.median(values))} (runs: {shown})"


def report(runs: Sequence[Run], duration: float) -> None:
    print(line("trades/s accepted", [r.trades_per_s for r in runs], "{:.0f}"))
    print(line("alert events/s (MQTT)", [r.events / duration for r in runs], "{:.1f}"))
    print(line("alert events per bar, p50", [pct(r.per_bar, 50) for r in runs], "{:.0f}"))
    print(line("alert events per bar, max", [max(r.per_bar, default=0) for r in runs], "{:.0f}"))
    print(line("CPU % of one core (this process)", [r.cpu_percent for r in runs], "{:.0f}"))
    for key, label in SERIES.items():
        samples = [r.latency_ms.get(key, []) for r in runs]
        if not any(samples):
            continue
        print(f"{label}, ms ({'/'.join(str(len(s)) for s in samples)} samples):")
        for q in (50, 99):
            print(line(f"p{q}", [pct(s, q) for s in samples]))
        print(line("max", [max(s, default=float("nan")) for s in samples]))
    print(line(f"machine stalls > {REFERENCE_MS:g} ms (idle reference process), count",
               [len(r.machine_stalls) for r in runs], "{:.0f}"))  # fmt: skip
    print(line("machine stall max ms", [max(r.machine_stalls, default=0.0) for r in runs]))
    if any(r.lag_ms for r in runs):
        print(line("event-loop lag p99 ms", [pct(r.lag_ms, 99) for r in runs]))
        print(line("event-loop lag max ms", [max(r.lag_ms) for r in runs]))
    unmatched = sum(r.unmatched for r in runs)
    if unmatched:
        print(f"  ({unmatched} Telegram messages could not be matched to a bar)")


async def bench(args: argparse.Namespace) -> None:
    print(machine())
    print(
        f"{args.pairs} pairs on 1 s bars (window 30), {args.trades:.0f} trades/s over "
        f"{args.pairs + 1} symbols, routes [{args.routes}], warm-up {args.warmup:.0f} s, "
        f"{args.duration:.0f} s measured, {args.runs} runs per broker setting"
    )
    modes = {"nodelay": [True], "default": [False], "both": [True, False]}[args.broker]
    for nodelay in modes:
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp_name:
                tmp = Path(tmp_name)
                extra = ["set_tcp_nodelay true"] if nodelay else []
                with Mosquitto(tmp / "broker", extra=extra) as broker:
                    results.append(await one_run(broker, tmp, args))
        print(f"\nmosquitto {'set_tcp_nodelay true' if nodelay else 'defaults'}:")
        report(results, args.duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=40.0, help="seconds before measuring")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--broker", choices=("both", "nodelay", "default"), default="both")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--trades", type=float, default=5000.0, help="trades per second")
    parser.add_argument(
        "--routes", default="mqtt, telegram", help="the rules' notify list (e.g. 'mqtt')"
    )
    parser.add_argument(
        "--no-lag-probe", dest="lag_probe", action="store_false",
        help="leave out the 1 ms event-loop lag probe",
    )  # fmt: skip
    parser.add_argument(
        "--serve", choices=("simulator", "peers", "reference"), help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "reference":
        args.out.write_text(json.dumps(asyncio.run(serve_reference())))
    elif args.serve == "simulator":
        asyncio.run(serve_simulator(symbols(args.pairs), args.trades))
    elif args.serve == "peers":
        asyncio.run(serve_peers(args.port, args.out))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
