"""Results files: one self-describing HDF5 file per run.

Every time-indexed dataset has the step as its first axis, is chunked along time and
carries `units`, `dims` and `description` attributes. Rows are buffered and written in
blocks, flushed to disk at least every `flush_seconds`; `time/seconds` is written after
the others' rows are flushed, so its length is the number of complete rows even after a crash.

A file survives its writer being killed at any moment (docs/results.md, "What a killed
run leaves"): while the run goes on, rows are written uncompressed, each in its place, and
HDF5 reuses no freed space, so nothing written before a flush is ever written over; the
file is made under another name and renamed. A complete run's file is then compacted
(copied gzip-compressed, then renamed over the original).

The root attributes say what the file is: `schema_version`, `scenario` (resolved
JSON), `scenario_source` (the file as the user wrote it), `versions`,
`n_steps_planned`, `started_at`, `finished_at`, `complete` (set only when the run
ended normally), and `error` (the one-line reason when it did not).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

SCHEMA_VERSION = "1.0"
# How a file is written so that a SIGKILL at any moment damages nothing already flushed
# (docs/results.md): no chunk cache, so a chunk's data is written before the index that points
# to it can reach the disk; no reuse of freed space, which HDF5 would otherwise hand out before
# the metadata still pointing to it is flushed (rewritten compressed chunks made 10 of 16
# SIGKILLed writers' files unreadable). Rows are uncompressed until the run completes: a
# compressed chunk is rewritten elsewhere each time it grows, an uncompressed one in place.
WRITE_OPTIONS = {"rdcc_nbytes": 0}
CREATE_OPTIONS = {"fs_strategy": "none"}
RUN_CHUNK_ELEMENTS = 4096  # per chunk while the run goes on (uncompressed, allocated whole)
_VERSIONED_PACKAGES = ("tandem-cosim", "helics", "pandapower", "OpenDSSDirect.py", "dss-python", "numpy", "pandas", "h5py", "pyomo", "highspy")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = sys.version.split()[0]
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Series:
    """A time-indexed dataset: per-step shape, units and named dimensions."""

    path: str
    shape: tuple[int, ...]
    units: str
    dims: tuple[str, ...]  # without the leading "time"
    description: str
    dtype: str = "f8"


class ResultsWriteError(OSError):
    """Writing the results file failed; the message is one line naming the file and the cause."""


def _cause(exc: OSError) -> str:
    """The system's words for an I/O error (h5py's message holds them amid HDF5 details)."""
    errno = exc.errno or next((int(m) for m in re.findall(r"errno = (\d+)", str(exc))), None)
    return os.strerror(errno) if errno else (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def check_writable(path: str | Path) -> None:
    """Raise ResultsWriteError (one line) unless a results file can be made at `path`: checked
    before a run starts anything, since a folder that cannot be written fails only the recorder."""
    path = Path(path).absolute()
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the folders still to make are made in there
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ResultsWriteError(f"cannot write {path}: {_cause(exc)}") from None


class ResultsWriter:
    """Appends one row per step to the run's HDF5 file."""

    def __init__(
        self, path: str | Path, scenario_json: str, scenario_source: str, n_steps: int,
        flush_seconds: float = 1.0, block_rows: int = 512, resume_rows: int | None = None, replace: bool = True,
    ):
        """A new file; with `resume_rows`, the file of a resumed run, which keeps its first
        `resume_rows` rows and gets the next ones appended (its datasets are then attached by
        `add_series` instead of created). With `replace` false, a file already at `path` is an error."""
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self.block_rows = block_rows
        self._buffer: list[tuple[float, dict]] = []
        self._last_flush = time.monotonic()
        self._series: dict[str, h5py.Dataset] = {}
        self.resuming = resume_rows is not None
        self.failed = ""  # why writing failed; the file is then left as it was last flushed
        if self.resuming:
            self.file = h5py.File(self.path, "r+", **WRITE_OPTIONS)
            self._time = self.file["time/seconds"]
            self.rows = int(resume_rows)
            if self._time.shape[0] != self.rows:
                raise ValueError(f"{self.path}: {self._time.shape[0]} rows where the checkpoint has {self.rows}")
            attrs = self.file.attrs
            attrs["scenario"] = scenario_json  # may differ from the first run's in federation and checkpoint settings
            attrs["complete"] = False
            attrs["error"] = ""
            attrs["finished_at"] = ""
            attrs["resumed_at"] = _now()
            attrs["resumed_from_step"] = self.rows
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Made whole under another name, then renamed: killed at any moment, the run leaves either
        # no file or one that opens (HDF5 writes nothing readable before its first flush).
        creating = self.path.with_name(self.path.name + ".creating")
        with self._writing(), h5py.File(creating, "w", **CREATE_OPTIONS) as file:
            attrs = file.attrs
            attrs["schema_version"] = SCHEMA_VERSION
            attrs["scenario"] = scenario_json
            attrs["scenario_source"] = scenario_source
            attrs["versions"] = json.dumps(package_versions())
            attrs["started_at"] = _now()
            attrs["finished_at"] = ""
            attrs["complete"] = False
            attrs["error"] = ""
            attrs["n_steps_planned"] = n_steps
            seconds = file.create_dataset("time/seconds", shape=(0,), maxshape=(None,), dtype="f8", chunks=(4096,))
            seconds.attrs.update(units="s", dims="time", description="simulated time since the scenario start")
        if replace:
            creating.replace(self.path)
        else:
            try:
                os.link(creating, self.path)  # unlike a rename, fails where a file already is
            except FileExistsError:
                raise ResultsWriteError(f"{self.path} exists: a run does not write over another's results "
                                        "(a replay of runner.json: move them away first)") from None
            except OSError:  # a file system without hard links
                if self.path.exists():
                    raise ResultsWriteError(f"{self.path} exists: a run does not write over another's results") from None
                creating.replace(self.path)
            finally:
                creating.unlink(missing_ok=True)
        self.rows = 0
        self.file = h5py.File(self.path, "r+", **WRITE_OPTIONS)
        self._time = self.file["time/seconds"]

    @contextmanager
    def _writing(self):
        """Turn a failed write (a full disk, a lost mount) into one line naming the file and the cause."""
        try:
            yield
        except OSError as exc:
            raise ResultsWriteError(f"cannot write {self.path}: {_cause(exc)}") from None

    def add_static(self, path: str, data, units: str, dims: tuple[str, ...], description: str) -> None:
        """A dataset that does not change with time (names, indices, multipliers); kept as it
        is in a resumed run's file."""
        if self.resuming and path in self.file:
            return
        if isinstance(data, (list, tuple)) and data and isinstance(data[0], str):
            data = np.array(data, dtype=h5py.string_dtype())
        ds = self.file.create_dataset(path, data=data)
        ds.attrs.update(units=units, dims=",".join(dims), description=description)

    def add_series(self, series: Series) -> None:
        if self.resuming and series.path in self.file:
            ds = self.file[series.path]
            if ds.shape[1:] != series.shape or ds.shape[0] != self.rows:
                raise ValueError(f"{self.path}: {series.path} has shape {ds.shape}, the resumed run writes {series.shape}")
            self._series[series.path] = ds
            return
        elements = max(1, int(np.prod(series.shape)))
        ds = self.file.create_dataset(
            series.path,
            shape=(0, *series.shape),
            maxshape=(None, *series.shape),
            dtype=series.dtype,
            chunks=(max(1, min(256, RUN_CHUNK_ELEMENTS // elements)), *series.shape),
        )
        ds.attrs.update(units=series.units, dims=",".join(("time", *series.dims)), description=series.description)
        self._series[series.path] = ds

    def append(self, seconds: float, row: dict[str, np.ndarray | float]) -> None:
        """Add one step (every series must be given); written out in blocks."""
        missing = self._series.keys() - row.keys()
        if missing:
            raise KeyError(f"row lacks {sorted(missing)}")
        self._buffer.append((seconds, row))
        if len(self._buffer) >= self.block_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows and push them to disk: every dataset's rows first, then
        `time/seconds`, so its length never counts a row that is not on disk."""
        if self.failed:
            raise ResultsWriteError(self.failed)
        try:
            with self._writing():
                if self._buffer:
                    k, n = self.rows, len(self._buffer)
                    for path, ds in self._series.items():
                        ds.resize(k + n, axis=0)
                        ds[k:] = np.stack([np.asarray(row[path]) for _, row in self._buffer])
                    self.file.flush()
                    self._time.resize(k + n, axis=0)
                    self._time[k:] = [seconds for seconds, _ in self._buffer]
                    self.rows = k + n
                    self._buffer.clear()
                self.file.flush()
        except ResultsWriteError as exc:
            self._abandon(str(exc))
            raise
        self._last_flush = time.monotonic()

    def _abandon(self, reason: str) -> None:
        """After a failed write, write nothing more: HDF5 would otherwise flush what it holds on
        close, and a write cut short by a full disk can tear the metadata of rows already on disk."""
        self.failed = reason
        try:
            os.close(self.file.id.get_vfd_handle())  # the file on disk stays as of the last flush
        except (OSError, ValueError, TypeError):
            pass
        try:
            self.file.close()
        except Exception:  # HDF5 reports the writes it could not make; they were meant to fail
            pass

    def checkpoint(self, step: int, states: dict[str, str]) -> None:
        """Write the rows up to `step` and, with them, the federates' states after it."""
        from results.checkpoint import write_checkpoint

        self.flush()
        if self.rows != step + 1:
            raise ValueError(f"checkpoint after step {step} with {self.rows} rows written")
        try:
            with self._writing():
                write_checkpoint(self.file, step, states)
        except ResultsWriteError as exc:
            self._abandon(str(exc))
            raise

    @property
    def rows_received(self) -> int:
        return self.rows + len(self._buffer)

    def finish(self, complete: bool, error: str = "") -> None:
        """Write the last rows and the outcome, and close; after a failed write only closes.
        A complete run's file is compacted."""
        if self.failed:
            return
        self.flush()
        try:
            with self._writing():
                attrs = self.file.attrs
                attrs["finished_at"] = _now()
                attrs["complete"] = bool(complete)
                attrs["error"] = error
                self.file.close()
        except ResultsWriteError as exc:
            self._abandon(str(exc))
            raise
        if complete:
            try:
                compact(self.path)
            except OSError as exc:  # the complete file stays, uncompressed
                print(f"warning: {self.path} left uncompressed: cannot compact it ({_cause(exc)})", file=sys.stderr, flush=True)


def compressed_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The chunks of a compacted time series: up to 4096 rows, 64 Ki elements."""
    return (max(1, min(4096, 65536 // max(1, int(np.prod(shape))))), *shape)


def compact(path: Path) -> None:
    """Rewrite a finished file with its time series gzip-compressed, under another name, then
    rename it over the original: killed meanwhile, the original stays as it was."""
    compacting = path.with_name(path.name + ".compacting")
    try:
        with h5py.File(path, "r") as source, h5py.File(compacting, "w") as target:
            target.attrs.update(source.attrs)

            def copy(name: str, obj) -> None:
                if isinstance(obj, h5py.Group):
                    target.require_group(name).attrs.update(obj.attrs)
                elif not str(obj.attrs.get("dims", "")).startswith("time") or name == "time/seconds" or obj.compression:
                    source.copy(obj, target.require_group(posixpath.dirname(name) or "/"), posixpath.basename(name))
                else:
                    chunks = compressed_chunks(obj.shape[1:])
                    ds = target.create_dataset(name, shape=obj.shape, maxshape=(None, *obj.shape[1:]), dtype=obj.dtype, chunks=chunks,
                                               compression="gzip", compression_opts=4, shuffle=True)
                    ds.attrs.update(obj.attrs)
                    for start in range(0, obj.shape[0], chunks[0]):  # a chunk at a time: runs may outgrow memory
                        ds[start:start + chunks[0]] = obj[start:start + chunks[0]]

            source.visititems(copy)
        compacting.replace(path)
    finally:
        compacting.unlink(missing_ok=True)


class RunFile:
    """Read access to a run's HDF5 file, complete or not. Datasets are read when asked for, each
    at most once while the file is open (the KPIs and the report plots share the reads);
    time-indexed ones are cut to the complete rows. Arrays it returns are read-only for that
    reason: copy one to change it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"results file not found: {self.path}")
        # No file lock, so a run can be read while its recorder is still writing it.
        self.file = h5py.File(self.path, "r", locking=False)
        if "time/seconds" not in self.file:
            self.file.close()
            raise OSError(f"{self.path}: not a results file (no time/seconds)")
        self.n_steps = int(self.file["time/seconds"].shape[0])
        self._read: dict[str, np.ndarray] = {}

    def __enter__(self) -> "RunFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._read.clear()
        self.file.close()

    @property
    def complete(self) -> bool:
        return bool(self.file.attrs.get("complete", False))

    @property
    def error(self) -> str:
        return str(self.file.attrs.get("error", ""))

    @cached_property
    def scenario(self) -> dict:
        return json.loads(self.file.attrs["scenario"])

    @property
    def versions(self) -> dict:
        return json.loads(self.file.attrs["versions"])

    @property
    def name(self) -> str:
        """The scenario's name, else the file's stem."""
        return str(self.scenario.get("name", "")) or self.path.stem

    @property
    def label(self) -> str:
        """Scenario name + file stem: how runs are told apart in tables and legends."""
        name = str(self.scenario.get("name", ""))
        return f"{name} ({self.path.stem})" if name and name != self.path.stem else self.path.stem

    @cached_property
    def step(self) -> pd.Timedelta:
        """The length of one step (row k stands for the step from times[k])."""
        return pd.Timedelta(self.scenario["time"]["step"])

    @property
    def step_hours(self) -> float:
        return self.step.total_seconds() / 3600.0

    @cached_property
    def times(self) -> pd.DatetimeIndex:
        """The time of each complete row: the scenario's start + `time/seconds`."""
        start = pd.Timestamp(self.scenario["time"]["start"])
        return pd.DatetimeIndex(start + pd.to_timedelta(self.read("time/seconds"), unit="s"), name="time")

    def attr(self, name: str, default=None):
        return self.file.attrs.get(name, default)

    def has(self, path: str) -> bool:
        return path in self.file

    def dims(self, path: str) -> tuple[str, ...]:
        """A dataset's dimension names (its `dims` attribute); ("time", ...) for time series."""
        dims = str(self.file[path].attrs.get("dims", ""))
        return tuple(dims.split(",")) if dims else ()

    def names(self) -> list[str]:
        """Every time-indexed dataset in the file."""
        found: list[str] = []
        self.file.visititems(lambda name, obj: found.append(name)
                             if isinstance(obj, h5py.Dataset) and self.dims(name)[:1] == ("time",) else None)
        return sorted(found)

    def read(self, path: str) -> np.ndarray:
        """A dataset; time-indexed ones are cut to the complete rows, strings come as str."""
        if path not in self._read:
            ds = self.file[path]
            if self.dims(path)[:1] == ("time",):
                data = ds[: self.n_steps]
            elif ds.dtype.kind == "O":
                data = np.array([v.decode() if isinstance(v, bytes) else v for v in ds[()]])
            else:
                data = np.asarray(ds[()])
            data.flags.writeable = False
            self._read[path] = data
        return self._read[path]

    def labels(self, path: str) -> list[str]:
        """A static dataset's values as strings (names, bus indices)."""
        return [str(v) for v in self.read(path)]

    def units(self, path: str) -> str:
        return str(self.file[path].attrs.get("units", ""))
