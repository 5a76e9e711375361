"""``pairwatch rules check FILE`` as a real process: exit 0 with a summary, or 2 with problems."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pairwatch.config.rules_load import load_rules
from pairwatch.config.settings import Settings
from pairwatch.errors import ConfigError

DATA = Path(__file__).parents[1] / "data" / "rules"
GOOD = DATA / "good.yaml"
BAD = DATA / "bad"

SETTINGS_TOML = """\
[feed]
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [50, 100]

[[pairs]]
y = "SOLUSDT"
x = "BTCUSDT"
windows = [50, 100]
timeframes = ["1m"]
"""


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment without any pairwatch or systemd settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PAIRWATCH_") and k not in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY")
    }
    return {**env, **extra}


def check(
    *args: str | Path, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pairwatch", "rules", "check", *map(str, args)],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pairwatch.toml"
    path.write_text(SETTINGS_TOML, encoding="utf-8")
    return path


def library_problems(path: Path, settings: Settings | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_rules(path, settings)
    return caught.value.problems


def settings() -> Settings:
    return Settings(
        feed={"symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]},
        pairs=[
            {"y": "ETHUSDT", "x": "BTCUSDT", "windows": [50, 100]},
            {"y": "SOLUSDT", "x": "BTCUSDT", "windows": [50, 100], "timeframes": ["1m"]},
        ],
    )


def test_a_good_file_exits_0_with_a_summary(config: Path) -> None:
    done = check(GOOD, "--config", config)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"{GOOD}: 4 rules ok (2 on pairs, 2 on symbols, checked against the settings)\n"
    )


def test_the_config_can_come_from_pairwatch_config(config: Path) -> None:
    done = check(GOOD, PAIRWATCH_CONFIG=str(config))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.endswith("checked against the settings)\n")


def test_no_settings_checks_the_file_alone() -> None:
    done = check(GOOD, "--no-settings")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{GOOD}: 4 rules ok (2 on pairs, 2 on symbols)\n"


def test_an_empty_file_is_ok_with_zero_rules(config: Path) -> None:
    done = check(BAD / "empty.yaml", "--config", config)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"{BAD / 'empty.yaml'}: 0 rules ok (0 on pairs, 0 on symbols, checked against the "
        "settings)\n"
    )


def test_a_bad_file_exits_2_with_every_problem_on_stderr() -> None:
    path = BAD / "many_problems.yaml"
    done = check(path, "--no-settings")
    assert done.returncode == 2
    assert done.stdout == ""
    expected = library_problems(path, None)
    assert len(expected) == 3
    assert done.stderr.splitlines() == [f"pairwatch: {line}" for line in expected]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "name",
    [
        "unknown_key.yaml",
        "unknown_metric.yaml",
        "bad_condition.yaml",
        "bad_duration.yaml",
        "bad_template.yaml",
        "bad_route.yaml",
        "duplicate_key.yaml",
        "yaml_syntax.yaml",
        "not_a_mapping.yaml",
        "not_defaultable.yaml",
        "bad_default.yaml",
    ],
)
def test_each_failure_file_gives_the_library_messages(name: str) -> None:
    path = BAD / name
    done = check(path, "--no-settings")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [f"pairwatch: {p}" for p in library_problems(path, None)]
    assert all(line.startswith(f"pairwatch: {path}:") for line in done.stderr.splitlines())


def test_settings_problems_need_the_settings(config: Path) -> None:
    path = BAD / "unknown_pair.yaml"
    done = check(path, "--config", config)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"pairwatch: {path}:3:11: soleth-z: pair: 'SOLUSDT/ETHUSDT' matches no configured pair "
        "(configured: ETHUSDT/BTCUSDT, SOLUSDT/BTCUSDT)\n"
    )
    assert [f"pairwatch: {p}" for p in library_problems(path, settings())] == (
        done.stderr.splitlines()
    )
    alone = check(path, "--no-settings")
    assert (alone.returncode, alone.stderr) == (0, "")
    assert alone.stdout == f"{path}: 1 rule ok (1 on pairs, 0 on symbols)\n"


def test_without_a_config_the_default_settings_have_no_pairs(tmp_path: Path) -> None:
    done = check(GOOD, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    lines = done.stderr.splitlines()
    text = GOOD.read_text(encoding="utf-8").splitlines()
    line = text.index("    pair: ETHUSDT/BTCUSDT") + 1
    assert lines[0] == (
        f"pairwatch: {GOOD}:{line}:11: ethbtc-z: pair: 'ETHUSDT/BTCUSDT' matches no configured "
        "pair (configured: none: configure pairs in the settings)"
    )
    assert all(line.startswith("pairwatch: ") for line in lines)


def test_a_bad_settings_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[feed]\nsymbols = ["BTCUSDT"]\nsymbolz = 1\n', encoding="utf-8")
    done = check(GOOD, "--config", config)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("pairwatch: ")
    assert "symbolz" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    done = check(path, "--no-settings")
    assert (done.returncode, done.stdout) == (2, "")
    assert (
        done.stderr == f"pairwatch: {path}: cannot read the rules file: No such file or directory\n"
    )


def test_a_python_tag_is_refused_and_not_run(tmp_path: Path) -> None:
    path = BAD / "python_tag.yaml"
    done = check(path, "--no-settings", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"pairwatch: {path}:2:11: not valid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'\n"
    )
    assert list(tmp_path.iterdir()) == []  # `touch pwned` never ran


def test_a_file_that_is_not_utf8_exits_2_without_a_traceback(tmp_path: Path) -> None:
    # Regression: load_rules only catches OSError around read_text; the UnicodeDecodeError escapes
    # main(), so the user sees a traceback and exit code 1.
    path = tmp_path / "latin1.yaml"
    path.write_bytes("rules: []  # caf\u00e9\n".encode("latin-1"))
    done = check(path, "--no-settings")
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert done.stderr.startswith(f"pairwatch: {path}")


def test_help_describes_the_verb() -> None:
    done = check("--help")
    assert done.returncode == 0
    assert "--no-settings" in done.stdout
    assert "FILE" in done.stdout


def test_a_missing_file_argument_is_a_usage_error() -> None:
    done = check()
    assert done.returncode == 2
    assert "the following arguments are required: FILE" in done.stderr


def test_demo_checks_against_the_demo_settings(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - {name: z, pair: ETHUSDT/BTCUSDT, timeframe: 1m, window: 100, when: zscore > 2}\n",
        encoding="utf-8",
    )
    done = check(path, "--demo", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"{path}: 1 rule ok (1 on pairs, 0 on symbols, checked against the settings)\n"
    )


def test_demo_and_no_settings_exclude_each_other() -> None:
    done = check(GOOD, "--demo", "--no-settings")
    assert (done.returncode, done.stdout) == (2, "")
    assert "argument --no-settings: not allowed with argument --demo" in done.stderr
