"""Labelled access to a run's results.

    import results.dataset
    with results.dataset.open("runs/output/default.h5") as run:
        vmin = run["feeders/vmin_pu"]            # xarray.DataArray [time, feeder], only this read
        vmin.sel(feeder="ieee13_bus20").plot()
        ds = run.dataset(["boundary/vm_pu", "boundary/va_deg"])

Every time-indexed dataset becomes a DataArray with real timestamps on `time` and names
on its other dimensions (bus, boundary, feeder, phase, branch, node, battery, regulator,
capacitor, ...), its `units` and `description` as attributes. Only the datasets asked for
are read, so one variable of a long run costs that variable. A run that stopped early reads
the same way; `complete` and `error` say so. The view is a `results.store.RunFile` (its
`read`, `times`, `scenario`, ... are those of the file), so both share one read of each dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from results.checkpoint import latest_checkpoint_step
from results.store import RunFile

PHASES = ("a", "b", "c")


class RunResults(RunFile):
    """One run's HDF5 file, read lazily as labelled arrays (everything `RunFile` has, and more)."""

    def _coordinate(self, variable: str, dim: str, size: int) -> np.ndarray:
        """Labels of a dimension, from the static datasets written beside the series."""
        group = variable.rsplit("/", 1)[0]
        candidates = {
            "boundary": "boundary/bus",
            "feeder": "feeders/name",
            "bus": "transmission/bus",
            "branch": "transmission/branch",
            "battery": f"{group}/battery",
            "pv": f"{group}/pv",
            "regulator": f"{group}/regulator",
            "capacitor": f"{group}/capacitor",
        }
        if dim == "phase" and size == 3:
            return np.array(PHASES)
        source = candidates.get(dim)
        if source and self.has(source):
            labels = self.read(source)
            if len(labels) == size:
                return labels
        return np.arange(size)

    def __getitem__(self, name: str) -> xr.DataArray:
        if not self.has(name):
            raise KeyError(f"{self.path}: no dataset {name!r}; datasets: {', '.join(self.names())}")
        data = self.read(name)
        dims = self.dims(name) or tuple(f"dim_{i}" for i in range(data.ndim))
        coords = {
            dim: (self.times if dim == "time" else self._coordinate(name, dim, size))
            for dim, size in zip(dims, data.shape)
        }
        attrs = self.file[name].attrs
        return xr.DataArray(
            data, dims=dims, coords=coords, name=name,
            attrs={"units": self.units(name), "description": str(attrs.get("description", ""))},
        )

    def dataset(self, names: list[str] | None = None) -> xr.Dataset:
        """Several variables at once (all time-indexed ones by default), keyed by their paths."""
        return xr.Dataset({name: self[name] for name in (names or self.names())})


def open(path: str | Path) -> RunResults:  # noqa: A001 - mirrors the builtin on purpose: results.open(path)
    """Open a run's results file (complete or not)."""
    return RunResults(path)


def describe(path: str | Path) -> str:
    """What `tandem inspect` prints: the run, its versions, its state and its datasets."""
    with RunFile(path) as run:
        scenario = run.scenario
        planned = int(run.attr("n_steps_planned", run.n_steps))
        checkpoint = latest_checkpoint_step(path)
        lines = [
            f"file:        {run.path}",
            f"scenario:    {scenario.get('name', '')} - {scenario.get('description', '')}".rstrip(" -"),
            f"state:       {'complete' if run.complete else 'INCOMPLETE'}"
            + (f" ({run.error})" if run.error else ""),
            f"steps:       {run.n_steps} of {planned}, {run.step} each, from {scenario['time']['start']}",
            f"started:     {run.attr('started_at', '')}   finished: {run.attr('finished_at', '') or '-'}",
            *([f"resumed:     {run.attr('resumed_at')} at step {run.attr('resumed_from_step')}"] if run.attr("resumed_at") else []),
            *([f"checkpoint:  after step {checkpoint}" + ("" if run.complete else f" (tandem run --resume {run.path})")]
              if checkpoint is not None else []),
            f"schema:      {run.attr('schema_version', '')}",
            "versions:    " + ", ".join(f"{k} {v}" for k, v in run.versions.items()),
            "datasets:",
        ]
        sizes: list[tuple[str, str, str, int, str]] = []

        def visit(name: str, obj) -> None:
            if hasattr(obj, "shape"):
                sizes.append((name, "x".join(map(str, obj.shape)) or "scalar", obj.attrs.get("units", ""),
                              obj.id.get_storage_size(), obj.attrs.get("dims", "")))

        run.file.visititems(visit)
        width = max(len(n) for n, *_ in sizes) if sizes else 10
        for name, shape, units, stored, dims in sizes:
            lines.append(f"  {name:<{width}}  {shape:>14}  {units:<8} {stored / 1024:9.1f} KiB  [{dims}]")
        total = sum(s for *_, s, _ in sizes)
        lines.append(f"total stored: {total / 1024 / 1024:.2f} MiB")
    return "\n".join(lines)
