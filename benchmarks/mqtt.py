"""MQTT against a local mosquitto: sustained analytics publishing, and alert latency.

1. **Analytics.** ``--rate`` pair snapshots per second (default 1,000: one batch a second,
   like 1,000 pair series on 1 s bars) for ``--seconds`` through ``MqttPublisher``, over
   ``MqttLink`` to a mosquitto started here on a free loopback port, received by a
   ``mosquitto_sub`` process. Reported: published/s, the queue depth before each batch
   (0 means the previous second's batch was all sent: no growth), the most pending at
   once, values coalesced (replaced before they were sent), how long a batch takes to
   drain, messages received, and the event loop's lag while publishing.
2. **Alerts.** 100 alerts through ``MqttNotifier.deliver()`` (QoS 1), 20 ms apart, alone
   and during the analytics load; latency from the ``deliver()`` call to the receive time
   that ``mosquitto_sub`` stamps (``%U``, the wall clock both processes share), and the
   ``deliver()`` time itself (until the broker's PUBACK). ``--broker-nodelay`` sets
   mosquitto's ``set_tcp_nodelay true`` (its sends to subscribers skip Nagle's delay).

Each scenario runs ``--runs`` times; medians are reported with every run's value.

    .venv/bin/python benchmarks/mqtt.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import loop_lag, machine
from pairwatch.config.notifier_settings import MqttSettings
from pairwatch.daemon.alert_rows import OutboxItem, alert_event_payload
from pairwatch.events import AlertEvent, PairSnapshot
from pairwatch.notifiers.mqtt import MqttLink, MqttNotifier
from pairwatch.notifiers.mqtt_publish import MqttPublisher
from support.mosquitto import MOSQUITTO_SUB, Mosquitto

PREFIX = "bench/v1"
METRICS = (
    "hedge_ratio", "intercept", "spread", "spread_std", "zscore", "correlation",
    "price_correlation", "half_life", "kalman_beta", "kalman_alpha", "kalman_spread",
    "kalman_zscore", "max_abs_zscore", "adf_stat", "adf_pvalue", "adf_lag", "coint_pvalue",
)  # fmt: skip
WINDOWS = (30, 60, 120, 240)


@dataclass
class AnalyticsRun:
    seconds: float = 0.0
    published: int = 0
    received: int = 0
    coalesced: int = 0
    max_pending: int = 0
    pending_before_batch: list[int] = field(default_factory=list)
    drain_ms: list[float] = field(default_factory=list)
    call_us: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    """CPU time of this process (all threads) during the load: the publisher's cost."""

    @property
    def rate(self) -> float:
        return self.published / self.seconds


def batch(rate: int, tick: int) -> list[PairSnapshot]:
    """Return ``rate`` snapshots of distinct series (pairs × 4 windows) for second ``tick``."""
    ts = 1_763_000_000_000 + tick * 1000
    out = []
    for n in range(rate):
        pair, window = divmod(n, len(WINDOWS))
        metrics = {m: math.sin(n + tick + i) for i, m in enumerate(METRICS)}
        metrics["half_life"] = math.nan
        out.append(PairSnapshot(f"S{pair:04d}USDT", "BTCUSDT", "1s", WINDOWS[window], ts, metrics))
    return out


async def subscriber(
    broker: Mosquitto, topic: str, out: Path, qos: int, name: str
) -> asyncio.subprocess.Process:
    """Start ``mosquitto_sub`` writing ``<receive time>|<payload>`` lines, once subscribed."""
    mark = len(broker.lines)
    process = await asyncio.create_subprocess_exec(
        MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-i", name, "-q", str(qos),
        "-t", topic, "-R", "-F", "%U|%p", stdout=out.open("w"),
    )  # fmt: skip
    await asyncio.to_thread(broker.wait_for_log, f"{name} {qos} {topic}", 10, since=mark)
    return process


