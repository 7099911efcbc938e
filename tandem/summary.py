"""The short summary printed at the end of a run, computed from its HDF5 file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from results.store import RunFile


@dataclass(frozen=True)
class Extreme:
    value: float
    where: str
    time: str


@dataclass(frozen=True)
class RunSummary:
    path: str
    complete: bool
    error: str
    steps: int
    steps_planned: int
    coupling: str
    feeder_vmin: Extreme | None
    feeder_vmax: Extreme | None
    transmission_vmin: Extreme | None
    transmission_vmax: Extreme | None
    max_branch_loading: Extreme | None
    mean_iterations: float
    max_iterations: int
    max_mismatch_pu: float
    steps_not_converged: int


def _extreme(values: np.ndarray, pick, label_of, times: pd.DatetimeIndex) -> Extreme | None:
    if values.size == 0:
        return None
    flat = int(pick(values))
    k, j = np.unravel_index(flat, values.shape)
    return Extreme(float(values[k, j]), label_of(k, j), str(times[k]))


def summarize(path: str | Path) -> RunSummary:
    with RunFile(path) as run:
        scenario = run.scenario
        n = run.n_steps
        times = pd.date_range(scenario["time"]["start"], periods=max(n, 1), freq=pd.Timedelta(scenario["time"]["step"]))
        coupling = scenario["coupling"]["mode"]
        if n == 0:
            return RunSummary(str(path), run.complete, run.error, 0, int(run.attr("n_steps_planned", 0)), coupling,
                              None, None, None, None, None, 0.0, 0, 0.0, 0)
        feeders = run.read("feeders/name")
        nodes = {f: run.read(f"feeders/nodes/{f}") for f in feeders}
        vmin, vmin_node = run.read("feeders/vmin_pu"), run.read("feeders/vmin_node")
        vmax, vmax_node = run.read("feeders/vmax_pu"), run.read("feeders/vmax_node")
        buses, branches = run.read("transmission/bus"), run.read("transmission/branch")
        tvm, loading = run.read("transmission/vm_pu"), run.read("transmission/loading_percent")
        iterations, mismatch = run.read("coupling/iterations"), run.read("coupling/mismatch_pu")
        converged = run.read("coupling/converged")
        node_at = lambda table: lambda k, j: f"{feeders[j]} node {nodes[feeders[j]][table[k, j]]}"  # noqa: E731
        return RunSummary(
            path=str(path),
            complete=run.complete,
            error=run.error,
            steps=n,
            steps_planned=int(run.attr("n_steps_planned", n)),
            coupling=coupling,
            feeder_vmin=_extreme(vmin, np.argmin, node_at(vmin_node), times),
            feeder_vmax=_extreme(vmax, np.argmax, node_at(vmax_node), times),
            transmission_vmin=_extreme(tvm, np.argmin, lambda k, j: f"bus {buses[j]}", times),
            transmission_vmax=_extreme(tvm, np.argmax, lambda k, j: f"bus {buses[j]}", times),
            max_branch_loading=_extreme(loading, np.nanargmax, lambda k, j: str(branches[j]), times),
            mean_iterations=float(iterations.mean()),
            max_iterations=int(iterations.max()),
            max_mismatch_pu=float(mismatch.max()),
            steps_not_converged=int((converged == 0).sum()) if coupling == "iterative" else 0,
        )
