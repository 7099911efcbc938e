"""Built-in PV: clear-sky and cloudy global horizontal irradiance, and PV power per unit.

Solar position is the low-precision almanac algorithm (U.S. Naval Observatory / Michalsky
1988; about 0.01 degree, 1 minute of time, 1950-2050): declination and equation of time
from the sun's mean longitude and anomaly, hour angle from UTC and longitude. Clear-sky
GHI is the Haurwitz model (1945), GHI = 1098 cos z exp(-0.057 / cos z) W/m2, which needs
no atmospheric inputs and compares well with richer models for a built-in default.

Clouds are a clearness index kc (GHI / clear-sky GHI) generated on a 1-minute grid and
averaged to the run's steps, so statistics do not depend on the step. Each local solar
day (midnight to midnight in mean solar time, when the sun is down) is drawn from its
own generator seeded by (seed, day): the same seed gives the same weather on a date
whatever the run's start or step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

_UNIX_DAY_OF_J2000 = 10957.5  # 2000-01-01 12:00 UTC in days since 1970-01-01
_DAY_SEED_OFFSET = 1_000_000  # seed entries must be non-negative; dates before 1970 have negative day numbers


def _utc_minutes(index: pd.DatetimeIndex) -> np.ndarray:
    """Minutes since 1970-01-01 UTC; a naive index is taken as UTC."""
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"expected a pandas DatetimeIndex (got {type(index).__name__})")
    return index.as_unit("ns").asi8 / 6e10  # asi8 is UTC for aware indexes


def _cos_zenith(minutes: np.ndarray, latitude_deg: float, longitude_deg: float) -> np.ndarray:
    n = minutes / 1440.0 - _UNIX_DAY_OF_J2000  # days since J2000
    mean_longitude = np.radians((280.460 + 0.9856474 * n) % 360.0)
    mean_anomaly = np.radians((357.528 + 0.9856003 * n) % 360.0)
    ecliptic_longitude = mean_longitude + np.radians(1.915 * np.sin(mean_anomaly) + 0.020 * np.sin(2 * mean_anomaly))
    obliquity = np.radians(23.439 - 0.0000004 * n)
    declination = np.arcsin(np.sin(obliquity) * np.sin(ecliptic_longitude))
    right_ascension = np.arctan2(np.cos(obliquity) * np.sin(ecliptic_longitude), np.cos(ecliptic_longitude))
    # Equation of time: how far the true sun runs ahead of the mean sun (wrapped to +-180 deg).
    equation_of_time = (mean_longitude - right_ascension + np.pi) % (2 * np.pi) - np.pi
    utc_hour_angle = np.radians((minutes % 1440.0) / 4.0 - 180.0)  # 4 minutes of time per degree
    hour_angle = utc_hour_angle + np.radians(longitude_deg) + equation_of_time
    latitude = np.radians(latitude_deg)
    return np.sin(latitude) * np.sin(declination) + np.cos(latitude) * np.cos(declination) * np.cos(hour_angle)


def _haurwitz(cos_zenith: np.ndarray) -> np.ndarray:
    cz = np.clip(cos_zenith, 1e-6, None)  # avoids dividing by zero; night is zeroed below
    return np.where(cos_zenith > 0, 1098.0 * cz * np.exp(-0.057 / cz), 0.0)


def _check_site(latitude_deg: float, longitude_deg: float) -> None:
    if not -90.0 <= latitude_deg <= 90.0:
        raise ValueError(f"latitude_deg must be within -90..90 (got {latitude_deg})")
    if not -180.0 <= longitude_deg <= 180.0:
        raise ValueError(f"longitude_deg must be within -180..180, east positive (got {longitude_deg})")


def clear_sky_irradiance(index: pd.DatetimeIndex, latitude_deg: float, longitude_deg: float) -> np.ndarray:
    """Clear-sky global horizontal irradiance (W/m2) at each instant of `index` (naive = UTC); longitude east positive."""
    _check_site(latitude_deg, longitude_deg)
    return _haurwitz(_cos_zenith(_utc_minutes(index), latitude_deg, longitude_deg))


def _minute_windows(index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """For each step [t, t + step), the first and one-past-last whole UTC minute it covers."""
    t = _utc_minutes(index)
    if len(t) > 1:
        step = np.diff(t)
        if (step <= 0).any():
            raise ValueError(f"index must be strictly increasing (first offender {index[int(np.argmax(step <= 0)) + 1]})")
        step = np.append(step, step[-1])
    else:
        step = np.array([pd.Timedelta(index.freq).total_seconds() / 60.0 if index.freq is not None else 1.0])
    first = np.floor(t + 1e-9).astype(np.int64)
    last = np.maximum(np.ceil(t + step - 1e-9).astype(np.int64), first + 1)  # a step under a minute takes its minute
    return first, last


def _window_mean(values: np.ndarray, first: np.ndarray, last: np.ndarray, origin: int) -> np.ndarray:
    """Mean of a 1-minute series (starting at minute `origin`) over each window, by cumulative sums."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    return (cumulative[last - origin] - cumulative[first - origin]) / (last - first)