async def stop(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    await process.wait()


async def analytics_load(
    publisher: MqttPublisher, rate: int, seconds: int, run: AnalyticsRun
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    batches = [batch(rate, t) for t in range(seconds)]
    for tick, snapshots in enumerate(batches):
        await asyncio.sleep(max(0.0, start + tick - loop.time()))
        run.pending_before_batch.append(publisher.pending)
        began = time.perf_counter()
        publisher.on_snapshots(snapshots, [])
        run.call_us.append((time.perf_counter() - began) * 1e6)
        while publisher.pending:  # noqa: ASYNC110 -- the benchmark's probe, 1 ms resolution
            await asyncio.sleep(0.001)
        run.drain_ms.append((time.perf_counter() - began) * 1000)
    await asyncio.sleep(max(0.0, start + seconds - loop.time()))  # to the end of the last second
    run.seconds = loop.time() - start


async def analytics(
    broker: Mosquitto, rate: int, seconds: int, qos: int, tmp: Path
) -> AnalyticsRun:
    settings = MqttSettings(host="127.0.0.1", port=broker.port, topic_prefix=PREFIX,
                            client_id="bench-analytics", analytics_qos=qos)  # fmt: skip
    link = MqttLink(settings)
    publisher = MqttPublisher(link)
    received = tmp / "analytics.txt"
    sub = await subscriber(broker, f"{PREFIX}/analytics/#", received, qos, "bench-sub-a")
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(publisher.run())]
    await link.wait_connected(10)
    run = AnalyticsRun()
    done = asyncio.Event()
    lag = asyncio.create_task(loop_lag(run.lag_ms, done))
    cpu = time.process_time()
    await analytics_load(publisher, rate, seconds, run)
    run.cpu_s = time.process_time() - cpu
    done.set()
    await lag
    await link.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await stop(sub)
    run.published, run.coalesced = publisher.published, publisher.coalesced
    run.max_pending = publisher.max_pending
    run.received = sum(1 for _ in received.open())
    return run


def alert(n: int) -> OutboxItem:
    e = AlertEvent(
        rule="bench", target="ETHUSDT/BTCUSDT", timeframe="1s", window=30, kind="firing",
        at=1_763_000_000_000 + n * 1000, severity="warning", metric="zscore", value=2.5,
        threshold=2.0, message=f"alert {n}", values={"zscore": 2.5}, labels={}, notify=True,
    )  # fmt: skip
    return OutboxItem(n, e.key, "mqtt", {}, alert_event_payload(e), e.at, 0, e.at)


async def alerts(
    broker: Mosquitto, count: int, load_rate: int, tmp: Path
) -> tuple[list[float], list[float]]:
    """Return (deliver() call → receipt ms, deliver() ms) of ``count`` alerts."""
    settings = MqttSettings(host="127.0.0.1", port=broker.port, topic_prefix=PREFIX,
                            client_id="bench-alerts")  # fmt: skip
    link = MqttLink(settings)
    notifier = MqttNotifier(link)
    publisher = MqttPublisher(link)
    received = tmp / "alerts.txt"
    sub = await subscriber(broker, f"{PREFIX}/alerts/#", received, 1, "bench-sub-b")
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(publisher.run())]
    await link.wait_connected(10)
    if load_rate:
        seconds = math.ceil(count * 0.02) + 2
        tasks.append(
            asyncio.create_task(analytics_load(publisher, load_rate, seconds, AnalyticsRun()))
        )
        await asyncio.sleep(0.5)  # into the load: the first batch is out
    sent: dict[str, int] = {}
    deliver_ms = []
    for n in range(count):
        item = alert(n)
        sent[item.key] = time.time_ns()
        began = time.perf_counter()
        await notifier.deliver(item)
        deliver_ms.append((time.perf_counter() - began) * 1000)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    await stop(sub)
    await link.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = []
    for line in received.open():
        at, payload = line.split("|", 1)
        key = json.loads(payload)["key"]
        latencies.append((int(at.replace(".", "")) - sent[key]) / 1e6)
    assert len(latencies) == count, f"received {len(latencies)} of {count} alerts"
    return latencies, deliver_ms


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def median_line(name: str, values: list[float], fmt: str = "{:.2f}") -> str:
    return (
        f"{name}: median {fmt.format(statistics.median(values))} (runs: "
        + ", ".join(fmt.format(v) for v in values)
        + ")"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="snapshots per second")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--analytics-qos", type=int, default=0, choices=(0, 1, 2))
    parser.add_argument(
        "--broker-nodelay", action="store_true", help="set_tcp_nodelay true in mosquitto.conf"
    )
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        extra = ["set_tcp_nodelay true"] if args.broker_nodelay else []
        broker = Mosquitto(tmp / "broker", extra=extra)
        broker.start()
        try:
            print(f"mosquitto on 127.0.0.1:{broker.port}; {args.rate} snapshots/s for "
                  f"{args.seconds} s, analytics QoS {args.analytics_qos}, broker "
                  f"{'set_tcp_nodelay true' if args.broker_nodelay else 'defaults'}, "
                  f"{args.runs} runs")  # fmt: skip
            runs = [await analytics(broker, args.rate, args.seconds, args.analytics_qos, tmp)
                    for _ in range(args.runs)]  # fmt: skip
            print("\n1. analytics")
            print(median_line("published/s", [r.rate for r in runs], "{:.0f}"))
            print(median_line("received by mosquitto_sub", [r.received for r in runs], "{:.0f}"))
            print(median_line("published", [r.published for r in runs], "{:.0f}"))
            print(median_line("coalesced", [r.coalesced for r in runs], "{:.0f}"))
            print(median_line("max pending", [r.max_pending for r in runs], "{:.0f}"))
            print(
                median_line(
                    "max pending before a batch",
                    [max(r.pending_before_batch) for r in runs],
                    "{:.0f}",
                )
            )
            print(
                median_line(
                    "batch drain ms (median of batches)",
                    [statistics.median(r.drain_ms) for r in runs],
                )
            )
            print(median_line("batch drain ms (max)", [max(r.drain_ms) for r in runs]))
            print(
                median_line(
                    "on_snapshots call µs per batch (median)",
                    [statistics.median(r.call_us) for r in runs],
                    "{:.0f}",
                )
            )
            print(median_line("CPU % of one core (this process, incl. the lag probe)",
                              [100 * r.cpu_s / r.seconds for r in runs], "{:.1f}"))  # fmt: skip
            print(median_line("loop lag ms p99", [pct(r.lag_ms, 99) for r in runs]))
            print(median_line("loop lag ms max", [max(r.lag_ms) for r in runs]))
            for load in (0, args.rate):
                results = [await alerts(broker, args.alerts, load, tmp) for _ in range(args.runs)]
                label = f"during {load} snapshots/s" if load else "idle"
                print(f"\n2. alerts, {label}: {args.alerts} alerts 20 ms apart, QoS 1")
                print(
                    median_line(
                        "deliver() → received ms p50", [pct(r[0], 50) for r in results], "{:.3f}"
                    )
                )
                print(
                    median_line(
                        "deliver() → received ms p99", [pct(r[0], 99) for r in results], "{:.3f}"
                    )
                )
                print(
                    median_line(
                        "deliver() → received ms max", [max(r[0]) for r in results], "{:.3f}"
                    )
                )
                print(
                    median_line(
                        "deliver() ms (to PUBACK) p50", [pct(r[1], 50) for r in results], "{:.3f}"
                    )
                )
                print(
                    median_line(
                        "deliver() ms (to PUBACK) p99", [pct(r[1], 99) for r in results], "{:.3f}"
                    )
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
