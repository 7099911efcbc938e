"""Profiles from user files (CSV, Parquet) and resampling them onto a run's time steps.

A file either has a timestamp column (ISO 8601 strings, with or without an offset) or
holds bare values that the caller places in time with `start` + `resolution`. A unit
in brackets in the column name (`load [kW]`, `irradiance [W/m2]`) is read and, when
the caller says which unit it expects, converted. Anything doubtful (gaps, duplicates,
non-numeric cells, incompatible units, extrapolation) raises `ProfileError` with a
one-line message naming the file and the culprit, rather than being silently repaired.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd


class ProfileError(ValueError):
    """A profile that cannot be used; the message is one line naming the file and the culprit."""


# unit (lower case, normalised) -> (dimension, factor to the dimension's base unit).
# Lower-case keys make 'MW' and 'mw' the same: milliwatts do not occur in grid profiles.
_UNITS: dict[str, tuple[str, float]] = {
    "w": ("active power", 1.0), "kw": ("active power", 1e3), "mw": ("active power", 1e6),
    "var": ("reactive power", 1.0), "kvar": ("reactive power", 1e3), "mvar": ("reactive power", 1e6),
    "va": ("apparent power", 1.0), "kva": ("apparent power", 1e3), "mva": ("apparent power", 1e6),
    "w/m2": ("irradiance", 1.0), "kw/m2": ("irradiance", 1e3),
    "pu": ("per unit", 1.0), "p.u.": ("per unit", 1.0), "%": ("per unit", 0.01),
    "m/s": ("speed", 1.0),
}
_UNIT_IN_NAME = re.compile(r"^(?P<base>.*?)\s*\[(?P<unit>[^\[\]]+)\]\s*$")


def _normalise_unit(unit: str) -> str:
    return unit.strip().lower().replace(" ", "").replace("^2", "2").replace("²", "2")


def _lookup_unit(unit: str, where: str) -> tuple[str, float]:
    key = _normalise_unit(unit)
    if key not in _UNITS:
        raise ProfileError(f"{where}: unknown unit {unit!r}; known units: W, kW, MW, var, kvar, Mvar, VA, kVA, MVA, W/m2, kW/m2, pu, %, m/s")
    return _UNITS[key]


def convert_units(values: np.ndarray, from_units: str, to_units: str, where: str = "profile") -> np.ndarray:
    """`values` in `from_units` expressed in `to_units`; ProfileError if the dimensions differ."""
    from_dim, from_factor = _lookup_unit(from_units, where)
    to_dim, to_factor = _lookup_unit(to_units, where)
    if from_dim != to_dim:
        raise ProfileError(f"{where} is in {from_units} ({from_dim}) but {to_units} ({to_dim}) is expected")
    return np.asarray(values, dtype=float) * (from_factor / to_factor)


def split_unit(name: str) -> tuple[str, str | None]:
    """`'load [kW]'` -> `('load', 'kW')`; a name without brackets has no unit."""
    match = _UNIT_IN_NAME.match(str(name))
    return (match["base"], match["unit"].strip()) if match else (str(name), None)


RowLabel = Callable[[int], str]


def _read_table(path: Path) -> tuple[pd.DataFrame, RowLabel]:
    """The file as a frame, and how to name a 0-based data row as the user sees it in the file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
            # A file of bare numbers has no header: its first "column name" is a value.
            if len(frame.columns) and all(_is_number(c) for c in frame.columns):
                frame = pd.read_csv(path, dtype=str, header=None, skipinitialspace=True)
            else:
                return frame, lambda i: f"line {i + 2}"  # line 1 is the header
        except pd.errors.EmptyDataError:
            raise ProfileError(f"{path}: file is empty") from None
        except (UnicodeDecodeError, pd.errors.ParserError) as exc:  # a binary file, or not comma-separated text
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc).strip().splitlines()[0]
            raise ProfileError(f"{path}: not a readable CSV file ({reason})") from None
        frame.columns = ["value"] if len(frame.columns) == 1 else [str(i) for i in range(len(frame.columns))]
        return frame, lambda i: f"line {i + 1}"
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401  (pandas' Parquet engine)
        except ImportError:
            raise ProfileError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises its own error types for damaged files
            raise ProfileError(f"{path}: not a readable Parquet file: {str(exc).strip().splitlines()[0]}") from None
        if isinstance(frame.index, pd.DatetimeIndex):
            # pandas writes a DatetimeIndex into the file; treat it like a timestamp column.
            frame = frame.reset_index(names=frame.index.name or "timestamp")
        return frame, lambda i: f"row {i + 1}"
    raise ProfileError(f"{path}: profile files must end in .csv or .parquet")


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _pick_column(frame: pd.DataFrame, column: str | None, exclude: str | None, path: Path) -> str:
    data_columns = [c for c in frame.columns if c != exclude]
    if column is None:
        if len(data_columns) != 1:
            raise ProfileError(f"{path}: {len(data_columns)} data columns ({', '.join(map(str, data_columns))}); choose one with column=")
        return data_columns[0]
    if column in data_columns:
        return column
    # 'load' finds 'load [kW]', so callers need not repeat the unit.
    by_base = [c for c in data_columns if split_unit(c)[0] == column]
    if len(by_base) == 1:
        return by_base[0]
    raise ProfileError(f"{path}: no column {column!r}; available: {', '.join(map(str, data_columns)) or 'none'}")


_OFFSET = r"(?:Z|[+-]\d\d(?::?\d\d)?)$"


def _parse_timestamps(raw: pd.Series, path: Path, row: RowLabel, tz: str | None) -> pd.DatetimeIndex:
    """Naive or aware ISO 8601 timestamps (aware ones come back in UTC, or in `tz` if given)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        stamps = pd.DatetimeIndex(raw)
    else:
        text = raw.astype("string").str.strip()
        missing = (text.isna() | (text == "")).to_numpy()
        if missing.any():
            raise ProfileError(f"{path}: missing timestamp at {row(int(np.argmax(missing)))}")
        # pandas would quietly give a naive timestamp the offset of an aware one before it.
        aware = text.str.contains(_OFFSET, regex=True).to_numpy()
        if aware.any() and not aware.all():
            i = int(np.argmax(aware != aware[0]))
            raise ProfileError(f"{path}: timestamp {text.iloc[i]!r} at {row(i)} mixes naive and time-zone-aware timestamps")
        # UTC puts offsets that change with daylight saving on one axis.
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=bool(aware[0]))
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise ProfileError(f"{path}: cannot read timestamp {text.iloc[i]!r} at {row(i)}")
        stamps = pd.DatetimeIndex(parsed)
    if stamps.tz is None and tz is not None:
        try:
            # 'infer' places the repeated wall-clock hour of an autumn DST change by order.
            stamps = stamps.tz_localize(tz, ambiguous="infer")
        except Exception as exc:  # the time zone library's error names the offending wall-clock time
            culprit = str(exc).strip().splitlines()[0]
            raise ProfileError(f"{path}: cannot place timestamp {culprit} in {tz} (skipped or repeated by a daylight-saving change)") from None
    elif stamps.tz is not None and tz is not None:
        stamps = stamps.tz_convert(tz)
    return stamps


def _duration(nanoseconds: int) -> str:
    """'15min' rather than pandas' '0 days 00:15:00'."""
    seconds = nanoseconds / 1e9
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _check_spacing(stamps: pd.DatetimeIndex, path: Path) -> None:
    """Strictly increasing, one step throughout: gaps, duplicates and jitter are errors."""
    if len(stamps) < 2:
        return
    steps = np.diff(stamps.asi8)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = bad[0] + 1
        kind = "duplicated" if steps[bad[0]] == 0 else "out of order (earlier than the previous one)"
        # Naive local wall-clock times repeat an hour each autumn; tz= resolves that.
        hint = "; for local wall-clock times give tz=" if stamps.tz is None and steps[bad[0]] == 0 else ""
        raise ProfileError(f"{path}: timestamp {stamps[i]} is {kind}{hint}")
    values, counts = np.unique(steps, return_counts=True)
    step = values[np.argmax(counts)]  # the most common spacing is the series' step
    odd = np.flatnonzero(steps != step)
    if odd.size:
        i = odd[0]
        if steps[i] % step == 0:
            first_missing = stamps[i] + pd.Timedelta(int(step), "ns")
            raise ProfileError(
                f"{path}: gap after {stamps[i]}: next timestamp is {stamps[i + 1]}, first missing {first_missing} (step {_duration(step)})"
            )
        raise ProfileError(
            f"{path}: irregular spacing at {stamps[i + 1]}: {_duration(steps[i])} after the previous timestamp, the series step is {_duration(step)}"
        )


def read_profile(
    path: str | Path,
    column: str | None = None,
    *,
    timestamp_column: str = "timestamp",
    start: str | pd.Timestamp | None = None,
    resolution: str | pd.Timedelta | None = None,
    units: str | None = None,
    expected_units: str | None = None,
    tz: str | None = None,
    expected_length: int | None = None,
) -> pd.Series:
    """One column of a CSV or Parquet file as a float Series on a regular DatetimeIndex.

    Give either a file with `timestamp_column`, or `start` + `resolution` for bare values.
    `tz` localises a naive `start` or naive timestamps and converts aware ones; without it,
    timestamp strings with offsets come back in UTC (offsets may change with DST).
    The source unit is the bracketed unit in the column name or `units`; with
    `expected_units` the values are converted to it. `series.attrs` holds `units` and `source`.
    """
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProfileError(f"{path}: unknown time zone {tz!r} (use IANA names such as 'Europe/Berlin')") from None
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"profile file not found: {path}")
    frame, row = _read_table(path)
    if frame.empty:
        raise ProfileError(f"{path}: file has no data rows")

    bare = start is not None or resolution is not None
    if bare and (start is None or resolution is None):
        raise ProfileError(f"{path}: give both start and resolution for a file of bare values")
    if bare and timestamp_column in frame.columns:
        raise ProfileError(f"{path}: has a {timestamp_column!r} column and start/resolution were given; use one or the other")
    if not bare and timestamp_column not in frame.columns:
        raise ProfileError(
            f"{path}: no {timestamp_column!r} column (columns: {', '.join(map(str, frame.columns))}); "
            "name the timestamp column with timestamp_column= or give start and resolution"
        )
    name = _pick_column(frame, column, None if bare else timestamp_column, path)
    where = f"{path}: column {name!r}"

    raw = frame[name]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    if np.isnan(values).any():
        i = int(np.argmax(np.isnan(values)))
        cell = raw.iloc[i]
        if pd.isna(cell) or str(cell).strip() == "" or str(cell).strip().lower() == "nan":
            raise ProfileError(f"{where}: missing value at {row(i)}")
        raise ProfileError(f"{where}: non-numeric value {cell!r} at {row(i)}")
    if not np.isfinite(values).all():
        i = int(np.argmax(~np.isfinite(values)))
        raise ProfileError(f"{where}: infinite value at {row(i)}")

    if expected_length is not None and len(values) != expected_length:
        raise ProfileError(f"{where}: {len(values)} values, expected {expected_length}")

    if bare:
        try:
            step = pd.Timedelta(resolution)
        except ValueError:
            raise ProfileError(f"{path}: cannot read resolution {resolution!r}; use units such as '15min' or '1h'") from None
        if step <= pd.Timedelta(0):
            raise ProfileError(f"{path}: resolution must be positive (got {resolution!r})")
        try:
            first = pd.Timestamp(start)
        except ValueError:
            raise ProfileError(f"{path}: cannot read start {start!r} as a timestamp") from None
        if tz is not None:
            first = first.tz_localize(tz) if first.tz is None else first.tz_convert(tz)
        stamps = pd.date_range(first, periods=len(values), freq=step)
    else:
        stamps = _parse_timestamps(frame[timestamp_column], path, row, tz)
        _check_spacing(stamps, path)

    file_units = split_unit(name)[1]
    if units is not None and file_units is not None and _normalise_unit(units) != _normalise_unit(file_units):
        raise ProfileError(f"{where}: names unit {file_units} but units={units!r} was given")
    source_units = units or file_units
    if expected_units is not None:
        if source_units is None:
            raise ProfileError(f"{where} has no unit and {expected_units} is expected; write it in the column name (e.g. 'load [kW]') or pass units=")
        values = convert_units(values, source_units, expected_units, where)
    elif source_units is not None:
        _lookup_unit(source_units, where)  # an unknown unit is an error even when nothing is converted

    series = pd.Series(values, index=stamps.rename(timestamp_column), name=split_unit(name)[0])
    series.attrs.update(units=expected_units or source_units, source=str(path))
    return series


