"""Command line: ``pairwatch run | demo | simulate | replay | rules check|test | mute | unmute |
export``.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from pairwatch import __version__
from pairwatch.errors import ConfigError, PairwatchError, StoreError
from pairwatch.logs import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    from pairwatch.daemon.export_cli import add_export_args
    from pairwatch.daemon.mute_cli import add_mute_args
    from pairwatch.daemon.sources.simulator_cli import add_simulator_args

    parser = argparse.ArgumentParser(
        prog="pairwatch", description="Real-time pairs-trading monitor for Binance."
    )
    parser.add_argument("--version", action="version", version=f"pairwatch {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="run the daemon until signalled")
    _common_args(run)

    demo = verbs.add_parser("demo", help="run the simulator and the daemon together, offline")
    _common_args(demo)
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("pairwatch-demo"),
        help="where the demo keeps its data (default: ./pairwatch-demo)",
    )

    simulate = verbs.add_parser("simulate", help="serve a Binance-compatible websocket simulator")
    add_simulator_args(simulate)
    simulate.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")

    replay = verbs.add_parser(
        "replay", help="replay Binance CSV dumps or recorded frame files into SQLite bars"
    )
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE")
    replay.add_argument("--db", type=Path, required=True, help="SQLite file to write")
    replay.add_argument(
        "--timeframe",
        action="append",
        metavar="TF",
        help="bar timeframe, repeatable (default: the settings', i.e. 1s 1m 5m)",
    )
    replay.add_argument(
        "--symbol",
        action="append",
        metavar="SYM",
        help="only these symbols; names the symbol of a lone non-standard file",
    )
    replay.add_argument(
        "--pair",
        action="append",
        metavar="Y/X",
        help="analyse this pair (y regressed on x), repeatable; replaces the settings' pairs",
    )
    replay.add_argument(
        "--window",
        action="append",
        type=int,
        metavar="N",
        help="rolling window in bars, repeatable; replaces every pair's windows",
    )
    _common_args(replay)

    rules = verbs.add_parser("rules", help="work with alert rules files")
    rule_verbs = rules.add_subparsers(dest="rules_verb", required=True, metavar="VERB")
    check = rule_verbs.add_parser(
        "check",
        help="validate a rules file (against the settings' pairs and symbols); exit 0 or 2",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    against = check.add_mutually_exclusive_group()
    against.add_argument(
        "--no-settings",
        action="store_true",
        help="check the file alone, not against the configured pairs, symbols and timeframes",
    )
    against.add_argument(
        "--demo",
        action="store_true",
        help="check it against the demo's settings (the pairs 'pairwatch demo' analyses)",
    )
    _common_args(check)
    test = rule_verbs.add_parser(
        "test", help="backtest a rules file on stored analytics or replayed files"
    )
    test.add_argument("file", type=Path, metavar="RULES")
    source = test.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", type=Path, help="a pairwatch SQLite file with analytics")
    source.add_argument(
        "--replay", type=Path, nargs="+", metavar="FILE", help="replay these files first"
    )
    test.add_argument("--from", dest="from_", metavar="TIME", help="ISO time or epoch ms")
    test.add_argument("--to", metavar="TIME", help="ISO time or epoch ms (exclusive)")
    test.add_argument("--limit", type=_count, default=200, help="transitions shown (default 200)")
    test.add_argument(
        "--demo", action="store_true", help="with the demo's settings (its pair and windows)"
    )
    _common_args(test)
    add_mute_args(verbs)
    add_export_args(verbs)
    return parser


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="settings file (TOML); default: $PAIRWATCH_CONFIG"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (overrides settings)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = _parser().parse_args(argv)
    try:
        return _VERBS[args.verb](args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"pairwatch: {line}", file=sys.stderr)
        return EXIT_USAGE
    except PairwatchError as exc:
        print(f"pairwatch: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _run(args: argparse.Namespace) -> int:
    from pairwatch.config.load import load_settings
    from pairwatch.daemon.service import Daemon

    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.log_level)
    return _until_signalled(lambda stop: Daemon(settings).run(stop))


def _demo(args: argparse.Namespace) -> int:
    from pairwatch.daemon.demo import run_demo

    configure_logging(args.log_level or "INFO")
    return _until_signalled(
        lambda stop: run_demo(
            stop, config=args.config, data_dir=args.data_dir, duration=args.duration
        )
    )


def _simulate(args: argparse.Namespace) -> int:
    from pairwatch.daemon.sources.simulator_cli import run_from_args

    configure_logging(args.log_level)
    return _until_signalled(lambda stop: run_from_args(args, stop))


def _replay(args: argparse.Namespace) -> int:
    from pairwatch.daemon.replay_cli import run_replay

    configure_logging(args.log_level or "WARNING")
    stats = run_replay(
        args.files,
        db=args.db,
        timeframes=args.timeframe,
        symbols=args.symbol,
        config=args.config,
        pairs=args.pair,
        windows=args.window,
    )
    rejected = ", ".join(f"{k}={v:,}" for k, v in sorted(stats.rejected.items()) if v) or "none"
    print(
        f"replayed {stats.trades_read:,} trades ({stats.trades_accepted:,} accepted; "
        f"rejected: {rejected}) into {stats.bars:,} bars, {stats.gaps} gaps, "
        f"in {stats.seconds:.2f} s ({stats.trades_per_second:,.0f} trades/s) -> {args.db}"
    )
    if stats.pair_rows or stats.symbol_rows:
        print(
            f"analysed: {stats.pair_rows:,} pair rows, {stats.symbol_rows:,} symbol rows "
            f"in {stats.analytics_seconds:.2f} s"
        )
    return EXIT_OK


def _rules(args: argparse.Namespace) -> int:
    if args.rules_verb == "test":
        return _rules_test(args)
    from pairwatch.config.load import load_settings
    from pairwatch.config.rules_load import load_rules

    settings = None if args.no_settings else load_settings(args.config)
    if args.demo:
        import tempfile

        from pairwatch.daemon.demo import demo_settings

        assert settings is not None
        settings = demo_settings(settings, Path(tempfile.gettempdir()))
    rules = load_rules(args.file, settings).rules
    pairs = sum(r.kind == "pair" for r in rules)
    against = "" if settings is None else ", checked against the settings"
    noun = "rule" if len(rules) == 1 else "rules"
    print(
        f"{args.file}: {len(rules)} {noun} ok ({pairs} on pairs, {len(rules) - pairs} on "
        f"symbols{against})"
    )
    return EXIT_OK


def _rules_test(args: argparse.Namespace) -> int:
    import tempfile

    from pairwatch.config.load import load_settings
    from pairwatch.config.rules_load import load_rules
    from pairwatch.daemon import store
    from pairwatch.daemon.backtest import format_table, run_backtest
    from pairwatch.daemon.replay_cli import run_replay

    configure_logging(args.log_level or "WARNING")
    settings = load_settings(args.config)
    if args.demo:
        from pairwatch.daemon.demo import demo_settings

        settings = demo_settings(settings, Path(tempfile.gettempdir()))
    rules = load_rules(args.file, settings)
    span = (_epoch_ms(args.from_, "--from"), _epoch_ms(args.to, "--to"))
    with tempfile.TemporaryDirectory(prefix="pairwatch-backtest-") as tmp:
        db = args.db
        if args.replay is not None:
            db = Path(tmp) / "replay.sqlite3"
            pairs = [p.name for p in settings.pairs] if args.demo else None
            windows = sorted({w for p in settings.pairs for w in p.windows}) if args.demo else None
            run_replay(args.replay, db=db, config=args.config, pairs=pairs, windows=windows)
        elif not db.is_file():
            raise ConfigError([f"{db}: no such file"])
        try:
            conn = store.open_store(db, readonly=args.replay is None)
        except StoreError as exc:
            raise ConfigError([f"--db {db}: {exc}"]) from None
        try:
            result = run_backtest(conn, rules, settings, from_ts=span[0], to_ts=span[1])
        finally:
            conn.close()
    print(format_table(result, limit=args.limit))
    return EXIT_OK


_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def _epoch_ms(text: str | None, option: str) -> int | None:
    """Parse an ISO 8601 time (UTC unless it says otherwise) or epoch milliseconds."""
    if text is None:
        return None
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > _MAX_EPOCH_MS:
            raise ConfigError([f"{option}: {text} is past the year 9999"])
        return value
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError([f"{option}: {text!r} is not an ISO time or epoch ms"]) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _until_signalled(start: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> int:
    """Run a coroutine on a new loop; SIGTERM and SIGINT set its ``stop`` event."""

    async def supervise() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():  # a second signal while shutting down: the user insists
                print("pairwatch: stopping now, without finishing the shutdown", file=sys.stderr)
                os._exit(EXIT_FAILURE)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await start(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(supervise())
    return EXIT_OK


def _mute(args: argparse.Namespace) -> int:
    from pairwatch.daemon.mute_cli import mute

    print(mute(args))
    return EXIT_OK


def _unmute(args: argparse.Namespace) -> int:
    from pairwatch.daemon.mute_cli import unmute

    print(unmute(args))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from pairwatch.daemon.export_cli import run_export

    print(run_export(args))
    return EXIT_OK


_VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "demo": _demo,
    "simulate": _simulate,
    "replay": _replay,
    "rules": _rules,
    "mute": _mute,
    "unmute": _unmute,
    "export": _export,
}

if __name__ == "__main__":
    sys.exit(main())
