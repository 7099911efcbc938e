"""The same T&D study as a plain loop in one process, without HELICS.

Two uses: the benchmark baseline (`loose`, the exact exchange order of the
federation), and the monolithic reference (`fixed_point`: every step iterated
until the boundary voltages move less than `tolerance_pu`) that iterative
co-simulation is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from grid.feeder import FeederModel, build_feeder
from grid.transmission import TransmissionModel, complex_voltage, voltage_mismatch
from scenario.schema import Scenario


@dataclass
class SequentialResult:
    boundary_buses: np.ndarray
    multipliers: np.ndarray
    boundary_vm_pu: np.ndarray  # [step, boundary bus]
    boundary_va_deg: np.ndarray
    feeder_p_kw: np.ndarray  # [step, feeder, phase]
    feeder_q_kvar: np.ndarray
    iterations: np.ndarray  # [step]
    mismatch_pu: np.ndarray  # [step]
    feeder_vmin_pu: np.ndarray  # [step, feeder]
    feeder_vmax_pu: np.ndarray  # [step, feeder]
    feeder_pv_kw: np.ndarray  # [step, feeder]
    feeder_battery_kw: np.ndarray  # [step, feeder]
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per model


def build_feeders(scenario: Scenario) -> list[FeederModel]:
    return [build_feeder(f, scenario) for f in scenario.feeders]


def run_sequential(
    scenario: Scenario,
    mode: Literal["loose", "fixed_point"] = "loose",
    tolerance_pu: float = 1e-8,
    max_iterations: int = 100,
    n_steps: int | None = None,
) -> SequentialResult:
    """Run the study step by step in this process."""
    import time

    transmission = TransmissionModel(scenario)
    feeders = build_feeders(scenario)
    steps = scenario.time.n_steps if n_steps is None else n_steps
    n_f, n_b = len(feeders), len(transmission.boundary_buses)
    pos = np.searchsorted(transmission.boundary_buses, transmission.feeder_bus)

    out = SequentialResult(
        boundary_buses=transmission.boundary_buses,
        multipliers=transmission.multipliers,
        boundary_vm_pu=np.zeros((steps, n_b)),
        boundary_va_deg=np.zeros((steps, n_b)),
        feeder_p_kw=np.zeros((steps, n_f, 3)),
        feeder_q_kvar=np.zeros((steps, n_f, 3)),
        iterations=np.zeros(steps, dtype=int),
        mismatch_pu=np.zeros(steps),
        feeder_vmin_pu=np.zeros((steps, n_f)),
        feeder_vmax_pu=np.zeros((steps, n_f)),
        feeder_pv_kw=np.zeros((steps, n_f)),
        feeder_battery_kw=np.zeros((steps, n_f)),
        seconds={"feeders": 0.0, "transmission": 0.0},
    )
    vm, va = transmission.initial_voltage
    for k in range(steps):
        for n in range(1, max_iterations + 1):  # noqa: B007 - n is the count recorded below
            t0 = time.perf_counter()
            voltage = complex_voltage(vm, va)
            for i, feeder in enumerate(feeders):
                feeder.run(voltage[pos[i]], k)
                out.feeder_p_kw[k, i], out.feeder_q_kvar[k, i] = feeder.substation_power()
                # What a study records of each feeder step, as the feeder federate does.
                vmin, _, vmax, _, _, _ = feeder.voltage_stats()
                readings = feeder.fleet.readings(k)
                out.feeder_vmin_pu[k, i], out.feeder_vmax_pu[k, i] = vmin, vmax
                out.feeder_pv_kw[k, i], out.feeder_battery_kw[k, i] = readings["pv_kw"].sum(), readings["battery_kw"].sum()
            t1 = time.perf_counter()
            transmission.run(k, out.feeder_p_kw[k].sum(axis=1), out.feeder_q_kvar[k].sum(axis=1), f" at step {k}")
            new_vm, new_va = transmission.boundary_voltage()
            out.seconds["feeders"] += t1 - t0
            out.seconds["transmission"] += time.perf_counter() - t1
            mismatch = voltage_mismatch(new_vm, new_va, vm, va)
            vm, va = new_vm, new_va
            if mode == "loose" or mismatch <= tolerance_pu:
                break
        for feeder in feeders:
            feeder.end_step()
        out.boundary_vm_pu[k], out.boundary_va_deg[k] = vm, va
        out.iterations[k], out.mismatch_pu[k] = n, mismatch
    return out