def _nanoseconds(stamps: pd.DatetimeIndex) -> np.ndarray:
    return stamps.as_unit("ns").asi8.astype(np.int64)


def resample_to(
    series: pd.Series,
    index: pd.DatetimeIndex,
    method: Literal["interpolate", "mean", "ffill"] = "interpolate",
) -> np.ndarray:
    """Values of `series` at the run's steps `index`.

    `interpolate`: linear in time at each timestamp (for upsampling, and for quantities
    read as instants). `mean`: average over each step [t, t + step), taking the series as
    constant over its own step [s, s + resolution): energy-preserving, for downsampling.
    `ffill`: the latest sample at or before t. The series is converted to the index's
    time zone; an index reaching outside what the series covers is an error, not extrapolated.
    """
    source = series.attrs.get("source")
    if source and series.name is not None:
        source = f"{source}: column {series.name!r}"
    source = source or (f"profile {series.name!r}" if series.name is not None else "profile")
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ProfileError(f"{source}: series has no DatetimeIndex")
    if not isinstance(index, pd.DatetimeIndex):
        raise ProfileError(f"{source}: target index is not a DatetimeIndex")
    if method not in ("interpolate", "mean", "ffill"):
        raise ProfileError(f"{source}: unknown resampling method {method!r}; use interpolate, mean or ffill")
    if len(index) == 0:
        return np.empty(0)
    if (series.index.tz is None) != (index.tz is None):
        naive, aware = ("series", "index") if series.index.tz is None else ("index", "series")
        raise ProfileError(f"{source}: the {naive} has naive timestamps and the {aware} is time-zone aware; localise one of them")
    if series.index.tz is not None:
        series = series.tz_convert(index.tz)
    if len(series) < 2:
        raise ProfileError(f"{source}: need at least two samples to resample")
    if not series.index.is_monotonic_increasing or series.index.has_duplicates:
        raise ProfileError(f"{source}: series timestamps must be strictly increasing")
    values = series.to_numpy(dtype=float)
    if np.isnan(values).any():
        raise ProfileError(f"{source}: missing value at {series.index[int(np.argmax(np.isnan(values)))]}")

    # Integer nanoseconds relative to the first sample keep precision over long spans.
    origin = _nanoseconds(series.index)[0]
    s = (_nanoseconds(series.index) - origin) / 1e9
    t = (_nanoseconds(index) - origin) / 1e9
    resolution = float(np.median(np.diff(s)))
    if len(index) > 1:
        step = np.diff(t)
        step = np.append(step, step[-1])  # the last step lasts as long as the one before
    elif index.freq is not None:
        step = np.array([pd.Timedelta(index.freq).total_seconds()])
    else:
        step = np.array([resolution])

    end = {"interpolate": t, "mean": t + step, "ffill": t}[method]
    limit = s[-1] if method == "interpolate" else s[-1] + resolution
    outside = (t < s[0]) | (end > limit + 1e-9)
    if outside.any():
        i = int(np.argmax(outside))
        raise ProfileError(
            f"{source}: profile covers {series.index[0]} to {series.index[-1]} but the run needs {index[i]} "
            f"({method}); no extrapolation"
        )

    if method == "interpolate":
        return np.interp(t, s, values)
    if method == "ffill":
        return values[np.searchsorted(s, t, side="right") - 1]
    # Cumulative energy at sample boundaries; the series is constant over each sample's step.
    edges = np.append(s, s[-1] + resolution)
    energy = np.concatenate([[0.0], np.cumsum(values * np.diff(edges))])
    return (np.interp(t + step, edges, energy) - np.interp(t, edges, energy)) / step


