"""Fuzzing the settings loader (TOML + environment) and the rules loader (YAML).

Whatever the file or variable holds, the loaders return settings or rules, or raise
``ConfigError`` naming the file (and line) or the variable: never another exception,
never a crash of the interpreter, and in bounded memory. The stored corpus
(tests/data/hostile) has the classic hostile inputs; the large ones are made here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairwatch.config.load import load_settings
from pairwatch.config.rules_load import load_rules
from pairwatch.config.settings import Settings
from pairwatch.errors import ConfigError
from unit.fuzz.hostile import CORPUS, MB, peak_memory

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

EXPECTED = {
    "billion_laughs.yaml": ":1:28: the file expands to over 200,000 values (aliases?): refused",
    "bad_timestamp.yaml": ":1:8: rules: cannot read '2001-13-01' as timestamp: month must be",
    "duplicate_keys.yaml": ":4:5: rules[0].symbol: key given twice",
    "huge_int.yaml": ":1:8: rules: cannot read '99999999999999999999...' as int: exceeds the limit",
    "huge_int_key.yaml": ":1:3: cannot read '99999999999999999999...' as int: exceeds the limit",
    "nan_inf.yaml": ":5:13: a: rules[0].window:",
    "nul.yaml": ": not valid YAML: unacceptable character #x0000",
    "non_utf8.yaml": ": not UTF-8 text (byte 17): save it as UTF-8",
    "python_object.yaml": ":1:8: not valid YAML: could not determine a constructor",
    "duplicate_keys.toml": ":2:20: invalid TOML: cannot overwrite a value",
    "huge_int.toml": ":2:18: invalid TOML: an unquoted value or key of over 1,000 characters",
    "huge_float.toml": ":2: storage.batch_max_rows: input should be a finite number (got inf)",
    "nan_inf.toml": ":2: feed.watchdog: invalid duration nan",
    "nul.toml": ":1:16: invalid TOML: illegal character '\\x00'",
    "non_utf8.toml": ": cannot read config file: not UTF-8 text (byte 13)",
    "deep_arrays.toml": ":1:45: invalid TOML: arrays or inline tables nested deeper than 32",
    "deep_dotted_key.toml": ":1:64: invalid TOML: a key of over 32 parts: refused",
}


def load(path: Path) -> object:
    if path.suffix == ".toml":
        return load_settings(path, environ={})
    return load_rules(path, Settings())


def test_every_corpus_file_has_an_expected_message() -> None:
    stored = {p.name for p in CORPUS.iterdir() if p.suffix in (".toml", ".yaml")}
    assert stored == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_files_are_config_errors_naming_the_file(name: str) -> None:
    path = CORPUS / name
    caught, peak = peak_memory(lambda: load(path))
    assert isinstance(caught, ConfigError), repr(caught)
    assert caught.problems[0].startswith(f"{path}{EXPECTED[name]}"), caught.problems
    assert peak < 100 * MB, f"peak {peak / MB:.0f} MB"


# --- generated hostile inputs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("log_level = " + "{a = " * 10_000 + "1" + "}" * 10_000, ":1:173: invalid TOML: arrays"),
        ("[" + ".".join(["a"] * 10_000) + "]", ":1:65: invalid TOML: a key of over 32 parts"),
        ("[web]\nport = " + "9" * 4000, ":2:8: invalid TOML: an unquoted value"),
        ("x = " + "1" + "0" * 5000 + ".5", ":1:5: invalid TOML: an unquoted value"),
        ('log_level = "' + "A" * (10 * MB) + '"', ": cannot read config file: larger than"),
        ("[feed]\nsymbols = [" + ",".join(['"A"'] * 100_000) + "]", ":2: feed.symbols.0: invalid"),
    ],
    ids=[
        "10,000 inline tables",
        "10,000-part header",
        "4,000-digit port",
        "5,000-digit float",
        "10 MB file",
        "100,000 bad symbols",
    ],
)
def test_large_hostile_settings_are_refused_quickly_in_bounded_memory(
    tmp_path: Path, text: str, expected: str
) -> None:
    # Review fix: tomllib raised RecursionError on deep nesting and ValueError on long
    # integers, took 400 MB for a 10,000-part key and 39 s for a 10 MB string.
    path = tmp_path / "pairwatch.toml"
    path.write_text(text + "\n")
    caught, peak = peak_memory(lambda: load_settings(path, environ={}))
    assert isinstance(caught, ConfigError), repr(caught)
    assert caught.problems[0].startswith(f"{path}{expected}"), caught.problems[0][:300]
    assert len(caught.problems) <= 101  # past 100, the rest are counted on one line
    assert peak < 300 * MB, f"peak {peak / MB:.0f} MB"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PAIRWATCH_FEED__SYMBOLS", "[" * 100_000, "feed.symbols: invalid JSON list: nested"),
        ("PAIRWATCH_FEED", '{"a":' * 100_000, "feed: expected a table"),
        ("PAIRWATCH_WEB__PORT", "9" * 5000, "web.port: unable to parse input string"),
        ("PAIRWATCH_FEED__WATCHDOG", "1e400s", "feed.watchdog: invalid duration '1e400s'"),
        ("PAIRWATCH_LOG_LEVEL", "IN\x00FO", "log_level: input should be"),
    ],
)
def test_hostile_environment_variables_are_config_errors_naming_them(
    name: str, value: str, expected: str
) -> None:
    # Review fix: deeply nested JSON in a variable raised RecursionError.
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={name: value})
    assert caught.value.problems[0].startswith(f"{name}: {expected}"), caught.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: " + "[" * 100_000 + "]" * 100_000, ":1:72: nested deeper than 64"),
        ("rules: " + "{a: " * 100_000 + "1" + "}" * 100_000, ":1:264: nested deeper than 64"),
        ("rules:\n" + "".join(" " * i + "- \n" for i in range(1, 3000)), ":66:66: nested deeper"),
    ],
    ids=["100,000 lists", "100,000 mappings", "3,000 block lists"],
)
def test_deep_yaml_is_refused_without_killing_the_process(
    tmp_path: Path, text: str, expected: str
) -> None:
    # Review fix: libyaml's composer recursed in C and the process died of SIGSEGV (not
    # an exception) at some 30,000 levels. A child process, so a regression fails one test.
    path = tmp_path / "rules.yaml"
    path.write_text(text + "\n")
    script = (
        "import sys; from pathlib import Path\n"
        "from pairwatch.config.rules_load import load_rules\n"
        "from pairwatch.errors import ConfigError\n"
        "try:\n    load_rules(Path(sys.argv[1]))\n"
        "except ConfigError as exc:\n    print(exc.problems[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"{path}{expected}"), done.stdout


def test_a_10_mb_rules_file_is_a_config_error_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: '" + "a" * (10 * MB) + "'\n")
    caught, peak = peak_memory(lambda: load_rules(path))
    assert isinstance(caught, ConfigError), repr(caught)
    # Review fix: every problem of the rule repeated its 10 MB name.
    assert caught.problems[0] == f"{path}:2:5: {'a' * 40}...: rules[0].when: Field required"
    assert max(len(problem) for problem in caught.problems) < 300
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB"


# --- hypothesis ---------------------------------------------------------------------------

_TOML_PIECES = st.sampled_from(
    [
        "\n",
        " ",
        "=",
        ".",
        ",",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        '"',
        "'",
        '"""',
        "#",
        "\\",
        "feed",
        "symbols",
        "web",
        "host",
        "port",
        "log_level",
        "pairs",
        "storage",
        "retention",
        "bars",
        "1s",
        "watchdog",
        "a",
        "0",
        "9" * 30,
        "1e400",
        "nan",
        "inf",
        "-inf",
        "true",
        "1979-05-27T07:32:00Z",
        '"BTCUSDT"',
        '"0.0.0.0"',
        "\x00",
        "\ud7ff",
        "é",
    ]
)
_YAML_PIECES = st.sampled_from(
    [
        "\n",
        " ",
        "  ",
        "- ",
        ": ",
        "rules",
        "name",
        "when",
        "pair",
        "symbol",
        "for",
        "window",
        "defaults",
        "&a ",
        "*a",
        "<<",
        "[",
        "]",
        "{",
        "}",
        ",",
        "'",
        '"',
        "#",
        "!!int ",
        "!!str ",
        "!!binary ",
        "!!timestamp ",
        "!!python/name:os.system",
        "?",
        "|",
        ">",
        "---",
        "...",
        "zscore > 2",
        "1e400",
        ".nan",
        "9" * 30,
        "2001-13-01",
        "0x1f",
        "1:30",
        "~",
        "\t",
        "é",
    ]
)


