"""Forecasts for look-ahead control, derived from the realised profile array of the run.

Conventions shared by all forecasters: `actual` has time on its last axis ([T] or
[n, T]); a forecast issued at step t, after actual[..., t] is known, covers steps
t+1 .. t+horizon and has shape [..., horizon], element h-1 at lead time h. Steps past
the end of the data repeat the last value (actual[..., -1]), so a controller near the
end of a run keeps a full horizon instead of failing.
"""

from __future__ import annotations

import numpy as np


def _check(actual: np.ndarray, t: int, horizon: int) -> np.ndarray:
    actual = np.asarray(actual, dtype=float)
    if actual.ndim == 0 or actual.shape[-1] == 0:
        raise ValueError("actual must have at least one step on its last (time) axis")
    if not 0 <= t < actual.shape[-1]:
        raise ValueError(f"t must be within 0..{actual.shape[-1] - 1} (got {t})")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 (got {horizon})")
    return actual


def _future_steps(n_steps: int, t: int, horizon: int) -> np.ndarray:
    return np.minimum(np.arange(t + 1, t + horizon + 1), n_steps - 1)  # past the end: the last value


def perfect(actual: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """The realised values at steps t+1 .. t+horizon."""
    actual = _check(actual, t, horizon)
    return actual[..., _future_steps(actual.shape[-1], t, horizon)]


def persistence(actual: np.ndarray, t: int, horizon: int, period_steps: int | None = None) -> np.ndarray:
    """Last value actual[t] for every lead; with `period_steps` P, step t+h is forecast by
    the value at the same phase in the latest period already seen, t+h-kP with k = ceil(h/P).
    Leads whose period-ago step falls before the data start use the last value instead."""
    actual = _check(actual, t, horizon)
    last = np.repeat(actual[..., t:t + 1], horizon, axis=-1)
    if period_steps is None:
        return last
    if period_steps < 1:
        raise ValueError(f"period_steps must be at least 1 (got {period_steps})")
    leads = np.arange(1, horizon + 1)
    source = t + leads - period_steps * np.ceil(leads / period_steps).astype(int)
    known = source >= 0
    return np.where(known, actual[..., np.maximum(source, 0)], last)


def noisy(
    actual: np.ndarray,
    t: int,
    horizon: int,
    *,
    error_at_1_step: float = 0.02,
    error_growth: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Perfect forecast times (1 + e_h), e_h normal with standard deviation
    sigma_h = error_at_1_step * h ** error_growth (0.5: sigma grows as sqrt(h)).

    Errors are correlated across leads like a forecast's, built from a random walk:
    e_h = sigma_h * W_h / sqrt(h), W_h the sum of h standard normals (for growth 0.5,
    e_h is exactly a random walk). Clipped at 0 when `actual` has no negative value.
    The same (seed, t) gives the same forecast, whatever other steps were forecast.
    """
    truth = perfect(actual, t, horizon)
    if error_at_1_step < 0:
        raise ValueError(f"error_at_1_step must be non-negative (got {error_at_1_step})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    rng = np.random.default_rng([seed, t])
    leads = np.arange(1, horizon + 1)
    walk = np.cumsum(rng.standard_normal(truth.shape), axis=-1)
    errors = error_at_1_step * leads**error_growth * walk / np.sqrt(leads)
    forecast = truth * (1.0 + errors)
    if (np.asarray(actual) >= 0).all():
        forecast = np.clip(forecast, 0.0, None)
    return forecast
