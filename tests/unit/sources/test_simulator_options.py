"""Simulator options validate themselves and report every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pairwatch.daemon.sources.simulator_options import SimulatorOptions, parse_streams
from pairwatch.errors import ConfigError


def test_defaults_are_a_real_time_spot_market_of_btc_and_eth() -> None:
    options = SimulatorOptions()
    assert options.kinds == ("trade",)
    model = options.market_model()
    assert [s.symbol for s in model.symbols] == ["BTCUSDT", "ETHUSDT"]
    assert [s.start_price for s in model.symbols] == [60000.0, 3000.0]
    assert (model.rate, options.speed, options.host) == (20.0, 1.0, "127.0.0.1")


def test_several_stream_kinds_can_be_published() -> None:
    assert SimulatorOptions(stream=("trade", "aggTrade")).kinds == ("trade", "aggTrade")


def test_every_problem_is_reported_as_a_config_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.gz")
    with pytest.raises(ConfigError) as info:
        SimulatorOptions(
            market="coinm",  # type: ignore[arg-type]
            speed=0.0,
            stream="depth",  # type: ignore[arg-type]
            mode="recorded",
            files=(missing,),
        )
    problems = "\n".join(info.value.problems)
    assert "market must be 'spot' or 'usdm'" in problems
    assert "speed must be > 0" in problems
    assert "stream must be among" in problems
    assert f"recorded files not found: {missing}" in problems
    assert all(p.startswith("simulator: ") for p in info.value.problems)


def test_bad_symbols_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="BTC-USDT"):
        SimulatorOptions(symbols=("BTC-USDT",))
    with pytest.raises(ConfigError, match="recorded mode needs files"):
        SimulatorOptions(mode="recorded")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/stream?streams=btcusdt@trade/ethusdt@trade",
            ("/stream", ["btcusdt@trade", "ethusdt@trade"]),
        ),
        ("/market/stream?streams=btcusdt@aggTrade", ("/market/stream", ["btcusdt@aggTrade"])),
        ("/stream", ("/stream", [])),
        ("/stream?streams=&timeUnit=MICROSECOND", ("/stream", [])),
        ("/ws/btcusdt@trade", ("/ws/btcusdt@trade", [])),
    ],
)
def test_request_paths_split_into_route_and_streams(
    path: str, expected: tuple[str, list[str]]
) -> None:
    assert parse_streams(path) == expected
