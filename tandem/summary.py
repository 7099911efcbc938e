"""The short summary printed at the end of a run, computed from its HDF5 file with the same
lookups as the KPIs (`tandem.extremes`, `tandem.kpis.coupling_kpis`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from results.store import RunFile
from tandem import extremes
from tandem.extremes import Extreme
from tandem.kpis import coupling_kpis


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


def summarize(path: str | Path) -> RunSummary:
    with RunFile(path) as run:
        coupling = coupling_kpis(run)
        return RunSummary(
            path=str(path),
            complete=run.complete,
            error=run.error,
            steps=run.n_steps,
            steps_planned=int(run.attr("n_steps_planned", run.n_steps)),
            coupling=run.scenario["coupling"]["mode"],
            feeder_vmin=extremes.feeder_voltage(run, "min"),
            feeder_vmax=extremes.feeder_voltage(run, "max"),
            transmission_vmin=extremes.transmission_voltage(run, "min"),
            transmission_vmax=extremes.transmission_voltage(run, "max"),
            max_branch_loading=extremes.branch_loading(run),
            mean_iterations=coupling.get("coupling_iterations_mean", 0.0),
            max_iterations=int(coupling.get("coupling_iterations_max", 0)),
            max_mismatch_pu=coupling.get("coupling_mismatch_max_pu", 0.0),
            steps_not_converged=int(coupling.get("coupling_steps_not_converged", 0)),
        )
