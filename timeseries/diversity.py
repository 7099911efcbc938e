"""Load diversity: many loads from one base profile, so they do not move in unison.

Each load gets a scale factor (lognormal with mean 1, so the average over loads keeps the
base level) and a time shift (uniform within +-max_shift), applied by linear interpolation
on the run's time axis taken as periodic: what is shifted past the end wraps to the
start, which keeps every load's mean equal to its scaled base mean. Averaging over many
loads smooths sharp peaks slightly (a moving average over +-max_shift), as real
aggregates do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def diversified_profiles(
    base: np.ndarray,
    index: pd.DatetimeIndex,
    n: int,
    *,
    seed: int = 0,
    scale_sigma: float = 0.1,
    max_shift: str | pd.Timedelta = "30min",
) -> np.ndarray:
    """Array [n, len(index)]: row i is `base` scaled by load i's factor and shifted by its delay (later if positive)."""
    base = np.asarray(base, dtype=float)
    if base.ndim != 1 or len(base) != len(index):
        raise ValueError(f"base must be one value per timestamp: {base.shape} values for {len(index)} timestamps")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (got {n!r})")
    if scale_sigma < 0:
        raise ValueError(f"scale_sigma must be non-negative (got {scale_sigma})")
    try:
        shift_limit = pd.Timedelta(max_shift).total_seconds()
    except ValueError:
        raise ValueError(f"cannot read max_shift {max_shift!r} as a duration; use units such as '30min'") from None
    if shift_limit < 0:
        raise ValueError(f"max_shift must be non-negative (got {max_shift!r})")

    rng = np.random.default_rng(seed)
    # mu = -sigma^2 / 2 makes the lognormal's mean exactly 1.
    scales = rng.lognormal(-0.5 * scale_sigma**2, scale_sigma, n)
    shifts = rng.uniform(-shift_limit, shift_limit, n)
    if len(index) < 2:
        return scales[:, None] * base[None, :]

    t = (index.as_unit("ns").asi8 - index.as_unit("ns").asi8[0]) / 1e9
    if (np.diff(t) <= 0).any():
        raise ValueError("index must be strictly increasing")
    period = t[-1] + (t[-1] - t[-2])  # one step past the last sample closes the cycle
    shifted = np.empty((n, len(t)))
    for i in range(n):
        shifted[i] = np.interp(t - shifts[i], t, base, period=period)
    return scales[:, None] * shifted
