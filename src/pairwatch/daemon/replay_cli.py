"""Glue between ``pairwatch replay`` and the replay engine: settings, store, progress bar."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from tqdm import tqdm

from pairwatch.analytics.engine import PairSpec
from pairwatch.analytics.timeframes import timeframe_set
from pairwatch.config.load import load_settings
from pairwatch.config.pairs import Pair, PairSettings
from pairwatch.config.settings import Settings
from pairwatch.daemon import store
from pairwatch.daemon.analytics import spec_of
from pairwatch.daemon.backfill import backfill
from pairwatch.daemon.replay import Replay, ReplayStats
from pairwatch.daemon.writer import Writer
from pairwatch.errors import ConfigError, PairwatchError


def replay_specs(
    settings: Settings,
    lengths: Sequence[tuple[str, int]],
    pairs: Sequence[str] | None = None,
    windows: Sequence[int] | None = None,
) -> list[PairSpec]:
    """Return the pair × timeframe specs a replay analyses.

    ``--pair Y/X`` (repeatable) replaces the configured pairs, ``--window N`` (repeatable)
    the windows of every pair; timeframes are the replay's, or a subset a pair names.
    """
    problems: list[str] = []
    chosen: list[PairSettings] = []
    for text in pairs or ():
        try:
            chosen.append(TypeAdapter(Pair).validate_python(text))
        except ValidationError as exc:
            problems.extend(f"--pair {text}: {e['msg']}" for e in exc.errors())
    if windows is not None and any(w < 3 or w > 100_000 for w in windows):
        problems.append(f"--window: windows are 3 … 100000 bars, got {list(windows)}")
    if windows and not chosen and not settings.pairs and not problems:
        problems.append("--window: no pair to analyse; name one with --pair Y/X")
    if problems:
        raise ConfigError(problems)
    labels = dict(lengths)
    out: list[PairSpec] = []
    unique = {(p.y, p.x): p for p in chosen or settings.pairs}  # a pair named twice counts once
    for configured in unique.values():
        pair = configured
        if windows:
            pair = configured.model_copy(update={"windows": tuple(dict.fromkeys(windows))})
        out.extend(
            spec_of(pair, timeframe, labels[timeframe])
            for timeframe in (pair.timeframes or labels)
            if timeframe in labels
        )
    return out


def run_replay(
    files: Sequence[Path],
    *,
    db: Path,
    timeframes: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    config: Path | None = None,
    pairs: Sequence[str] | None = None,
    windows: Sequence[int] | None = None,
) -> ReplayStats:
    """Replay ``files`` into ``db``, analyse the pairs, and return the statistics."""
    settings = load_settings(config)
    if timeframes:
        try:
            lengths = timeframe_set(dict.fromkeys(timeframes))  # a repeated label counts once
        except ValueError as exc:
            raise ConfigError([f"--timeframe: {exc}"]) from None
    else:
        lengths = settings.bars.timeframe_lengths
    specs = replay_specs(settings, lengths, pairs, windows)
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise ConfigError([f"{path}: no such file" for path in missing])
    store.open_store(db).close()  # create and migrate before the writer starts
    writer = Writer(db, batch_max_rows=settings.storage.batch_max_rows)
    writer.start()
    progress = tqdm(
        unit=" trades", unit_scale=True, disable=not sys.stderr.isatty(), file=sys.stderr
    )
    try:
        replay = Replay(
            writer,
            lengths,
            fill=settings.bars.fill,
            max_fill_ms=settings.bars.max_fill_ms,
            symbols=symbols,
            on_progress=progress.update,
        )
        stats = replay.run(files)
    finally:
        progress.close()
        writer.close(timeout=600.0)
    unwritten = writer.queue_depth + writer.rows_dropped
    if unwritten:
        raise PairwatchError(f"{unwritten} rows could not be written to {db}: see the log above")
    if specs:
        conn = store.open_store(db)
        try:
            done = backfill(conn, specs)
        finally:
            conn.close()
        stats.pair_rows, stats.symbol_rows = done.pair_rows, done.symbol_rows
        stats.analytics_seconds = done.seconds
    return stats
