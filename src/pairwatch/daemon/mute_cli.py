"""``pairwatch mute`` and ``pairwatch unmute``: silences stored in the daemon's database.

A silence suppresses the notifications of a rule (or of every rule), optionally of one
target, until it ends; the running daemon reads silences within ``alerts.watch_interval``.
States and events go on being recorded (docs/rules.md, "Silences").
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from pairwatch.config.durations import format_duration, parse_duration
from pairwatch.config.settings import Settings
from pairwatch.daemon import alert_rows
from pairwatch.daemon.store import open_store
from pairwatch.errors import ConfigError, PairwatchError, StoreError
from pairwatch.notifiers.formatting import utc

ALL = "all"
"""The RULE argument that means every rule (stored as ``*``)."""

MAX_SILENCE = timedelta(days=366)


def add_mute_args(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``mute`` and ``unmute`` verbs."""
    mute = verbs.add_parser(
        "mute", help="silence a rule's (or all rules') notifications for a while; --list shows"
    )
    mute.add_argument("rule", nargs="?", metavar="RULE", help=f"a rule name, or '{ALL}'")
    mute.add_argument("duration", nargs="?", metavar="DURATION", help="e.g. 30m, 2h, 1d")
    mute.add_argument("--target", metavar="PAIR|SYMBOL", help="only this pair or symbol")
    mute.add_argument("--reason", help="a note stored with the silence")
    mute.add_argument("--list", action="store_true", help="list the active silences")
    _db_args(mute)
    unmute = verbs.add_parser("unmute", help="end the silences of a rule (or of 'all')")
    unmute.add_argument("rule", metavar="RULE", help=f"a rule name, or '{ALL}'")
    unmute.add_argument("--target", metavar="PAIR|SYMBOL", help="only this target's silences")
    _db_args(unmute)


def _db_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, help="the daemon's SQLite file (default: settings)")
    parser.add_argument(
        "--config", type=Path, help="settings file (TOML); default: $PAIRWATCH_CONFIG"
    )


def mute(args: argparse.Namespace, now: int | None = None) -> str:
    """Run ``pairwatch mute``; return what to print. Raises ``ConfigError`` on bad input."""
    now = now if now is not None else time.time_ns() // 1_000_000
    db, settings = _database(args)
    if args.list:
        if args.rule is not None:
            raise ConfigError(["mute --list takes no RULE or DURATION"])
        return _listing(db, now)
    if args.rule is None or args.duration is None:
        raise ConfigError(["mute: give RULE and DURATION (e.g. 'pairwatch mute ethbtc-z 30m')"])
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        raise ConfigError([f"mute: DURATION {args.duration!r}: {exc}"]) from None
    if not timedelta(0) < duration <= MAX_SILENCE:
        raise ConfigError(["mute: DURATION must be more than 0 and at most 366 days"])
    rule = _rule(args.rule, settings)
    target = _target(args.target, settings)
    end = now + int(duration.total_seconds() * 1000)
    conn = _open(db)
    try:
        alert_rows.add_silence(conn, rule, target, now, end, _who(), args.reason)
    except sqlite3.Error as exc:
        raise PairwatchError(f"{db}: cannot store the silence: {exc}") from None
    finally:
        conn.close()
    what = "every rule" if rule == "*" else f"rule {rule}"
    where = f" on {target}" if target else ""
    return f"muted {what}{where} for {format_duration(duration)}, until {utc(end)}"


def unmute(args: argparse.Namespace, now: int | None = None) -> str:
    """Run ``pairwatch unmute``; return what to print."""
    now = now if now is not None else time.time_ns() // 1_000_000
    db, settings = _database(args)
    rule = _rule(args.rule, settings, check=False)
    target = _target(args.target, settings)
    conn = _open(db)
    try:
        ended = alert_rows.cancel_silences(conn, rule, target, now)
    except sqlite3.Error as exc:
        raise PairwatchError(f"{db}: cannot end the silences: {exc}") from None
    finally:
        conn.close()
    if not ended:
        return f"no active silence of {args.rule}" + (f" on {target}" if target else "")
    return f"ended {len(ended)} silence(s) of {args.rule}" + (f" on {target}" if target else "")


def _listing(db: Path, now: int) -> str:
    conn = _open(db)
    try:
        silences = alert_rows.load_silences(conn, now)
    finally:
        conn.close()
    if not silences:
        return "no active silences"
    lines = [f"{'rule':<24} {'target':<18} {'until':<24} {'by':<10} reason"]
    for s in silences:
        rule = ALL if s.rule == "*" else s.rule
        lines.append(
            f"{rule:<24} {s.target or '*':<18} {utc(s.ends_at):<24} {s.created_by:<10} "
            f"{s.reason or ''}".rstrip()
        )
    return "\n".join(lines)


def _database(args: argparse.Namespace) -> tuple[Path, Settings | None]:
    from pairwatch.config.load import load_settings

    if args.db is not None:
        return args.db, None
    settings = load_settings(args.config)
    return settings.db_path, settings


def _rule(name: str, settings: Settings | None, *, check: bool = True) -> str:
    """Return the stored rule name (``*`` for all); check it against the rules file."""
    if name == ALL:
        return "*"
    path = settings.alerts.rules_file if settings is not None else None
    if check and path is not None:
        from pairwatch.config.rules_load import load_rules

        try:
            names = [r.name for r in load_rules(path, settings).rules]
        except ConfigError:
            return name  # an invalid file: the daemon runs the previous rules; trust the name
        if name not in names:
            raise ConfigError(
                [f"mute: no rule {name!r} in {path} (rules: {', '.join(names) or 'none'})"]
            )
    return name


def _target(text: str | None, settings: Settings | None) -> str | None:
    """Return the target as stored (upper case); check it is a configured pair or symbol."""
    if text is None:
        return None
    target = text.strip().upper()
    if settings is not None:
        known = [p.name for p in settings.pairs] + list(settings.feed.symbols)
        if target not in known:
            raise ConfigError(
                [f"mute: --target {text!r} is not a configured pair (Y/X) or symbol "
                 f"(configured: {', '.join(known)})"]
            )  # fmt: skip
    return target


def _open(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise ConfigError([f"{db}: no such database (has the daemon run yet?)"])
    try:
        return open_store(db)
    except StoreError as exc:
        raise ConfigError([str(exc)]) from None


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