def _ar1(innovations: np.ndarray, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) path driven by standard normal `innovations`."""
    drive = np.sqrt(1.0 - phi**2) * innovations
    drive[0] = innovations[0]  # start from the stationary distribution, no burn-in needed
    return lfilter([1.0], [1.0, -phi], drive)


def _day_clearness(rng: np.random.Generator, variability: float) -> np.ndarray:
    """1440 one-minute clearness values for one solar day.

    Day types: overcast (probability 0.3 v), broken clouds (0.6 v), clear (the rest).
    Within a day kc follows a mean-reverting AR(1); broken-cloud days (and, rarely, clear
    days) add cloud passages: minutes-long drops to 25-60 % of the level. The random
    numbers drawn do not depend on `variability`, so raising it only makes days cloudier.
    """
    kind, level, _ = rng.random(3)
    innovations = rng.standard_normal(1440)
    if kind < 0.3 * variability:
        mean, sigma, tau_min, passages_per_min = 0.2 + 0.25 * level, 0.06, 45.0, 0.0
    elif kind < 0.9 * variability:
        mean, sigma, tau_min, passages_per_min = 0.7 + 0.2 * level, 0.10, 20.0, 1 / 25
    else:
        mean, sigma, tau_min, passages_per_min = 0.99, 0.015, 60.0, 0.004 * variability
    kc = mean + sigma * _ar1(innovations, np.exp(-1.0 / tau_min))
    shade = np.ones(1440)
    n_passages = rng.poisson(passages_per_min * 1440)
    starts = rng.integers(0, 1440, n_passages)
    lengths = 1 + rng.exponential(5.0, n_passages).astype(int)
    depths = rng.uniform(0.25, 0.6, n_passages)
    for start, length, depth in zip(starts, lengths, depths):
        shade[start:start + length] = np.minimum(shade[start:start + length], depth)
    # Above 1: cloud-edge enhancement on broken-cloud days; capped as observed (~1.1).
    return np.clip(kc * shade, 0.02, 1.1)


def _clearness(minutes: np.ndarray, longitude_deg: float, variability: float, seed: int) -> np.ndarray:
    solar_minutes = minutes + 4.0 * longitude_deg  # local mean solar time
    day = np.floor(solar_minutes / 1440.0).astype(np.int64)
    minute_of_day = np.clip((solar_minutes - day * 1440.0).astype(np.int64), 0, 1439)
    kc = np.empty(len(minutes))
    for d in np.unique(day):
        on_day = day == d
        rng = np.random.default_rng([seed, int(d) + _DAY_SEED_OFFSET])
        kc[on_day] = _day_clearness(rng, variability)[minute_of_day[on_day]]
    return kc


def cloudy_irradiance(
    index: pd.DatetimeIndex,
    latitude_deg: float,
    longitude_deg: float,
    *,
    variability: float = 0.3,
    seed: int = 0,
) -> np.ndarray:
    """Global horizontal irradiance (W/m2) under seeded synthetic clouds.

    Clear sky at each instant times the clearness index averaged (energy-weighted) over
    the step [t, t + step). `variability` 0 gives clear days only, 1 mostly cloudy days.
    Bounded by 0 and 1.1 x clear sky; the same seed gives the same values.
    """
    _check_site(latitude_deg, longitude_deg)
    if not 0.0 <= variability <= 1.0:
        raise ValueError(f"variability must be within 0..1 (got {variability})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    if len(index) == 0:
        return np.empty(0)
    first, last = _minute_windows(index)
    origin = int(first.min())
    grid = np.arange(origin, int(last.max()), dtype=np.int64)
    clear_grid = _haurwitz(_cos_zenith(grid + 0.5, latitude_deg, longitude_deg))  # at mid-minute
    kc = _clearness(grid.astype(float), longitude_deg, variability, int(seed))
    weighted = _window_mean(kc * clear_grid, first, last, origin)
    weight = _window_mean(clear_grid, first, last, origin)
    plain = _window_mean(kc, first, last, origin)
    kc_step = np.where(weight > 0, weighted / np.where(weight > 0, weight, 1.0), plain)
    return clear_sky_irradiance(index, latitude_deg, longitude_deg) * kc_step


def pv_power_pu(
    irradiance_w_m2: np.ndarray,
    *,
    ambient_temp_c: float | np.ndarray | None = None,
    temp_coeff_per_c: float = -0.004,
    noct_c: float = 45.0,
) -> np.ndarray:
    """Available DC power per unit of rating (1000 W/m2 -> 1.0), not clipped at 1.

    With `ambient_temp_c` the output is derated by `temp_coeff_per_c` per degree of cell
    temperature above 25 C, the cell temperature from the NOCT model
    T_cell = T_amb + (NOCT - 20) / 800 * G. Inverter limits belong to the device model.
    """
    irradiance = np.clip(np.asarray(irradiance_w_m2, dtype=float), 0.0, None)
    power = irradiance / 1000.0
    if ambient_temp_c is not None:
        cell_temp = np.asarray(ambient_temp_c, dtype=float) + (noct_c - 20.0) / 800.0 * irradiance
        power = power * (1.0 + temp_coeff_per_c * (cell_temp - 25.0))
    return np.clip(power, 0.0, None)