def problems_of(call: Callable[[], object]) -> list[str]:
    """Return the problems of the ``ConfigError`` ``call`` raises (at least one), or none."""
    try:
        call()
    except ConfigError as exc:
        problems = exc.problems
    else:
        return []
    assert problems
    return problems


def _check_settings(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "pairwatch.toml"
    path.write_bytes(data)
    problems = problems_of(lambda: load_settings(path, environ={}))
    assert all(p.startswith(str(path)) for p in problems), problems


def _check_rules(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(data)
    problems = problems_of(lambda: load_rules(path, Settings()))
    assert all(p.startswith(str(path)) for p in problems), problems


@FUZZ
@given(pieces=st.lists(_TOML_PIECES, max_size=60))
def test_toml_made_of_settings_pieces_loads_or_is_a_config_error(
    tmp_path: Path, pieces: list[str]
) -> None:
    _check_settings(tmp_path, "".join(pieces).encode("utf-8", "surrogatepass"))


@FUZZ
@given(data=st.binary(max_size=200))
def test_any_bytes_as_settings_load_or_are_a_config_error(tmp_path: Path, data: bytes) -> None:
    _check_settings(tmp_path, data)


@FUZZ
@given(pieces=st.lists(_YAML_PIECES, max_size=60))
def test_yaml_made_of_rules_pieces_loads_or_is_a_config_error(
    tmp_path: Path, pieces: list[str]
) -> None:
    _check_rules(tmp_path, "".join(pieces).encode())


@FUZZ
@given(data=st.binary(max_size=200))
def test_any_bytes_as_rules_load_or_are_a_config_error(tmp_path: Path, data: bytes) -> None:
    _check_rules(tmp_path, data)


@FUZZ
@given(
    name=st.sampled_from(
        [
            "PAIRWATCH_FEED__SYMBOLS",
            "PAIRWATCH_PAIRS",
            "PAIRWATCH_WEB",
            "PAIRWATCH_WEB__PORT",
            "PAIRWATCH_FEED__WATCHDOG",
            "PAIRWATCH_BARS__TIMEFRAMES",
            "PAIRWATCH_STORAGE__RETENTION",
            "PAIRWATCH_TELEGRAM__CHAT_IDS",
            "PAIRWATCH_X",
            "PAIRWATCH_FEED____",
            "PAIRWATCH_",
        ]
    ),
    value=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
    | st.sampled_from(["[", "{", '{"a":1}', "[1,2]", "null", "1e400", "NaN", "[[[[", "9" * 5000]),
)
def test_any_environment_value_loads_or_is_a_config_error(name: str, value: str) -> None:
    problems_of(lambda: load_settings(None, environ={name: value.replace("\x00", "")}))
