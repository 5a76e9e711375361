"""Glue between ``pairwatch replay`` and the replay engine: settings, store, progress bar."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from pairwatch.analytics.timeframes import timeframe_set
from pairwatch.config.load import load_settings
from pairwatch.daemon import store
from pairwatch.daemon.replay import Replay, ReplayStats
from pairwatch.daemon.writer import Writer
from pairwatch.errors import ConfigError, PairwatchError


def run_replay(
    files: Sequence[Path],
    *,
    db: Path,
    timeframes: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    config: Path | None = None,
) -> ReplayStats:
    """Replay ``files`` into ``db`` and return the statistics."""
    settings = load_settings(config)
    if timeframes:
        try:
            lengths = timeframe_set(dict.fromkeys(timeframes))  # a repeated label counts once
        except ValueError as exc:
            raise ConfigError([f"--timeframe: {exc}"]) from None
    else:
        lengths = settings.bars.timeframe_lengths
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
    return stats
