"""Built-in wind: seeded wind speed through a generic turbine power curve.

The two horizontal wind components are mean-reverting AR(1) processes on a 1-minute grid
(correlation time 12 h: weather regimes persist for hours to days); the speed, their
norm, is Rayleigh distributed, i.e. Weibull with shape 2, the usual fit for onshore
sites. A faster AR(1) (10 min, 8 %) adds turbulence, and a mild diurnal swing (+-10 %,
strongest mid-afternoon local time) follows surface heating. Power is computed per
minute and averaged over each step, because the power curve is nonlinear and averaging
speed first would bias it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from timeseries.solar import _DAY_SEED_OFFSET, _ar1, _minute_windows, _window_mean

CUT_IN_M_S = 3.0
RATED_M_S = 12.0
CUT_OUT_M_S = 25.0
_COMPONENT_TAU_MIN = 720.0
_TURBULENCE_TAU_MIN = 10.0
_TURBULENCE_INTENSITY = 0.08
_DIURNAL_AMPLITUDE = 0.10
_DIURNAL_PEAK_HOUR = 15.0


def power_curve_pu(speed_m_s: np.ndarray) -> np.ndarray:
    """Generic turbine: 0 below cut-in (3 m/s), cubic to 1.0 at rated (12 m/s), 1.0 to cut-out (25 m/s), then 0."""
    speed = np.asarray(speed_m_s, dtype=float)
    rising = (speed**3 - CUT_IN_M_S**3) / (RATED_M_S**3 - CUT_IN_M_S**3)
    power = np.where(speed < RATED_M_S, rising, 1.0)
    return np.where((speed < CUT_IN_M_S) | (speed >= CUT_OUT_M_S), 0.0, power)


def _minute_speeds(grid: np.ndarray, local_hours: np.ndarray, mean_speed: float, seed: int) -> np.ndarray:
    # Seeded by (seed, UTC day of the grid's start): a run's start date changes the weather,
    # its step does not.
    rng = np.random.default_rng([seed, int(grid[0] // 1440) + _DAY_SEED_OFFSET])
    n = len(grid)
    phi = np.exp(-1.0 / _COMPONENT_TAU_MIN)
    east, north = _ar1(rng.standard_normal(n), phi), _ar1(rng.standard_normal(n), phi)
    # Norm of two N(0, s^2) components is Rayleigh with mean s * sqrt(pi / 2).
    component_sigma = mean_speed / np.sqrt(np.pi / 2.0)
    speed = component_sigma * np.hypot(east, north)
    gusts = _ar1(rng.standard_normal(n), np.exp(-1.0 / _TURBULENCE_TAU_MIN))
    diurnal = _DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (local_hours - _DIURNAL_PEAK_HOUR) / 24.0)
    return np.clip(speed * (1.0 + _TURBULENCE_INTENSITY * gusts) * (1.0 + diurnal), 0.0, None)


def wind_speed(index: pd.DatetimeIndex, *, mean_speed: float = 7.5, seed: int = 0) -> np.ndarray:
    """Hub-height wind speed (m/s) averaged over each step [t, t + step); same seed, same values."""
    minute_values, first, last, origin = _on_minute_grid(index, mean_speed, seed)
    return _window_mean(minute_values, first, last, origin)


def wind_power_pu(index: pd.DatetimeIndex, *, mean_speed: float = 7.5, seed: int = 0) -> np.ndarray:
    """Available wind power per unit of rating, averaged over each step [t, t + step); within 0..1."""
    speeds, first, last, origin = _on_minute_grid(index, mean_speed, seed)
    return _window_mean(power_curve_pu(speeds), first, last, origin)


def _on_minute_grid(index: pd.DatetimeIndex, mean_speed: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    if not mean_speed > 0:
        raise ValueError(f"mean_speed must be positive (got {mean_speed})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    if len(index) == 0:
        return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), 0
    first, last = _minute_windows(index)
    origin = int(first.min() // 1440 * 1440)  # the UTC day of the start anchors the realisation
    grid = np.arange(origin, int(last.max()), dtype=np.int64)
    # The index's local clock (naive = as written) sets the diurnal phase, across DST changes too.
    clock = pd.to_datetime(grid * 60, unit="s", utc=True)
    clock = clock.tz_convert(index.tz) if index.tz is not None else clock.tz_localize(None)
    local_hours = clock.hour + clock.minute / 60.0
    return _minute_speeds(grid, local_hours, mean_speed, int(seed)), first, last, origin
