"""Alert rules: evaluating 1,000 rules on one bar's snapshots, and loading a 1,000-rule file.

- Evaluation: 100 pairs with 10 rules each (z-score thresholds, ``all:`` compositions with
  correlation and cointegration, crossings, hysteresis), one snapshot per pair per bar, as
  the daemon hands them over when a timeframe's bars close. Median over many bars of the
  time ``RuleEngine.on_pair_snapshots`` takes for the whole bar.
- Loading: the same 1,000 rules written as YAML, read with ``load_rules`` (safe YAML,
  schema validation, checks against the settings), median of several loads.

    .venv/bin/python benchmarks/rules.py [--bars 500] [--loads 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine
from pairwatch.analytics.rule_engine import RuleEngine
from pairwatch.config.rules_load import load_rules
from pairwatch.config.settings import Settings
from pairwatch.events import PairSnapshot

PAIRS = 100
TEMPLATES = (
    "when: abs(zscore) >= {t}\n    for: 3 bars\n    clear: abs(zscore) < 0.5",
    "when: zscore crosses_above {t}",
    "when: zscore crosses_below -{t}",
    "when:\n      all:\n        - abs(zscore) >= {t}\n        - correlation >= 0.7\n"
    "        - coint_pvalue < 0.05",
    "when:\n      any:\n        - abs(kalman_zscore) >= {t}\n        - abs(zscore) >= 3",
    "when: half_life < {t}\n    for: 2m",
    "when: abs(zscore) >= {t}\n    repeat_every: 10m",
    "when: correlation < 0.{t}",
    "when: spread_std > 0.0{t}",
    "when: abs(zscore) >= {t}\n    keep_firing_for: 2m",
)


def rules_yaml(pairs: list[str]) -> str:
    lines = ["defaults:", "  timeframe: 1m", "  window: 100", "rules:"]
    for p, pair in enumerate(pairs):
        for k, template in enumerate(TEMPLATES):
            lines += [
                f"  - name: r{p}-{k}",
                f"    pair: {pair}",
                "    " + template.format(t=2 + k % 3),
                '    message: "{pair} z {zscore:+.2f}"',
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    symbols = ["XUSDT", *(f"Y{i}USDT" for i in range(PAIRS))]
    pairs = [f"Y{i}USDT/XUSDT" for i in range(PAIRS)]
    settings = Settings(feed={"symbols": symbols}, bars={"timeframes": ["1m"]}, pairs=list(pairs))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(rules_yaml(pairs))
        loads = []
        for _ in range(args.loads):
            start = time.perf_counter()
            rules = load_rules(path, settings).rules
            loads.append(time.perf_counter() - start)
    engine = RuleEngine(rules, pairs=pairs, symbols=symbols)
    rng = np.random.default_rng(1)
    z = np.cumsum(rng.normal(0, 0.3, (args.bars, PAIRS)), axis=0) % 6 - 3
    times = []
    events = 0
    for t in range(args.bars):
        snapshots = [
            PairSnapshot(f"Y{i}USDT", "XUSDT", "1m", 100, t * 60_000, {
                "zscore": float(z[t, i]), "correlation": 0.8, "coint_pvalue": 0.01,
                "kalman_zscore": float(z[t, i]) * 0.9, "half_life": 20.0 + i % 7,
                "spread_std": 0.002, "hedge_ratio": 0.05,
            })
            for i in range(PAIRS)
        ]  # fmt: skip
        start = time.perf_counter()
        events += len(engine.on_pair_snapshots(snapshots))
        times.append(time.perf_counter() - start)
    print(machine())
    print(f"{len(rules)} rules on {PAIRS} pairs, {args.bars} bars, {events} transitions")
    print(
        f"evaluate one bar: median {statistics.median(times) * 1e3:.3f} ms, "
        f"p99 {np.percentile(times, 99) * 1e3:.3f} ms (target < 1 ms)"
    )
    print(
        f"load the {len(rules)}-rule file: median {statistics.median(loads) * 1e3:.1f} ms "
        f"of {[round(x * 1e3, 1) for x in loads]} (target < 200 ms)"
    )


if __name__ == "__main__":
    main()
