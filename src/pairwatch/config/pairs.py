"""Which pairs the analytics follow, and how (``[[pairs]]`` tables of the settings)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from pairwatch.config.durations import PositiveDuration
from pairwatch.config.field_types import Timeframe

_SECTION = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


def _from_text(value: Any) -> Any:
    """Accept ``"ETHUSDT/BTCUSDT"`` (y/x) for a pair with default settings."""
    if isinstance(value, str):
        y, sep, x = value.partition("/")
        if not sep or not y.strip() or not x.strip():
            raise ValueError(f"a pair is written Y/X, e.g. ETHUSDT/BTCUSDT, got {value!r}")
        return {"y": y.strip(), "x": x.strip()}
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Symbol = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z0-9]{2,30}$")]


class KalmanSettings(BaseModel):
    """Parameters of a pair's Kalman hedge ratio."""

    model_config = _SECTION

    delta: float = Field(default=1e-5, gt=0, description="Transition covariance of [β, α] per bar.")
    obs_var: float = Field(default=1e-3, gt=0, description="Observation variance.")


class PairSettings(BaseModel):
    """One pair: y regressed on x."""

    model_config = _SECTION

    y: Symbol = Field(description="The dependent leg, e.g. ETHUSDT.")
    x: Symbol = Field(description="The independent leg, e.g. BTCUSDT.")
    timeframes: tuple[Timeframe, ...] | None = Field(
        default=None, description="Timeframes to analyse; unset: all of bars.timeframes."
    )
    windows: tuple[Annotated[int, Field(ge=3, le=100_000)], ...] = Field(
        default=(100,), description="Rolling windows, in bars."
    )
    transform: Literal["log", "raw"] = Field(default="log", description="Price transform.")
    intercept: bool = Field(default=True, description="OLS with an intercept (α).")
    kalman: KalmanSettings = Field(default=KalmanSettings(), description="Kalman filter.")
    min_trades: int = Field(
        default=0, ge=0, description="Bars with fewer trades are flagged and skipped; 0: off."
    )
    adf_lookback: int = Field(
        default=500, ge=50, le=100_000, description="Bars in the ADF / cointegration tests."
    )
    adf_refresh: PositiveDuration = Field(
        default=timedelta(minutes=1),
        description="How often the ADF / cointegration tests are refreshed.",
    )

    @model_validator(mode="after")
    def _check(self) -> PairSettings:
        if self.y == self.x:
            raise ValueError(f"a pair needs two different symbols, got {self.y}/{self.x}")
        if self.adf_refresh < timedelta(milliseconds=100):
            raise ValueError(f"adf_refresh must be at least 100ms, got {self.adf_refresh}")
        if not self.windows:
            raise ValueError("list at least one window")
        if self.timeframes is not None and (
            not self.timeframes or len(set(self.timeframes)) != len(self.timeframes)
        ):
            raise ValueError(f"timeframes must be listed once each, got {list(self.timeframes)}")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows repeat: {list(self.windows)}")
        return self

    @property
    def name(self) -> str:
        """Return the pair as written in rules and topics: ``ETHUSDT/BTCUSDT``."""
        return f"{self.y}/{self.x}"


Pair = Annotated[PairSettings, BeforeValidator(_from_text)]
"""A pair table, or the short form ``"ETHUSDT/BTCUSDT"``."""
