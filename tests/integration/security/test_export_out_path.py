"""``pairwatch export --out FILE`` writes FILE and nothing else, anywhere.

Each test lists every entry (links not followed) of the temporary directories before and
after an export: the only new entry may be FILE. What the CLI promises (docs/export.md):
FILE exactly where it says; never a directory; an existing FILE refused without
``--force`` and replaced whole with it; no ``FILE.part`` left by a failed export.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from integration.test_replay_analytics import SPOT, replay
from pairwatch.__main__ import main
from pairwatch.web.export_files import part_path, write_file

PAIR_ARGS = ("--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1m", "--window", "30")
SECOND_ARGS = ("--pair", "ETHUSDT/BTCUSDT", "--timeframe", "1s", "--window", "30")
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ETHUSDT/BTCUSDT replayed on 1s and 1m bars, window 30."""
    path = tmp_path_factory.mktemp("export-db") / "pairs.sqlite3"
    result = replay(*SPOT, "--db", path, "--timeframe", "1s", "--timeframe", "1m",
                    "--pair", "ETHUSDT/BTCUSDT", "--window", "30")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


def listing(*roots: Path) -> dict[str, tuple[str, int]]:
    """Return every entry under ``roots``: path → (kind, size or link target hash)."""
    found: dict[str, tuple[str, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                if path.is_symlink():
                    found[str(path)] = ("link", hash(os.readlink(path)))
                elif path.is_dir():
                    found[str(path)] = ("dir", 0)
                else:
                    found[str(path)] = ("file", path.stat().st_size)
    return found


def export(db: Path, out: str | Path, *extra: str) -> int:
    return main(["export", "--db", str(db), *PAIR_ARGS, "--format", "csv", "--out", str(out),
                 *extra])  # fmt: skip


def new_entries(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> set[str]:
    return {p for p in after if p not in before or after[p] != before[p]}


def test_a_parent_that_is_a_symlink_is_followed_and_only_file_is_made(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen, elsewhere = tmp_path / "chosen", tmp_path / "elsewhere"
    elsewhere.mkdir()
    chosen.mkdir()
    (chosen / "link").symlink_to(elsewhere, target_is_directory=True)
    before = listing(tmp_path)
    assert export(db, chosen / "link" / "x.csv") == 0
    assert new_entries(before, listing(tmp_path)) == {str(elsewhere / "x.csv")}
    assert f"to {elsewhere / 'x.csv'} (" in capsys.readouterr().out
    assert (chosen / "link" / "x.csv").read_bytes().startswith(b"ts,")


def test_a_relative_out_with_dot_dot_writes_exactly_there(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    before = listing(tmp_path)
    assert export(db, "../x.csv") == 0
    assert new_entries(before, listing(tmp_path)) == {str(tmp_path / "a" / "x.csv")}


@pytest.mark.parametrize("out", [".", "..", "sub", "sub/", "sub/.", "dirlink"])
def test_a_directory_is_refused_with_exit_2(
    db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    out: str,
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    assert export(db, out) == 2
    assert capsys.readouterr().err.strip() == (
        f"pairwatch: export: --out {Path(out)} is a directory; name the file to write"
    )
    assert listing(tmp_path) == before


def test_an_existing_file_is_refused_then_replaced_whole_with_force(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "old.csv"
    out.write_text("the previous export")
    seen_by_a_reader = tmp_path / "reader-link"  # a hard link: an open reader's view
    os.link(out, seen_by_a_reader)
    assert export(db, out) == 2
    assert f"--out {out} exists; pass --force to replace it" in capsys.readouterr().err
    assert out.read_text() == "the previous export"

    before = listing(tmp_path)
    inode = out.stat().st_ino
    assert export(db, out, "--force") == 0
    assert new_entries(before, listing(tmp_path)) == {str(out)}
    assert out.stat().st_ino != inode  # a new file renamed over the old one, not rewritten
    assert seen_by_a_reader.read_text() == "the previous export"
    assert out.read_text().startswith("ts,")


def test_a_symlink_at_file_is_never_written_through(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    victim = elsewhere / "victim.txt"
    victim.write_text("not yours")
    (here / "to-file.csv").symlink_to(victim)
    (here / "dangling.csv").symlink_to(elsewhere / "new.txt")
    before = listing(tmp_path)
    for name in ("to-file.csv", "dangling.csv"):
        assert export(db, here / name) == 2
        assert f"--out {here / name} exists; pass --force" in capsys.readouterr().err
    assert listing(tmp_path) == before

    assert export(db, here / "dangling.csv", "--force") == 0
    assert export(db, here / "to-file.csv", "--force") == 0
    after = listing(tmp_path)
    # The links were replaced by the files; nothing outside ``here`` changed.
    assert new_entries(before, after) == {str(here / "to-file.csv"), str(here / "dangling.csv")}
    assert not (here / "to-file.csv").is_symlink()
    assert victim.read_text() == "not yours"
    assert not (elsewhere / "new.txt").exists()


def test_a_symlink_at_the_part_file_is_refused(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    out = tmp_path / "x.csv"
    Path(f"{out}.part").symlink_to(victim)
    before = listing(tmp_path)
    assert export(db, out) == 2
    assert capsys.readouterr().err.strip() == (
        f"pairwatch: export: {out}.part is a symbolic link: not written through; remove it first"
    )
    assert listing(tmp_path) == before
    assert victim.read_text() == "not yours"


def test_out_naming_the_database_or_its_part_file_is_refused(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "db-link").symlink_to(db)
    db_size = db.stat().st_size
    for out in (db, tmp_path / "db-link"):
        assert export(db, out, "--force") == 2
        assert f"--out {out} is the database itself" in capsys.readouterr().err
    assert db.stat().st_size == db_size


def test_a_write_that_fails_half_way_leaves_no_part_file_and_the_old_file(
    db: Path, tmp_path: Path
) -> None:
    # The file-size limit (RLIMIT_FSIZE) makes a write fail with EFBIG past 64 KiB: the
    # export of the 1s series (larger) fails in the middle of writing FILE.part.
    assert export(db, tmp_path / "full.csv", "--timeframe", "1s") == 0
    assert (tmp_path / "full.csv").stat().st_size > 2 * LIMIT  # without the limit: it fits
    (tmp_path / "full.csv").unlink()
    out = tmp_path / "old.csv"
    out.write_text("the previous export")
    before = listing(tmp_path)
    code = (
        f"LIMIT = {LIMIT}\n"
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))\n"
        "from pairwatch.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "export", "--db", str(db), *SECOND_ARGS, "--format", "csv",
         "--out", str(out), "--force"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"pairwatch: export: cannot write {out}: File too large\n"
    assert listing(tmp_path) == before
    assert out.read_text() == "the previous export"


def test_the_writer_never_writes_through_a_link_at_the_part_path(tmp_path: Path) -> None:
    # The CLI refuses a link at FILE.part before it starts; one planted later (between
    # that check and the write) makes the write fail instead of writing through it.
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours")
    out = tmp_path / "out.csv"
    part_path(out).symlink_to(target)
    with pytest.raises(FileExistsError, match="is a symbolic link"):
        write_file(iter([]), out, "csv")
    assert target.read_text() == "not yours"
    assert not out.exists()


def test_a_part_file_left_by_a_dead_export_is_replaced(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    part_path(out).write_text("half of an earlier export")
    assert export(db, out, "--timeframe", "1s") == 0
    assert out.read_text().startswith("ts,time,y_open,")
    assert not part_path(out).exists()
