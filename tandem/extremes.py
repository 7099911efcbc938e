"""Where and when a run's voltages and loadings were at their extremes: the one lookup the
KPIs (`tandem.kpis`) and the end-of-run summary (`tandem.summary`) both print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from results.store import RunFile


@dataclass(frozen=True)
class Extreme:
    value: float
    where: str
    time: str


def extreme(run: RunFile, values: np.ndarray, kind: str, where: Callable[[int, int], str]) -> Extreme | None:
    """The lowest (`kind` "min") or highest ("max") value of a [time, x] array, NaN ignored, with
    `where(row, column)` and the row's time; None when the array holds no number."""
    if values.size == 0 or np.all(np.isnan(values)):
        return None
    pick = np.nanargmin if kind == "min" else np.nanargmax
    k, j = np.unravel_index(int(pick(values)), values.shape)
    return Extreme(float(values[k, j]), where(int(k), int(j)), str(run.times[k]))


def feeder_voltage(run: RunFile, kind: str) -> Extreme | None:
    """The lowest ("min") or highest ("max") node voltage of any feeder, at `<feeder> node <name>`."""
    if not run.has(f"feeders/v{kind}_pu") or not run.has("feeders/name"):
        return None
    feeders = run.labels("feeders/name")

    def node(k: int, j: int) -> str:
        nodes_path, index_path = f"feeders/nodes/{feeders[j]}", f"feeders/v{kind}_node"
        if run.has(nodes_path) and run.has(index_path):
            idx, nodes = int(run.read(index_path)[k, j]), run.read(nodes_path)
            if 0 <= idx < len(nodes):
                return f"{feeders[j]} node {nodes[idx]}"
        return feeders[j]

    return extreme(run, run.read(f"feeders/v{kind}_pu"), kind, node)


def transmission_voltage(run: RunFile, kind: str) -> Extreme | None:
    """The lowest ("min") or highest ("max") transmission bus voltage, at `bus <index>`."""
    if not run.has("transmission/vm_pu"):
        return None
    vm = run.read("transmission/vm_pu")
    buses = run.labels("transmission/bus") if run.has("transmission/bus") else [str(i) for i in range(vm.shape[1])]
    return extreme(run, vm, kind, lambda k, j: f"bus {buses[j]}")


def branch_loading(run: RunFile) -> Extreme | None:
    """The highest branch loading (%), at the branch's name."""
    if not run.has("transmission/loading_percent"):
        return None
    loading = run.read("transmission/loading_percent")
    branches = run.labels("transmission/branch") if run.has("transmission/branch") else [str(i) for i in range(loading.shape[1])]
    return extreme(run, loading, "max", lambda k, j: branches[j])