def profile_values(spec, index: pd.DatetimeIndex, expected_units: str) -> np.ndarray:
    """A file's series on the run's time steps, in `expected_units`. A power series given for a
    per-unit profile is scaled by the file's peak, so the level does not depend on the run's
    window. Timestamps with UTC offsets are read as UTC, so naive run times then meet them as
    UTC (give the run's start with its offset to mean local time); a run step coarser than the
    file averages it (energy kept). `spec` is a scenario's ProfileFile (file, column, timestamp_column,
    start, resolution, units, tz)."""
    series = read_profile(
        spec.file, spec.column, timestamp_column=spec.timestamp_column, start=spec.start,
        resolution=spec.resolution, units=spec.units, tz=spec.tz,
    )
    unit = series.attrs.get("units")
    if unit is None:
        raise ProfileError(f"{spec.file}: give the units of column {series.name!r} (key 'units'; expected {expected_units})")
    if index.tz is None and series.index.tz is not None:
        index = index.tz_localize(series.index.tz)
    file_step = series.index[1] - series.index[0] if len(series) > 1 else pd.Timedelta(0)
    run_step = index[1] - index[0] if len(index) > 1 else pd.Timedelta(0)
    values = resample_to(series, index, "mean" if run_step > file_step else "interpolate")
    if expected_units == "pu" and unit.lower() in ("w", "kw", "mw"):
        peak = float(np.max(np.abs(series.to_numpy())))
        return values / peak if peak > 0 else values
    return convert_units(values, unit, expected_units, where=f"{spec.file}: column {series.name!r}")
