"""Built-in load shapes, so a study needs no downloaded data.

Shapes are hourly values (per unit of the element's nominal load, peak near 1.0) for a
weekday and a weekend day, interpolated linearly to any time step. They are evaluated
in the local time of the run's start, so a time-zone-aware start shifts them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Hour 0..23 values. Residential: evening peak; commercial: daytime plateau with a
# deep weekend drop; system: a transmission-level blend of the two.
_RESIDENTIAL_WEEKDAY = [0.46, 0.42, 0.40, 0.39, 0.40, 0.46, 0.60, 0.72, 0.70, 0.62, 0.58, 0.57,
                        0.57, 0.56, 0.57, 0.62, 0.72, 0.86, 0.97, 1.00, 0.96, 0.86, 0.71, 0.56]
_RESIDENTIAL_WEEKEND = [0.50, 0.45, 0.42, 0.40, 0.40, 0.42, 0.48, 0.58, 0.68, 0.74, 0.75, 0.74,
                        0.72, 0.70, 0.69, 0.70, 0.76, 0.86, 0.95, 0.98, 0.94, 0.85, 0.72, 0.59]
_COMMERCIAL_WEEKDAY = [0.38, 0.36, 0.36, 0.36, 0.38, 0.44, 0.58, 0.76, 0.90, 0.97, 1.00, 1.00,
                       0.98, 0.99, 1.00, 0.98, 0.93, 0.83, 0.68, 0.56, 0.49, 0.45, 0.42, 0.40]
_COMMERCIAL_WEEKEND = [0.36, 0.35, 0.34, 0.34, 0.35, 0.37, 0.41, 0.46, 0.51, 0.55, 0.57, 0.58,
                       0.58, 0.57, 0.56, 0.55, 0.53, 0.50, 0.47, 0.44, 0.42, 0.40, 0.38, 0.37]


def _blend(a: list[float], b: list[float]) -> list[float]:
    mixed = 0.5 * np.asarray(a) + 0.5 * np.asarray(b)
    return list(mixed / mixed.max())


LOAD_SHAPES: dict[str, tuple[list[float], list[float]]] = {
    "residential": (_RESIDENTIAL_WEEKDAY, _RESIDENTIAL_WEEKEND),
    "commercial": (_COMMERCIAL_WEEKDAY, _COMMERCIAL_WEEKEND),
    "system": (_blend(_RESIDENTIAL_WEEKDAY, _COMMERCIAL_WEEKDAY), _blend(_RESIDENTIAL_WEEKEND, _COMMERCIAL_WEEKEND)),
    "flat": ([1.0] * 24, [1.0] * 24),
}


def load_shape(name: str, index: pd.DatetimeIndex) -> np.ndarray:
    """Per-unit load level at each timestamp of `index` for the named built-in shape."""
    if name not in LOAD_SHAPES:
        raise ValueError(f"unknown load profile {name!r}; built-in profiles: {', '.join(LOAD_SHAPES)}")
    weekday, weekend = (np.asarray(day + day[:1]) for day in LOAD_SHAPES[name])  # close the day at 24h
    hours = index.hour + index.minute / 60.0 + index.second / 3600.0
    grid = np.arange(25)
    on_weekday = np.interp(hours, grid, weekday)
    on_weekend = np.interp(hours, grid, weekend)
    return np.where(index.dayofweek >= 5, on_weekend, on_weekday)
